"""The two-parameter toys of chapter 2: their losses and gradients against closed forms, their conserved quantities
against the closed forms of ``eq-ch2-conserved``, and conservation along gradient flow, each next to a control."""

import numpy as np
import pytest

from noether_lib.symmetry import CONTROL_KINDS, PlaneToy, SymmetryGroup, plane_toys
from noether_lib.tolerances import INTEGRATOR_DRIFT

THETA_STAR = 0.6
TOYS = plane_toys(theta_star=THETA_STAR)
STARTS = {"translation": [-1.5, 0.5], "scale": [-1.2, -1.0], "rescale": [0.15, 0.6]}
CLOSED_FORMS = {
    "translation": lambda q: q[..., 0] + q[..., 1],
    "scale": lambda q: q[..., 0] ** 2 + q[..., 1] ** 2,
    "rescale": lambda q: q[..., 0] ** 2 - q[..., 1] ** 2,
}
EXACT = 1e-12


def points(seed=0, shape=(5, 7)):
    """Points of the open quadrant q1, q2 > 0 (where the ReLU of the rescale toy is active), shape (*shape, 2)."""
    return np.random.default_rng(seed).uniform(0.2, 2.0, (*shape, 2))


def closed_form_gradient(name, q):
    q1, q2 = q[..., 0], q[..., 1]
    if name == "translation":
        d = -1 / (1 + np.exp(q1 - q2)) + 0.2 * (q1 - q2 - 2)
        return np.stack([d, -d], -1)
    if name == "scale":
        r2, sine = q1**2 + q2**2, np.sin(np.arctan2(q2, q1) - THETA_STAR)
        return np.stack([-q2 * sine / r2, q1 * sine / r2], -1)
    residual = q2 * q1 - 1
    return np.stack([residual * q2, residual * q1], -1)


@pytest.mark.parametrize("name", TOYS)
def test_charges_are_the_closed_forms(name):
    """Translation q1 + q2, scale q1² + q2², rescale q1² − q2² (signs of the library's members); another kind's
    quantity of the same members, the control, is not."""
    q = points()
    charges = TOYS[name].charges(q)
    assert charges.shape == q.shape[:-1]
    agreement = np.abs(charges - CLOSED_FORMS[name](q)).max()
    control = np.abs(TOYS[name].charges(q, CONTROL_KINDS[name]) - CLOSED_FORMS[name](q)).max()
    assert agreement <= EXACT < control, (agreement, control)


@pytest.mark.parametrize("name", TOYS)
def test_gradient_is_the_closed_form(name):
    """The autograd gradient at points of any batch shape is the hand-derived one; another toy's is not."""
    q = points(1)
    agreement = np.abs(TOYS[name].gradient(q) - closed_form_gradient(name, q)).max()
    other = next(k for k in TOYS if k != name)
    control = np.abs(TOYS[other].gradient(q) - closed_form_gradient(name, q)).max()
    assert agreement <= EXACT < control, (agreement, control)
    assert TOYS[name].gradient(q[0, 0]).shape == (2,)


@pytest.mark.parametrize("name", TOYS)
def test_gradient_is_orthogonal_to_the_generator(name):
    """Theorem ch2-thm-orthogonal: <grad f, xi> = 0 with xi = 1, q, (q1, -q2); the generator of another kind is not."""
    q = points(2)
    generators = {"translation": np.ones_like(q), "scale": q, "rescale": q * np.array([1.0, -1.0])}
    g = TOYS[name].gradient(q)
    agreement = np.abs((g * generators[name]).sum(-1)).max()
    control = np.abs((g * generators[CONTROL_KINDS[name]]).sum(-1)).max()
    assert agreement <= EXACT < control, (agreement, control)


@pytest.mark.parametrize("name", TOYS)
def test_gradient_flow_conserves_the_charge(name):
    """Along the toy's gradient flow its quantity drifts by the integrator's accuracy, another kind's far more; the
    drift agrees with the closed form along the trajectory, and the loss falls."""
    toy = TOYS[name]
    times = np.linspace(0, 40, 401)
    trajectory = toy.flow(STARTS[name], times)
    assert trajectory.shape == (len(times), 2)
    drift, control = toy.drift(trajectory), toy.drift(trajectory, CONTROL_KINDS[name])
    assert drift <= INTEGRATOR_DRIFT < control, (drift, control)
    phi = CLOSED_FORMS[name](trajectory)
    assert drift == pytest.approx(np.abs(phi - phi[0]).max() / abs(phi[0]), rel=1e-6, abs=1e-15)
    losses = toy.losses(trajectory)
    assert losses[-1] < losses[0] and np.all(np.diff(losses) <= 1e-12)


def test_losses_take_points_last_axis_and_the_toys_need_one_or_two_members():
    toy = TOYS["scale"]
    q = points(3)
    angle = np.arctan2(q[..., 1], q[..., 0])
    assert np.abs(toy.losses(q) - (1 - np.cos(angle - THETA_STAR))).max() <= EXACT
    assert toy.kind == "scale" and TOYS["rescale"].kind == "rescale"
    with pytest.raises(ValueError, match="one or two members"):
        PlaneToy(toy.loss, SymmetryGroup("scale", "empty", (), 1))
