"""Adam's metric, the charge bookkeeping and its split, on the exactly scale-invariant angle toy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noether_lib import adaptive_metric as am
from noether_lib.normalization import angle_loss, angle_toy
from noether_lib.tracking import NoetherTracker

STRENGTH = torch.tensor([1.0, -0.5, 0.3, 2.0], dtype=torch.float64)


def _record(make, steps=40, tracker=False):
    toy, group = angle_toy(4, radius=1.5, seed=1)
    opt = make(list(toy.parameters()))
    tr = NoetherTracker(toy, opt, [group]) if tracker else None
    noise = torch.randn(steps, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rec = am.record_charges(toy, [group], lambda n: angle_loss(toy.q, STRENGTH + noise[n]), opt, steps, tracker=tr)
    return rec, tr


def test_adam_metric_reconstructs_the_update():
    toy, _ = angle_toy(3, seed=2)
    opt = torch.optim.Adam(toy.parameters(), lr=0.01, betas=(0.8, 0.99))
    for _ in range(3):
        before = toy.q.detach().clone()
        opt.zero_grad()
        angle_loss(toy.q, torch.ones(3, dtype=torch.float64)).backward()
        opt.step()
        metric, m_hat = am.adam_metric(opt, toy.q)
        assert torch.allclose(toy.q.detach() - before, -0.01 * m_hat / metric, atol=1e-15)


def test_bookkeeping_split_and_metric_charge():
    rec, _ = _record(lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.0, 0.999)))
    assert rec.bookkeeping_residual() < 1e-14
    assert rec.split_residual() < 1e-12
    step = np.sqrt(rec.charge[:-1] * rec.update_sq)
    assert np.abs(rec.metric_charge / step).max() < 1e-13  # no momentum: <q, G u> = -eta <q, g> = 0
    assert np.abs(rec.projected / step).max() > 1e-3  # ... while <q, u> is not
    assert np.abs(rec.isotropic).max() < 1e-15


def test_sgd_has_no_metric_part():
    rec, _ = _record(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01))
    assert np.abs(rec.metric).max() == 0
    assert rec.split_residual() < 1e-12


def test_tracker_table_agrees_with_the_snapshots():
    rec, tracker = _record(lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1), tracker=True)
    table = tracker.table()
    assert am.table_bookkeeping_residual(table) < 1e-14
    assert np.abs(am.table_matrix(table, "projected_update") - rec.projected).max() < 1e-14
    assert np.abs(am.table_matrix(table, "update_signed_sq") - rec.update_sq).max() < 1e-14
    assert rec.split_residual() < 1e-12


def test_effective_step_exponents():
    toy, group = angle_toy(4, radius=1.0, seed=3)
    loss = lambda net: angle_loss(net.q, STRENGTH)  # noqa: E731
    adam = am.angular_step_exponent(toy, [group], loss, lambda p: torch.optim.Adam(p, lr=1e-3), [0.5, 1, 2])
    sgd = am.angular_step_exponent(toy, [group], loss, lambda p: torch.optim.SGD(p, lr=1e-3), [0.5, 1, 2])
    assert adam == pytest.approx(-1, abs=1e-3)
    assert sgd == pytest.approx(-2, abs=1e-3)


def test_equilibrium_formulas_and_refusals():
    assert am.adamw_angular_update(0.01, 0.5) == pytest.approx(np.sqrt(0.005 * (2 - 0.005)))
    assert am.adamw_equilibrium_norm_sq(0.01, 0.5, 2.0) == pytest.approx(0.01 * 2.0 / (0.5 * (2 - 0.005)))
    with pytest.raises(ValueError):
        am.adamw_equilibrium_norm_sq(0.01, 0.0, 1.0)
    toy, group = angle_toy(2)
    with pytest.raises(ValueError):
        am.adam_metric(torch.optim.Adam(toy.parameters()), toy.q)
    with pytest.raises(ValueError):
        am.record_charges(
            toy,
            [group],
            lambda n: angle_loss(toy.q, torch.ones(2, dtype=torch.float64)),
            torch.optim.RMSprop(toy.parameters(), lr=0.1),
            1,
        )


def test_a_learning_rate_schedule_is_read_at_every_step():
    """The split uses the filters' rate of each step: a scheduler stepped inside ``loss_at`` halves it every step,
    and the split still closes at round-off (it missed by 1.01 when the rate was read once)."""
    toy, group = angle_toy(4, radius=1.5, seed=1)
    opt = torch.optim.AdamW(toy.parameters(), lr=0.05, weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    noise = torch.randn(12, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss_at(n):
        if n:
            schedule.step()
        return angle_loss(toy.q, STRENGTH + noise[n])

    rec = am.record_charges(toy, [group], loss_at, opt, 12)
    assert rec.split_residual() < 1e-12
