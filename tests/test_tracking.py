"""Tests of noether_lib.tracking: the recorded table against quantities computed directly from parameter snapshots,
windows (every > 1), saving, the predictions on recorded tables, and every kind of bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from noether_lib import noether
from noether_lib.models import MLP
from noether_lib.symmetry import Member, SymmetryError, SymmetryGroup, conserved_quantity, find_symmetries
from noether_lib.tracking import NoetherTracker, load_tracking


def make_model(batch_norm: bool, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = MLP(6, [5, 4], 3, batch_norm=batch_norm).double()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.eps = 1e-12  # an exact scale symmetry
    return model


def batches(count: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(count):
        yield torch.randn(16, 6, generator=gen, dtype=torch.float64), torch.randint(0, 3, (16,), generator=gen)


def train(model, optimizer, tracker, count, *, lr_at=None, scheduler=None, snapshots=None):
    for n, (x, y) in enumerate(batches(count)):
        if lr_at and n in lr_at:
            for group in optimizer.param_groups:
                group["lr"] = lr_at[n]
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        grads = {k: v.grad.detach().clone() for k, v in model.named_parameters()}
        optimizer.step()
        tracker.step()
        if scheduler is not None:
            scheduler.step()
        if snapshots is not None:
            snapshots.append((before, grads, {k: v.detach().clone() for k, v in model.named_parameters()}))


def signed(group: SymmetryGroup, tensors) -> torch.Tensor:
    """sum over members of sign * |slice|^2 (the J-weighted square) per unit, computed directly."""
    return sum(m.sign * s.pow(2).sum(1) for m, s in zip(group.members, group.slices(tensors)))


def projected(group: SymmetryGroup, at, vector) -> torch.Tensor:
    """<xi(at), vector> per unit, computed directly from the generator."""
    xi = group.generator_slices(at)
    return sum(x.mul(v).sum(1) for x, v in zip(xi, group.slices(vector)))


@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("settings", [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, dampening=0.4, weight_decay=0.02),
])
def test_table_matches_direct_computation(batch_norm, settings):
    model = make_model(batch_norm)
    groups = find_symmetries(model, torch.randn(8, 6, dtype=torch.float64))
    assert {g.kind for g in groups} == ({"scale", "translation"} if batch_norm else {"rescale", "translation"})
    optimizer = torch.optim.SGD(model.parameters(), **settings)
    tracker = NoetherTracker(model, optimizer, groups)
    snaps = []
    train(model, optimizer, tracker, 12, lr_at={6: settings["lr"] / 10}, snapshots=snaps)
    table = tracker.table()
    assert len(table) == 13 * sum(g.num_units for g in groups)
    for group in groups:
        rows = table[table.group == group.name]
        wide = {c: rows.pivot(index="step", columns="unit", values=c).to_numpy() for c in
                ("charge", "grad_sq", "update_sq", "projected_update", "grad_proj", "lr", "norm_sq")}
        charges = [conserved_quantity(group, snaps[0][0])] + [conserved_quantity(group, after) for *_, after in snaps]
        np.testing.assert_allclose(wide["charge"], torch.stack(charges).numpy(), rtol=1e-12, atol=1e-14)
        for n, (before, grads, after) in enumerate(snaps, start=1):
            update = {k: after[k] - before[k] for k in after}
            np.testing.assert_allclose(wide["grad_sq"][n], signed(group, grads).numpy(), rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(wide["update_sq"][n], signed(group, update).numpy(), rtol=1e-8, atol=1e-14)
            np.testing.assert_allclose(wide["projected_update"][n], projected(group, before, update).numpy(),
                                       rtol=1e-8, atol=1e-13)
            np.testing.assert_allclose(wide["grad_proj"][n], projected(group, before, grads).numpy(), atol=1e-10)
            expected_lr = settings["lr"] / (10 if n > 6 else 1)
            assert np.all(wide["lr"][n] == expected_lr)
        unsigned = sum(s.pow(2).sum(1) for s in group.slices(snaps[-1][2]))
        np.testing.assert_allclose(wide["norm_sq"][-1], unsigned.numpy(), rtol=1e-12)
    predicted = noether.predict_charges(table)
    for _, rows in predicted.groupby("group"):
        measured = rows.pivot(index="step", columns="unit", values="charge").to_numpy()
        exact = rows.pivot(index="step", columns="unit", values="exact").to_numpy()
        scale = rows.pivot(index="step", columns="unit", values="norm_sq").to_numpy()
        assert noether.relative_error(measured, exact, scale).max() < 1e-10


def test_every_n_records_windows():
    model = make_model(True)
    groups = find_symmetries(model, torch.randn(8, 6, dtype=torch.float64))
    reference_model = make_model(True)
    dense_opt = torch.optim.SGD(reference_model.parameters(), lr=0.1, momentum=0.9)
    dense = NoetherTracker(reference_model, dense_opt, groups)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparse = NoetherTracker(model, optimizer, groups, every=4, chunk=2)
    train(reference_model, dense_opt, dense, 14, lr_at={6: 0.01})
    train(model, optimizer, sparse, 14, lr_at={6: 0.01})
    d, s = dense.table(), sparse.table()
    # rows at 4, then 6 (the window closes when the learning rate drops), 8, 12
    assert sorted(s.step.unique()) == [0, 4, 6, 8, 12]
    assert sorted(s.steps.dropna().unique()) == [2.0, 4.0]
    key = ["group", "unit"]
    for step, first in [(4, 1), (6, 5), (8, 7), (12, 9)]:
        window = d[(d.step >= first) & (d.step <= step)].groupby(key)[["update_sq", "grad_sq"]].sum()
        got = s[s.step == step].set_index(key)[["update_sq", "grad_sq", "charge"]]
        np.testing.assert_allclose(got[["update_sq", "grad_sq"]].to_numpy(), window.loc[got.index].to_numpy(),
                                   rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(got["charge"].to_numpy(), d[d.step == step].set_index(key).loc[got.index, "charge"])
    with pytest.raises(ValueError, match="every=1"):
        noether.predict_charges(s)
    np.testing.assert_allclose(s[s.step == 12].time.iloc[0], d[d.step == 12].time.iloc[0])


def test_multistep_scheduler_and_predictions(tmp_path):
    model = make_model(False)
    groups = find_symmetries(model, torch.randn(8, 6, dtype=torch.float64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[10], gamma=0.2)
    tracker = NoetherTracker(model, optimizer, groups, scheduler=scheduler)
    train(model, optimizer, tracker, 20, scheduler=scheduler)
    table = noether.predict_charges(tracker.table())
    assert set(table.lr.dropna().unique()) == {0.05, 0.05 * 0.2}
    assert {"exact", "modified", "overdamped", "gradient_flow"} <= set(table.columns)
    path = tracker.save(tmp_path / "run.csv", {"model": "mlp", "seed": 0})
    loaded, meta = load_tracking(path)
    assert meta["config"] == {"model": "mlp", "seed": 0} and len(meta["groups"]) == len(groups)
    pd.testing.assert_frame_equal(loaded, tracker.table(), check_dtype=False)


def test_unsupported_optimizers_are_rejected():
    model = make_model(True)
    groups = find_symmetries(model, torch.randn(8, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="Adam"):
        NoetherTracker(model, torch.optim.Adam(model.parameters()), groups)
    with pytest.raises(ValueError, match="nesterov"):
        NoetherTracker(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True), groups)
    with pytest.raises(ValueError, match="maximize"):
        NoetherTracker(model, torch.optim.SGD(model.parameters(), lr=0.1, maximize=True), groups)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    with pytest.raises(ValueError, match="CosineAnnealingLR"):
        NoetherTracker(model, optimizer, groups, scheduler=cosine)
    with pytest.raises(ValueError, match="every"):
        NoetherTracker(model, optimizer, groups, every=0)


def test_groups_the_model_lacks_are_rejected():
    model = make_model(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SymmetryError, match="no parameter"):
        NoetherTracker(model, optimizer, [SymmetryGroup("scale", "ghost", (Member("conv.weight", 0),), 4)])
    with pytest.raises(SymmetryError, match="units"):
        NoetherTracker(model, optimizer, [SymmetryGroup("scale", "bad", (Member("net.1.weight", 0),), 3)])
    # structurally fine, but without batch norm the first layer is not scale-invariant: proven false before training
    fake = SymmetryGroup("scale", "net.1 (no BN)", (Member("net.1.weight", 0), Member("net.1.bias", 0)), 5)
    x, y = next(batches(1))
    with pytest.raises(SymmetryError, match="do not hold"):
        NoetherTracker(model, optimizer, [fake], verify=(x, y))
    part = torch.optim.SGD([model.net[1].weight], lr=0.1)
    groups = find_symmetries(model, x)
    with pytest.raises(ValueError, match="not in the optimizer"):
        NoetherTracker(model, part, groups)
    split = torch.optim.SGD([{"params": [model.net[1].weight], "weight_decay": 0.1},
                             {"params": [p for n, p in model.named_parameters() if n != "net.1.weight"]}], lr=0.1)
    with pytest.raises(ValueError, match="different hyperparameters"):
        NoetherTracker(model, split, groups)


def test_misuse_during_training_is_caught():
    model = make_model(True)
    groups = find_symmetries(model, torch.randn(8, 6, dtype=torch.float64))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    tracker = NoetherTracker(model, optimizer, groups)
    with pytest.raises(RuntimeError, match="exactly one"):
        tracker.step()
    data = list(batches(4))

    def one_step():
        optimizer.zero_grad()
        F.cross_entropy(model(data[0][0]), data[0][1]).backward()
        optimizer.step()

    one_step()
    tracker.step()
    for lr in (0.05, 0.04):  # a learning rate that changes every step is not piecewise constant
        optimizer.param_groups[0]["lr"] = lr
        one_step()
        if lr == 0.04:
            with pytest.raises(RuntimeError, match="consecutive"):
                tracker.step()
        else:
            tracker.step()
    optimizer.param_groups[0]["momentum"] = 0.9
    with pytest.raises(RuntimeError, match="momentum changed"):
        one_step()
    tracker.close()


def test_state_dict_rejects_a_foreign_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    groups = find_symmetries(model, torch.randn(8, 4))
    tracker = NoetherTracker(model, optimizer, groups)
    state = tracker.state_dict()
    assert "_initial" in state
    with pytest.raises(ValueError, match="not a NoetherTracker state"):
        tracker.load_state_dict({"_step": 3})
