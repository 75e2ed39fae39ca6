"""Symmetry actions Q(q, s), their generators, and acting on networks."""

import math

import numpy as np
import pytest
import sympy as sp
import torch
import torch.nn.functional as F

from noether_lib import models
from noether_lib.symmetry import (
    Member,
    Rescale,
    Rotation,
    Scale,
    SymmetryGroup,
    Translation,
    apply_symmetry,
    find_symmetries,
    scale_filter_norms,
)
from noether_lib.tolerances import FLOAT64_EXACT, SYMMETRY_LOSS_RTOL

ACTIONS = [Translation(np.array([1.0, -2.0, 0.5])), Scale(), Scale(-1), Rescale([1, -1, 1]), Rotation(0, 2)]


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: type(a).__name__)
def test_generator_is_the_derivative_at_zero(action):
    q, h = np.array([0.3, -1.2, 2.0]), 1e-6
    numeric = (action(q, h) - action(q, -h)) / (2 * h)
    assert np.allclose(numeric, action.generator(q), atol=1e-8)
    assert np.allclose(action(q, 0.0), q)


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: type(a).__name__)
def test_actions_compose_as_one_parameter_groups(action):
    q = np.array([0.3, -1.2, 2.0])
    assert np.allclose(action(action(q, 0.4), -1.1), action(q, -0.7))


def test_actions_on_torch_and_sympy_agree_with_numpy():
    q = [0.3, -1.2, 2.0]
    s = sp.Symbol("s")
    for action in (Scale(), Rescale([1, -1, 1]), Rotation(0, 1)):
        symbolic = action(sp.Matrix(q), s).subs(s, 0.7)
        assert np.allclose(np.array(symbolic, dtype=float).ravel(), action(np.array(q), 0.7))
        assert np.allclose(action(torch.tensor(q, dtype=torch.float64), 0.7).numpy(), action(np.array(q), 0.7))
        generator = action.generator(sp.Matrix(q))
        derivative = sp.diff(action(sp.Matrix(q), s), s).subs(s, 0)
        assert sp.simplify(generator - derivative) == sp.zeros(3, 1)


def test_rotation_preserves_the_norm_and_rejects_one_axis():
    q = np.array([0.3, -1.2, 2.0])
    assert math.isclose(np.linalg.norm(Rotation(1, 2)(q, 0.9)), np.linalg.norm(q))
    with pytest.raises(ValueError, match="two different"):
        Rotation(1, 1)


def test_apply_symmetry_matches_the_group_action_per_unit():
    w1, b1, w2 = torch.randn(4, 3), torch.randn(4), torch.randn(2, 4)
    group = SymmetryGroup("rescale", "h", (Member("w1", 0), Member("b1", 0), Member("w2", 1, -1)), 4)
    s = torch.tensor([0.1, -0.2, 0.3, 0.0])
    moved = apply_symmetry({"w1": w1, "b1": b1, "w2": w2}, group, s)
    torch.testing.assert_close(moved["w1"], w1 * s.exp()[:, None])
    torch.testing.assert_close(moved["b1"], b1 * s.exp())
    torch.testing.assert_close(moved["w2"], w2 * (-s).exp()[None, :])
    translation = SymmetryGroup("translation", "t", (Member("w2", 1),), 4)
    torch.testing.assert_close(apply_symmetry({"w2": w2}, translation, s)["w2"], w2 + s[None, :])
    bias = SymmetryGroup("translation", "b", (Member("b1", 0),), 1)
    torch.testing.assert_close(apply_symmetry({"b1": b1}, bias, 0.5)["b1"], b1 + 0.5)
    with pytest.raises(ValueError, match="shape"):
        apply_symmetry({"w2": w2}, translation, torch.zeros(3))


def test_apply_symmetry_on_a_model_is_in_place_and_keeps_the_loss():
    torch.manual_seed(0)
    model = models.MLP(8, [6], 3).double()
    x, y = torch.randn(5, 8, dtype=torch.float64), torch.randint(0, 3, (5,))
    groups = find_symmetries(model, x)
    loss = F.cross_entropy(model(x), y)
    for group in groups:
        assert apply_symmetry(model, group, 0.4) is model
    assert abs(float((F.cross_entropy(model(x), y) - loss).detach())) <= FLOAT64_EXACT
    with pytest.raises(KeyError, match="nope"):
        apply_symmetry(model, SymmetryGroup("scale", "ghost", (Member("nope", 0),), 1), 0.1)


def test_scale_filter_norms_multiplies_norms_and_keeps_the_training_loss():
    torch.manual_seed(0)
    model = models.VGG("tiny", in_channels=1, num_classes=10, conv_bias=False).double().train()
    x, y = torch.randn(8, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,))
    groups = find_symmetries(model, x)
    norms = [float(model.get_parameter(g.members[0].parameter).detach().norm()) for g in groups if g.kind == "scale"]
    loss = F.cross_entropy(model(x), y)
    scale_filter_norms(model, groups, 10.0)
    after = [float(model.get_parameter(g.members[0].parameter).detach().norm()) for g in groups if g.kind == "scale"]
    assert all(math.isclose(a, 10 * b, rel_tol=1e-12) for a, b in zip(after, norms))
    assert abs(float((F.cross_entropy(model(x), y) / loss - 1).detach())) <= SYMMETRY_LOSS_RTOL
    with pytest.raises(ValueError, match="positive"):
        scale_filter_norms(model, groups, 0.0)
