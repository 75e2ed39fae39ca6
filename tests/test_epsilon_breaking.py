"""Batch norm's epsilon as explicit breaking of scale symmetry, against finite differences of the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noether_lib import epsilon_breaking as eb
from noether_lib.models import MLP
from noether_lib.symmetry import find_symmetries, scale_filter_norms


def _setup(eps: float):
    torch.manual_seed(0)
    model = eb.set_normalization_epsilon(MLP(6, [5], 3, batch_norm=True).double(), eps)
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    groups = [g for g in find_symmetries(model, x[:4]) if g.kind == "scale"]
    return model, x, y, groups, [model.net[2]]


def test_formula_matches_autograd_and_the_unbiased_variance_does_not():
    model, x, y, groups, norms = _setup(1e-2)
    measured, predicted, share = eb.breaking_terms(model, x, y, groups, norms)
    _, unbiased, _ = eb.breaking_terms(model, x, y, groups, norms, unbiased=True)
    scale = np.abs(measured).max()
    assert np.abs(measured - predicted).max() / scale < 1e-10
    assert np.abs(measured - unbiased).max() / scale > 1e-3
    assert ((share > 0) & (share < 1)).all()


def test_formula_matches_a_finite_difference_of_the_loss():
    """Independent of autograd: d/ds f((1+s) q) summed over all filters, by central differences."""
    model, x, y, groups, norms = _setup(1e-2)
    measured, _, _ = eb.breaking_terms(model, x, y, groups, norms)
    h = 1e-5

    def loss_at(factor: float) -> float:
        import copy

        net = scale_filter_norms(copy.deepcopy(model), groups, factor)
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(net(x), y))

    finite = (loss_at(1 + h) - loss_at(1 - h)) / (2 * h)
    assert finite == pytest.approx(measured.sum(), rel=1e-6)


def test_round_off_epsilon_is_exactly_invariant():
    model, x, y, groups, norms = _setup(eb.ROUND_OFF_EPSILON)
    measured, _, _ = eb.breaking_terms(model, x, y, groups, norms)
    assert np.abs(measured).max() < 1e-15


def test_refusals():
    model, x, y, groups, norms = _setup(1e-5)
    with pytest.raises(ValueError):
        eb.set_normalization_epsilon(model, 0.0)
    with pytest.raises(ValueError):
        eb.breaking_terms(model, x, y, groups, [])
    with pytest.raises(ValueError):
        eb.batch_variances(model, x, [model.net[1]])
