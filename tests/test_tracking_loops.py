"""The tracker in the loops researchers write: schedules, parameter groups, Nesterov, AdamW, bfloat16, autocast,
GradScaler, and the traps (zero_grad before tracker.step, load_state_dict after attaching, eval mode, forgetting
tracker.step, repeated names, torch.compile). Each against the snapshot reference of test_tracking.py; each exact
agreement at float64 round-off next to a control that the same tolerance rejects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_tracking import GROUPS, Reference, assert_matches_reference, batches, exact_error, make_model, train, wide

from noether_lib import noether
from noether_lib.symmetry import Member, SymmetryGroup
from noether_lib.tolerances import FLOAT64_EXACT
from noether_lib.tracking import NoetherTracker

SCHEDULES = {
    "warm-up + cosine": lambda o: torch.optim.lr_scheduler.SequentialLR(
        o,
        [
            torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=4),
            torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12),
        ],
        milestones=[4],
    ),
    "OneCycle (momentum cycled too)": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=16),
    "LambdaLR piecewise": lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda n: 1.0 if n < 5 else 0.3),
    "ExponentialLR": lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_any_scheduler_records_and_the_exact_recursion_holds(name):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    scheduler = SCHEDULES[name](optimizer)
    tracker = NoetherTracker(model, optimizer, GROUPS, scheduler=scheduler)
    reference = Reference(model, optimizer)
    train(model, optimizer, 15, reference=reference, scheduler=scheduler)
    table = tracker.table()
    assert_matches_reference(table, reference)
    predicted = noether.predict_charges(table)
    assert exact_error(table) <= FLOAT64_EXACT
    lr = wide(table, "layer 0", "lr")[1:, 0]
    control = table.assign(lr=np.where(table.step > 0, lr[0], np.nan))  # the first rate held: misses
    assert exact_error(control) > FLOAT64_EXACT
    if name != "LambdaLR piecewise":  # a rate that changes every step: the continuous predictions refuse
        assert "modified" in predicted.attrs["refused"]
        with pytest.raises(ValueError, match="consecutive|momentum"):
            noether.predict_charges(table, predictions=("modified",))


def test_reduce_on_plateau_records():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    for n, (x, y) in enumerate(batches(10)):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step(1.0 + n)  # a loss that only grows: the rate halves every step
    table = tracker.table()
    assert len(set(wide(table, "layer 0", "lr")[1:, 0])) > 5
    assert exact_error(table) <= FLOAT64_EXACT


def no_decay_groups(model, lr=0.05, head_lr=None, **settings):
    """The common groups: weight decay on weights only, none on biases and norms (and optionally a head rate)."""
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1 and n != "5.weight"]
    plain = [p for n, p in model.named_parameters() if n.endswith("bias") or p.dim() == 1]
    head = [model[5].weight]
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": 0.05},
            {"params": plain, "weight_decay": 0.0},
            {"params": head, "weight_decay": 0.05, "lr": head_lr or lr},
        ],
        lr=lr,
        **settings,
    )


def test_parameter_groups_without_weight_decay_on_biases():
    model = make_model()
    optimizer = no_decay_groups(model, momentum=0.9)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    reference = Reference(model, optimizer)
    train(model, optimizer, 15, reference=reference)
    table = tracker.table()
    assert_matches_reference(table, reference)
    assert np.isnan(wide(table, "layer 0", "weight_decay")).all()  # weight 0.05, bias 0: no single k
    predicted = noether.predict_charges(table)
    assert "modified" in predicted.attrs["refused"]
    assert exact_error(table) <= FLOAT64_EXACT  # with the per-member decay term K = sum_m k_m C_m
    control = table.assign(weight_decay=0.05)  # one k for every member (the bias decayed too): misses
    assert exact_error(control) > FLOAT64_EXACT


def test_a_larger_head_learning_rate_is_recorded_and_refused_where_members_differ():
    model = make_model()
    optimizer = no_decay_groups(model, head_lr=0.2, momentum=0.9)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    reference = Reference(model, optimizer)
    train(model, optimizer, 8, reference=reference)
    table = tracker.table()
    assert_matches_reference(table, reference)
    predicted = noether.predict_charges(table)
    assert "layer 3" in predicted.attrs["refused"]["exact"]  # its unit spans body (0.05) and head (0.2)
    assert np.isnan(wide(predicted, "layer 3", "exact")).all()
    assert float(noether.prediction_errors(predicted).set_index("group").loc["layer 0", "exact"]) <= FLOAT64_EXACT


def test_nesterov():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    reference = Reference(model, optimizer)
    train(model, optimizer, 15, reference=reference)
    table = tracker.table()
    assert_matches_reference(table, reference)
    assert exact_error(table) <= FLOAT64_EXACT
    control = table.assign(nesterov=False)  # heavy ball's recursion on a Nesterov run: misses
    assert exact_error(control) > FLOAT64_EXACT


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.05),
        lambda p: torch.optim.Adam(p, lr=1e-2),
        lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5),
    ],
)
def test_any_optimizer_records_from_the_weights(make):
    model = make_model()
    optimizer = make(model.parameters())
    tracker = NoetherTracker(model, optimizer, GROUPS)
    reference = Reference(model, optimizer)
    train(model, optimizer, 12, reference=reference)
    table = tracker.table()
    assert_matches_reference(table, reference)
    assert (table.optimizer == type(optimizer).__name__).all()
    predicted = noether.predict_charges(table)
    errors = noether.prediction_errors(predicted)
    assert errors["identity"].max() <= FLOAT64_EXACT  # C_(n+1) = C_n + 2 P_n + U_n: an identity, for any update
    assert set(predicted.attrs["refused"]) == {"exact", "exact_broken", "modified", "overdamped", "gradient_flow"}
    with pytest.raises(ValueError, match=type(optimizer).__name__):
        noether.predict_charges(table, predictions=("exact",))
    # control: the SGD recursion applied to this run anyway (as if the tracker assumed SGD) misses
    control = noether.predict_charges(
        table.assign(optimizer="SGD", momentum=0.0, dampening=0.0, weight_decay=table.weight_decay.fillna(0.0))
    )
    assert noether.prediction_errors(control)["exact"].max() > FLOAT64_EXACT


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_weights_are_measured_not_assumed(dtype):
    model = make_model(eps=1e-3, dtype=dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    reference = Reference(model, optimizer)
    train(model, optimizer, 12, reference=reference, dtype=dtype)
    table = tracker.table()
    assert (table.dtype == str(dtype).replace("torch.", "")).all()
    assert_matches_reference(table, reference, rtol=1e-5)  # float32 sums of the exact low-precision values
    predicted = noether.predict_charges(table)
    assert noether.prediction_errors(predicted)["identity"].max() <= 1e-5
    assert "bfloat16" in str(predicted.attrs["refused"]["exact"]) or "float16" in str(predicted.attrs["refused"])
    # control: the buffer recursion, which the rounded weights do not follow, misses by far more
    control = noether.predict_charges(table.assign(dtype="float32"))
    assert noether.prediction_errors(control)["exact"].max() > 1e-3


def test_autocast_and_grad_scaler_skipped_steps():
    model = make_model(dtype=torch.float32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    reference = Reference(model, optimizer)
    taken = 0
    for n, (x, y) in enumerate(batches(10, dtype=torch.float32)):
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        if n in (3, 7):
            loss = loss * float("inf")  # an overflow: the scaler skips this step
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        finite = all(torch.isfinite(p.grad).all() for p in model.parameters())
        if finite:
            reference.before_step()
        scaler.step(optimizer)
        if finite:
            reference.after_step()
            taken += 1
        scaler.update()
    table = tracker.table()
    assert table.step.max() == taken == 8
    assert_matches_reference(table, reference, rtol=1e-5)


def test_zero_grad_before_tracker_step_and_a_forgotten_tracker_step():
    """The gradients are read in the optimizer's pre-step hook, so clearing them before tracker.step() (or never
    calling it) changes nothing."""
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.01)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    reference = Reference(model, optimizer)
    for n, (x, y) in enumerate(batches(10)):
        F.cross_entropy(model(x), y).backward()
        reference.before_step()
        optimizer.step()
        reference.after_step()
        optimizer.zero_grad(set_to_none=False)
        if n % 2:
            tracker.step()  # a no-op now: called or forgotten alike
    table = tracker.table()
    assert_matches_reference(table, reference)
    assert exact_error(table) <= FLOAT64_EXACT
    # control: what a tracker reading the (zeroed) gradients at tracker.step() recorded
    zeroed = table.assign(grad_signed_sq=np.where(table.step > 0, 0.0, np.nan))
    g = noether.sgd_exact_charge(
        "scale",
        wide(table, "layer 0", "charge")[0],
        wide(table, "layer 0", "lr")[1:, 0],
        grad_signed_sq=wide(zeroed, "layer 0", "grad_signed_sq")[1:],
        weight_decay=0.01,
    )
    assert noether.relative_error(wide(table, "layer 0", "charge"), g).max() > FLOAT64_EXACT


def test_load_state_dict_after_attaching():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train(model, optimizer, 3)
    saved = optimizer.state_dict()
    tracker = NoetherTracker(model, optimizer, GROUPS)
    reference = Reference(model, optimizer)
    train(model, optimizer, 4, reference=reference, seed=2)
    optimizer.load_state_dict(saved)  # new buffer tensors behind the tracker's back
    train(model, optimizer, 4, reference=reference, seed=3)
    assert_matches_reference(tracker.table(), reference)


def test_eval_mode_is_refused_unless_allowed():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    NoetherTracker(model, optimizer, GROUPS)
    model.eval()
    with pytest.raises(RuntimeError, match="eval mode"):
        train(model, optimizer, 1)
    model2 = make_model().eval()
    optimizer2 = torch.optim.SGD(model2.parameters(), lr=0.05)
    tracker = NoetherTracker(model2, optimizer2, GROUPS, allow_eval=True)
    train(model2, optimizer2, 3)
    assert tracker.table().step.max() == 3


def test_repeated_names_and_compiled_models():
    model = make_model()
    compiled = torch.compile(model, backend="eager")
    optimizer = torch.optim.SGD(compiled.parameters(), lr=0.05, momentum=0.9)
    twice = [GROUPS[0], SymmetryGroup("translation", "layer 0", (Member("5.bias", 0),), 1)]
    tracker = NoetherTracker(compiled, optimizer, twice)
    reference = Reference(model, optimizer)
    train(compiled, optimizer, 6, reference=reference)
    table = tracker.table()
    assert set(table.group) == {"layer 0", "layer 0 #2"}
    renamed = [twice[0], SymmetryGroup("translation", "layer 0 #2", (Member("5.bias", 0),), 1)]
    assert_matches_reference(table, reference, groups=renamed)


def _refused(table, prediction="exact"):
    return noether.predict_charges(table).attrs["refused"].get(prediction, {})


def test_members_under_different_nesterov_settings_are_refused():
    """A rescale unit whose two layers sit in parameter groups with and without Nesterov follows neither rule: the
    SGD predictions are refused for it (they were computed as heavy ball, missing by 1.5e-2); control: one setting."""
    tables = {}
    for mixed in (True, False):
        model = make_model()
        layers = [p for n, p in model.named_parameters() if n.startswith("5.")]
        others = [p for n, p in model.named_parameters() if not n.startswith("5.")]
        optimizer = torch.optim.SGD(
            [{"params": others, "nesterov": True}, {"params": layers, "nesterov": not mixed}], lr=0.05, momentum=0.9
        )
        tracker = NoetherTracker(model, optimizer, GROUPS)
        train(model, optimizer, 8)
        tables[mixed] = tracker.table()
    assert "layer 3" in _refused(tables[True]) and "nesterov" in _refused(tables[True])["layer 3"]
    assert "layer 3" not in _refused(tables[False])
    assert exact_error(tables[False][tables[False].group == "layer 3"]) <= FLOAT64_EXACT


def test_momentum_switched_on_mid_run_is_refused():
    """torch.optim.SGD starts a fresh buffer when momentum goes from 0 to > 0 (the recursion missed by 3.5e-2);
    the SGD predictions are refused; control: momentum 0.5 -> 0.9 is followed at round-off."""
    tables = {}
    for start in (0.0, 0.5):
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=start, weight_decay=0.05)
        tracker = NoetherTracker(model, optimizer, GROUPS)
        for n, (x, y) in enumerate(batches(10)):
            if n == 5:
                optimizer.param_groups[0]["momentum"] = 0.9
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        tables[start] = tracker.table()
    assert set(_refused(tables[0.0])) == {g.name for g in GROUPS}
    assert "momentum is switched on" in next(iter(_refused(tables[0.0]).values()))
    assert not _refused(tables[0.5])
    assert exact_error(tables[0.5]) <= FLOAT64_EXACT


def test_a_member_without_gradient_is_refused():
    """On a step where a tracked parameter has no gradient, torch.optim.SGD skips it (no decay, no momentum): its
    G and gamma are recorded as missing and the SGD predictions refused (they missed by 0.19); the identity holds."""
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    for n, (x, y) in enumerate(batches(8)):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if n == 3:
            model[5].bias.grad = None
        optimizer.step()
    table = tracker.table()
    logits = table[table.group == "logits"]
    assert logits.loc[logits.step == 4, "grad_signed_sq"].isna().all()
    assert logits.loc[logits.step != 4, "grad_signed_sq"].iloc[1:].notna().all()
    assert "no gradient" in _refused(table)["logits"]
    assert "layer 0" not in _refused(table)  # control: the groups whose members all had gradients are predicted
    assert exact_error(table[table.group == "layer 0"]) <= FLOAT64_EXACT
    assert noether.prediction_errors(noether.predict_charges(table))["identity"].max() <= FLOAT64_EXACT


def test_weight_decay_changed_after_an_explicit_tracker_step():
    """A loop that calls tracker.step() and then changes the weight decay: the last row's decay term is measured
    again with the decay of the step that uses it, so the recursion holds at round-off; control: that row with
    the old decay misses."""
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    for n, (x, y) in enumerate(batches(10)):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        tracker.step()
        if n == 4:
            optimizer.param_groups[0]["weight_decay"] = 0.05
    table = tracker.table()
    assert exact_error(table) <= FLOAT64_EXACT
    stale = table.copy()
    at = stale.step == 5
    stale.loc[at, "decay_charge"] = stale.loc[at, "decay_charge"] * (0.01 / 0.05)
    assert exact_error(stale) > FLOAT64_EXACT
