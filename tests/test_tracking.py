"""Tests of noether_lib.tracking: the recorded table against quantities computed directly from weight snapshots
(an independent computation, written here), windows (every > 1), saving, state, and bad input. The loop variants
(schedules, parameter groups, optimizers, precisions, traps) are in test_tracking_loops.py, which reuses the
reference computation below."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from noether_lib import noether
from noether_lib.schema import column_names
from noether_lib.symmetry import Member, SymmetryError, SymmetryGroup
from noether_lib.tolerances import FLOAT64_EXACT
from noether_lib.tracking import NoetherTracker, load_tracking
from noether_lib.tracking.layout import ROWS

# -- the model, its groups (written by hand, so these tests do not depend on symmetry discovery) ------------------


def make_model(eps: float = 1e-12, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """Linear -> batch norm -> ReLU -> Linear -> ReLU -> Linear: a scale symmetry of layer 0 (exact as eps -> 0),
    a rescale symmetry between layers 3 and 5, the softmax's translation of the last bias."""
    torch.manual_seed(seed)
    layers = [
        torch.nn.Linear(6, 5),
        torch.nn.BatchNorm1d(5, eps=eps),
        torch.nn.ReLU(),
        torch.nn.Linear(5, 4),
        torch.nn.ReLU(),
        torch.nn.Linear(4, 3),
    ]
    return torch.nn.Sequential(*layers).to(dtype)


GROUPS = [
    SymmetryGroup("scale", "layer 0", (Member("0.weight", 0), Member("0.bias", 0)), 5),
    SymmetryGroup("scale", "layer 0 (whole)", (Member("0.weight", 0), Member("0.bias", 0)), 1),
    SymmetryGroup("rescale", "layer 3", (Member("3.weight", 0), Member("3.bias", 0), Member("5.weight", 1, -1)), 4),
    SymmetryGroup("translation", "logits", (Member("5.bias", 0),), 1),
]


def batches(count: int, seed: int = 1, dtype: torch.dtype = torch.float64):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(count):
        yield torch.randn(16, 6, generator=gen).to(dtype), torch.randint(0, 3, (16,), generator=gen)


# -- the independent reference: every column from snapshots of the weights, gradients and buffers ----------------


def slices(group: SymmetryGroup, tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [tensors[m.parameter].double().movedim(m.dim, 0).reshape(group.num_units, -1) for m in group.members]


def charge_of(group: SymmetryGroup, tensors) -> torch.Tensor:
    linear = group.kind == "translation"
    return sum(
        m.sign * (s.sum(1) if linear else s.pow(2).sum(1)) for m, s in zip(group.members, slices(group, tensors))
    )


def signed_sq(group: SymmetryGroup, tensors) -> torch.Tensor:
    return sum(m.sign * s.pow(2).sum(1) for m, s in zip(group.members, slices(group, tensors)))


def projection(group: SymmetryGroup, at, vector) -> torch.Tensor:
    """<xi(at), vector> per unit, with xi = J 1 (translation) or J at."""
    pairs = zip(group.members, slices(group, at), slices(group, vector))
    if group.kind == "translation":
        return sum(m.sign * v.sum(1) for m, _, v in pairs)
    return sum(m.sign * (a * v).sum(1) for m, a, v in pairs)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


class Reference:
    """Snapshots around each optimizer step; the charges table's quantities computed from them."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        self.before: list[dict[str, torch.Tensor]] = []
        self.grads: list[dict[str, torch.Tensor]] = []
        self.after: list[dict[str, torch.Tensor]] = [snapshot(model)]
        self.buffers: list[dict[str, torch.Tensor]] = []
        self.decay: list[dict[str, float]] = [self._decays()]

    def _decays(self) -> dict[str, float]:
        names = {id(p): k for k, p in self.model.named_parameters()}
        return {
            names[id(p)]: float(g.get("weight_decay", 0.0)) for g in self.optimizer.param_groups for p in g["params"]
        }

    def before_step(self) -> None:
        """Call right before the optimizer updates (after backward and any unscaling)."""
        self.before.append(snapshot(self.model))
        self.grads.append(
            {
                k: (torch.zeros_like(v) if v.grad is None else v.grad.detach().clone())
                for k, v in self.model.named_parameters()
            }
        )

    def after_step(self) -> None:
        self.after.append(snapshot(self.model))
        names = {id(p): k for k, p in self.model.named_parameters()}
        self.buffers.append(
            {
                names[id(p)]: s["momentum_buffer"].detach().clone()
                for p, s in self.optimizer.state.items()
                if s.get("momentum_buffer") is not None
            }
        )
        self.decay.append(self._decays())

    def columns(self, group: SymmetryGroup) -> dict[str, np.ndarray]:
        """Per column, an array (steps + 1, units); step 0's step columns are NaN."""
        out: dict[str, list] = {c: [] for c in ROWS}
        nan = torch.full((group.num_units,), float("nan"), dtype=torch.float64)
        for n, after in enumerate(self.after):
            out["charge"].append(charge_of(group, after))
            out["norm_sq"].append(sum(s.pow(2).sum(1) for s in slices(group, after)))
            single = [SymmetryGroup(group.kind, "m", (m,), group.num_units) for m in group.members]
            out["decay_charge"].append(
                sum(self.decay[n][m.parameter] * charge_of(g, after) for m, g in zip(group.members, single))
            )
            if n == 0:
                for c in list(out)[3:]:
                    out[c].append(nan)
                continue
            before, grads = self.before[n - 1], self.grads[n - 1]
            update = {k: after[k].double() - before[k].double() for k in after}
            out["update_signed_sq"].append(signed_sq(group, update))
            out["projected_update"].append(projection(group, before, update))
            out["grad_signed_sq"].append(signed_sq(group, grads))
            out["grad_proj"].append(projection(group, before, grads))
            buffers = self.buffers[n - 1]
            nesterov = any(g.get("nesterov", False) for g in self.optimizer.param_groups)
            if nesterov and group.kind != "translation" and all(m.parameter in buffers for m in group.members):
                out["update_momentum"].append(
                    sum(
                        m.sign * (u * b).sum(1)
                        for m, u, b in zip(group.members, slices(group, update), slices(group, buffers))
                    )
                )
            else:
                out["update_momentum"].append(nan)
        return {c: torch.stack(v).numpy() for c, v in out.items()}


def train(model, optimizer, count, *, reference=None, scheduler=None, lr_at=None, seed=1, dtype=torch.float64) -> None:
    """An ordinary loop; the tracker (if any) records in the optimizer's hooks, no tracker.step() needed."""
    for n, (x, y) in enumerate(batches(count, seed, dtype)):
        if lr_at and n in lr_at:
            for group in optimizer.param_groups:
                group["lr"] = lr_at[n]
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if reference is not None:
            reference.before_step()
        optimizer.step()
        if reference is not None:
            reference.after_step()
        if scheduler is not None:
            scheduler.step()


def wide(table: pd.DataFrame, group: str, column: str) -> np.ndarray:
    return table[table.group == group].pivot(index="step", columns="unit", values=column).to_numpy()


FACTORS = {"projected_update": "update_signed_sq", "grad_proj": "grad_signed_sq", "update_momentum": "update_signed_sq"}


def _scale(expected: dict[str, np.ndarray], column: str) -> float:
    want = expected[column]
    scale = np.nanmax(np.abs(want)) if np.isfinite(want).any() else 1.0
    if column in FACTORS:  # a projection that the symmetry makes ~0: measured on the size of its factors
        scale = np.sqrt(np.nanmax(expected["norm_sq"]) * np.nanmax(np.abs(expected[FACTORS[column]])))
    return max(float(scale), 1e-30)


def assert_matches_reference(
    table: pd.DataFrame, reference: Reference, groups=GROUPS, rtol=1e-10, columns=None
) -> None:
    for group in groups:
        expected = reference.columns(group)
        for column in columns or expected:
            got, want = wide(table, group.name, column), expected[column]
            np.testing.assert_allclose(
                got,
                want,
                rtol=rtol,
                atol=rtol * _scale(expected, column),
                equal_nan=True,
                err_msg=f"{group.name}: {column}",
            )


def reference_error(table: pd.DataFrame, reference: Reference, groups=GROUPS) -> float:
    """The largest miss of ``table`` against the reference, per column relative to the scale
    :func:`assert_matches_reference` uses (infinite where the missing values differ)."""
    worst = 0.0
    for group in groups:
        expected = reference.columns(group)
        for column, want in expected.items():
            got = wide(table, group.name, column)
            if got.shape != want.shape or not np.array_equal(np.isnan(got), np.isnan(want)):
                return float("inf")
            worst = max(worst, float(np.nanmax(np.abs(got - want), initial=0.0)) / _scale(expected, column))
    return worst


def exact_error(table: pd.DataFrame, prediction: str = "exact") -> float:
    errors = noether.prediction_errors(noether.predict_charges(table))
    return float(errors[prediction].max())


# -- the tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        dict(lr=0.1),
        dict(lr=0.1, weight_decay=0.01),
        dict(lr=0.05, momentum=0.9, weight_decay=0.01),
        dict(lr=0.05, momentum=0.8, dampening=0.4, weight_decay=0.02),
    ],
)
def test_table_matches_snapshots_and_the_exact_recursion(settings):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), **settings)
    tracker = NoetherTracker(model, optimizer, GROUPS)
    reference = Reference(model, optimizer)
    train(model, optimizer, 12, reference=reference, lr_at={6: settings["lr"] / 10})
    table = tracker.table()
    assert list(table.columns) == column_names()
    assert len(table) == 13 * sum(g.num_units for g in GROUPS)
    assert_matches_reference(table, reference)
    assert np.all(
        wide(table, "layer 0", "lr")[1:, 0] == np.where(np.arange(1, 13) > 6, settings["lr"] / 10, settings["lr"])
    )
    assert exact_error(table) <= FLOAT64_EXACT
    # control: the same recursion with U halved (the dampening factor lost, say) misses
    miss = table.assign(update_signed_sq=table.update_signed_sq * 0.5)
    assert exact_error(miss) > FLOAT64_EXACT


def test_every_n_records_windows():
    dense_model, sparse_model = make_model(), make_model()
    dense_opt = torch.optim.SGD(dense_model.parameters(), lr=0.1, momentum=0.9)
    sparse_opt = torch.optim.SGD(sparse_model.parameters(), lr=0.1, momentum=0.9)
    dense = NoetherTracker(dense_model, dense_opt, GROUPS)
    sparse = NoetherTracker(sparse_model, sparse_opt, GROUPS, every=4, chunk=2)
    train(dense_model, dense_opt, 14, lr_at={6: 0.01})
    train(sparse_model, sparse_opt, 14, lr_at={6: 0.01})
    d, s = dense.table(), sparse.table()
    assert sorted(s.step.unique()) == [0, 4, 8, 12] and set(s.steps.dropna()) == {4.0}
    key = ["group", "unit"]
    for step in (4, 8, 12):
        window = d[(d.step > step - 4) & (d.step <= step)].groupby(key)[["update_signed_sq", "grad_signed_sq"]].sum()
        got = s[s.step == step].set_index(key)
        np.testing.assert_allclose(
            got[["update_signed_sq", "grad_signed_sq"]].to_numpy(),
            window.loc[got.index].to_numpy(),
            rtol=1e-10,
            atol=1e-15,
        )
        same = d[d.step == step].set_index(key).loc[got.index]
        for column in ("charge", "projected_update", "grad_proj", "time", "lr"):
            np.testing.assert_allclose(got[column].to_numpy(), same[column].to_numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="every=1"):
        noether.predict_charges(s)


def test_save_load_and_state_dict(tmp_path):
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tracker = NoetherTracker(model, optimizer, GROUPS, chunk=3)
    train(model, optimizer, 5)
    state = tracker.state_dict()
    path = tracker.save(tmp_path / "run.csv", {"model": "mlp", "seed": 0})
    loaded, meta = load_tracking(path)
    assert meta["config"] == {"model": "mlp", "seed": 0} and len(meta["groups"]) == len(GROUPS)
    pd.testing.assert_frame_equal(loaded, tracker.table(), check_dtype=False)
    # resume: a new tracker continues the record exactly
    train(model, optimizer, 4, seed=2)
    straight = tracker.table()
    tracker.close()
    model2 = make_model()
    optimizer2 = torch.optim.SGD(model2.parameters(), lr=0.05, momentum=0.9)
    train(model2, optimizer2, 5)
    resumed = NoetherTracker(model2, optimizer2, GROUPS, chunk=3)
    resumed.load_state_dict(state)
    train(model2, optimizer2, 4, seed=2)
    pd.testing.assert_frame_equal(resumed.table(), straight, rtol=1e-12)
    with pytest.raises(ValueError, match="not a NoetherTracker state"):
        resumed.load_state_dict({"_step": 3})


def test_groups_the_model_lacks_are_rejected():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SymmetryError, match="no parameter"):
        NoetherTracker(model, optimizer, [SymmetryGroup("scale", "ghost", (Member("conv.weight", 0),), 4)])
    with pytest.raises(SymmetryError, match="units"):
        NoetherTracker(model, optimizer, [SymmetryGroup("scale", "bad", (Member("0.weight", 0),), 3)])
    with pytest.raises(SymmetryError, match="rotation"):
        NoetherTracker(model, optimizer, [SymmetryGroup("rotation", "r", (Member("0.weight", 0),), 1)])  # type: ignore[arg-type]
    part = torch.optim.SGD([model[0].weight], lr=0.1)
    with pytest.raises(ValueError, match="not in the optimizer"):
        NoetherTracker(model, part, GROUPS)
    with pytest.raises(ValueError, match="every"):
        NoetherTracker(model, optimizer, GROUPS, every=0)
    with pytest.raises(ValueError, match="no symmetry groups"):
        NoetherTracker(model, optimizer, [])
    model[0].bias.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        NoetherTracker(model, optimizer, GROUPS)


def test_verify_uses_the_users_loss():
    """Without batch norm layer 0 is not scale-invariant: proven false before training, with the loss given."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fake = SymmetryGroup("scale", "layer 0 (no BN)", (Member("0.weight", 0), Member("0.bias", 0)), 5)
    x, y = next(batches(1))
    with pytest.raises(SymmetryError, match="do not hold"):
        NoetherTracker(model, optimizer, [fake], verify=(x, y), loss_fn=F.cross_entropy)
    calls = []

    def loss_fn(out, target):
        calls.append(1)
        return F.cross_entropy(out, target)

    rescale = SymmetryGroup(
        "rescale", "hidden", (Member("0.weight", 0), Member("0.bias", 0), Member("2.weight", 1, -1)), 5
    )
    NoetherTracker(model, optimizer, [rescale], verify=(x, y), loss_fn=loss_fn)
    assert calls, "verify_symmetries was not given the user's loss"
