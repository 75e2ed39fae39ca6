"""The modified loss of heavy ball (implicit gradient regularization) against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from noether_lib import implicit_regularization as ir
from noether_lib.mechanics import is_identically_zero
from noether_lib.modified_equation import fitted_order
from noether_lib.rules import heavy_ball


@pytest.mark.parametrize("lookahead_is_beta", [False, True])
def test_derived_field_is_the_gradient_of_the_modified_loss(lookahead_is_beta):
    eta, beta = sp.symbols("eta beta", positive=True)
    q, f = sp.Symbol("q"), sp.Function("f")
    c = beta if lookahead_is_beta else 0
    field = ir.two_step_modified_field(eta, beta, c, q, f)
    fp = sp.diff(f(q), q)
    lam = ir.regularization_coefficient(eta, beta, c)
    assert is_identically_zero(field + (fp + lam * sp.diff(fp**2, q)) / (1 - beta))
    # a wrong coefficient (heavy ball's for Nesterov, or the reverse) is caught
    other = ir.regularization_coefficient(eta, beta, 0 if lookahead_is_beta else beta)
    assert not is_identically_zero(field + (fp + other * sp.diff(fp**2, q)) / (1 - beta))


def test_gradient_descent_gives_barrett_and_dherin():
    assert ir.regularization_coefficient(0.1) == pytest.approx(0.1 / 4)
    assert ir.regularization_coefficient(0.1, 0.9) == pytest.approx(0.1 * 1.9 / (4 * 0.01))


def test_one_step_of_gradient_descent_matches_the_flow_to_third_order():
    """Independent: on f = q^4/4 in one dimension, one GD step against the modified flow's exact Taylor step."""
    x = sp.Symbol("x")
    loss = ir.toy_loss(x**4 / 4, (x,))
    q0 = np.array([0.7])
    errors = []
    for lr in (1e-2, 5e-3):
        step = q0 - lr * loss.gradient(q0)
        flow = ir.regularized_flow(loss, q0, np.array([0.0, lr]), coefficient=ir.regularization_coefficient(lr))[-1]
        plain = ir.regularized_flow(loss, q0, np.array([0.0, lr]))[-1]
        errors.append((abs(step - flow)[0], abs(step - plain)[0]))
    (e1, p1), (e2, p2) = errors
    assert np.log2(e1 / e2) == pytest.approx(3, abs=0.2)  # local error O(eta^3) with the penalty
    assert np.log2(p1 / p2) == pytest.approx(2, abs=0.2)  # O(eta^2) without


def test_order_of_accuracy_on_a_quadratic():
    x, y = sp.symbols("x y")
    loss = ir.toy_loss((x**2 + 4 * y**2) / 2, (x, y))
    models = {
        "modified": ir.FlowModel(0.0),
        "unshifted": ir.FlowModel(0.0, shifted_start=False),
        "flow": ir.FlowModel(None),
    }
    sweep = ir.order_sweep(
        loss,
        np.array([1.0, 1.0]),
        heavy_ball,
        momentum=0.5,
        first_step=1.0,
        steps=[200, 400, 800],
        total_time=1.0,
        models=models,
    )
    orders = {k: fitted_order(*v) for k, v in sweep.items()}
    assert orders["modified"] == pytest.approx(2, abs=0.15)
    assert orders["unshifted"] == pytest.approx(1, abs=0.15)
    assert orders["flow"] == pytest.approx(1, abs=0.15)


def test_principal_start_needs_no_shift_without_momentum():
    g = np.array([1.0, -2.0])
    assert np.array_equal(ir.principal_start(np.zeros(2), g, 0.1, 0.0), np.zeros(2))
    assert ir.principal_start(np.zeros(2), g, 0.1, 0.5) == pytest.approx(0.1 * g * 0.5 / 0.25)


def test_invalid_hyperparameters_are_refused():
    with pytest.raises(ValueError):
        ir.regularization_coefficient(0.1, 1.0)
    with pytest.raises(ValueError):
        ir.global_error_sweep(lambda lr, n: np.zeros((n + 1, 1)), lambda lr: np.zeros(1), [], 1.0)
