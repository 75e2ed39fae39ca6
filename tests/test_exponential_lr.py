"""Li & Arora's exponential learning rate on an exactly scale-invariant toy."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

from noether_lib import exponential_lr as el
from noether_lib.normalization import angle_loss, angle_toy


def _runs(momentum: float, matched: bool, weight_decay: float = 0.01, steps: int = 80, strength: float = 1.0):
    toy, group = angle_toy(6, radius=1.0, seed=0)
    xi = strength * torch.linspace(-1.0, 1.0, 6, dtype=torch.float64)
    return el.train_equivalent_runs(
        toy,
        [group],
        lambda net, n: angle_loss(net.q, xi * (1 + 0.1 * (n % 3))),
        steps=steps,
        lr=0.05,
        momentum=momentum,
        weight_decay=weight_decay,
        matched_start=matched,
    )


def test_growth_factor_is_the_root():
    for b in (0.0, 0.5, 0.9):
        a = el.growth_factor(0.1, b, 0.01)
        assert a**2 - (1 + b - 0.001) * a + b == pytest.approx(0, abs=1e-15)
    assert el.growth_factor(0.1, 0.0, 0.01) == pytest.approx(1 - 0.001)
    with pytest.raises(ValueError):
        el.growth_factor(0.1, 0.9, 0.05)  # eta k = 5e-3 > (1 - sqrt(beta))^2: complex roots


def test_equivalence_at_round_off():
    assert _runs(0.0, True).deviation() < 1e-12
    assert _runs(0.9, True).deviation() < 1e-12
    assert _runs(0.9, False).deviation() > 1e-4


def test_empty_buffer_deviation_is_first_order():
    run = _runs(0.5, False, weight_decay=1e-6, steps=60, strength=1e-3)  # slow norm dynamics
    assert run.deviations()[-1] == pytest.approx(el.empty_buffer_deviation(0.05, 0.5, 1e-6), rel=0.05)


def test_matched_buffer_gives_the_first_step():
    q0, lr, b, k = torch.tensor([1.0, 2.0], dtype=torch.float64), 0.1, 0.9, 0.01
    a = el.growth_factor(lr, b, k)
    v0 = el.matched_initial_buffer(q0, lr, b, k)
    g = torch.tensor([0.3, -0.1], dtype=torch.float64)
    decayed = (1 - lr * k) * q0 - lr * g
    scheduled = q0 - lr / a * (b * v0 + g)
    assert torch.allclose(scheduled, decayed / a, atol=1e-15)


def test_residual_factors_through_the_quadratic():
    residual, quadratic = el.equivalence_residual()
    alpha = sp.Symbol("alpha", positive=True)
    assert sp.simplify(residual / quadratic).has(alpha)
    assert sp.simplify(sp.factor(residual) - sp.factor(residual / quadratic) * quadratic) == 0


def test_schedule():
    lrs = el.equivalent_learning_rates(0.1, 0.0, 0.01, 4)
    assert lrs == pytest.approx(0.1 * 0.999 ** (-2.0 * np.arange(4) - 1))
