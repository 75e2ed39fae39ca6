import numpy as np
import pytest
import sympy as sp
import torch
from scipy.linalg import expm

from noether_lib import modified_equation as me
from noether_lib import rules
from noether_lib.learning_rule import critical_step_curvature, damping, effective_mass, momentum_memory, time_scale

H = np.array([[2.0, 0.5], [0.5, 1.0]])
Q0 = np.array([1.0, -0.5])


def quadratic_gradient(q: np.ndarray) -> np.ndarray:
    return H @ q


def test_constants_of_eq3():
    assert me.effective_mass(0.1, 0.9) == pytest.approx(0.1 * 1.9 / 2)
    assert me.effective_mass(0.1) == pytest.approx(0.05)
    assert me.damping(0.9) == pytest.approx(0.1)
    assert me.time_scale(0.1) == pytest.approx(0.1)
    # with dampening, time runs at lr (1 - delta) per step and the mass shrinks with it; the damping does not change
    assert me.time_scale(0.1, 0.25) == pytest.approx(0.075)
    assert me.effective_mass(0.1, 0.9, 0.25) == pytest.approx(0.075 * 1.9 / 2)
    assert me.damping(0.9, 0.25) == pytest.approx(0.1)


def test_constants_accept_sympy_symbols_exactly():
    eta, beta, delta = sp.symbols("eta beta delta", positive=True)
    assert sp.simplify(me.effective_mass(eta, beta) - eta * (1 + beta) / 2) == 0
    assert sp.simplify(me.effective_mass(eta, beta, delta) - eta * (1 - delta) * (1 + beta) / 2) == 0
    assert me.damping(beta) == 1 - beta
    assert me.time_scale(eta) == eta


@pytest.mark.parametrize(
    "call",
    [
        lambda: me.effective_mass(0.0, 0.5),
        lambda: me.effective_mass(0.1, 1.0),
        lambda: me.damping(-0.1),
        lambda: me.damping(0.5, 1.0),
        lambda: me.time_scale(-1.0),
        lambda: me.velocity_from_momentum_buffer(np.ones(2), 1.0),
        lambda: me.matched_initial_velocity(np.ones(2), 1.2),
        lambda: me.step_times(-1, 0.1),
    ],
)
def test_bad_hyperparameters_are_rejected(call):
    with pytest.raises(ValueError):
        call()


def test_velocity_from_momentum_buffer_is_the_step_over_the_time_scale():
    lr, momentum, dampening = 0.05, 0.9, 0.3
    q = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    optimizer = torch.optim.SGD([q], lr=lr, momentum=momentum, dampening=dampening)
    for _ in range(5):
        before = q.detach().clone().numpy()
        optimizer.zero_grad()
        (q**4).sum().backward()
        optimizer.step()
    buffer = optimizer.state[q]["momentum_buffer"].numpy()
    step_velocity = (q.detach().numpy() - before) / me.time_scale(lr, dampening)
    np.testing.assert_allclose(me.velocity_from_momentum_buffer(buffer, dampening), step_velocity, rtol=1e-12)


def test_step_times():
    np.testing.assert_allclose(me.step_times(4, 0.1, 0.5), [0.0, 0.05, 0.1, 0.15, 0.2])


def test_gradient_flow_closed_form():
    """mu q' = -(H + k) q has the solution exp(-(H + k) t / mu) q0."""
    times = np.linspace(0.0, 3.0, 7)
    momentum, k = 0.5, 0.1
    flow = me.gradient_flow(quadratic_gradient, Q0, times, momentum=momentum, weight_decay=k)
    A = (H + k * np.eye(2)) / (1 - momentum)
    expected = np.array([expm(-A * s) @ Q0 for s in times])
    np.testing.assert_allclose(flow, expected, rtol=1e-9, atol=1e-12)


def test_modified_flow_closed_form():
    """m q'' + mu q' + (H + k) q = 0 as a first-order linear system, solved by a matrix exponential."""
    lr, momentum, dampening, k = 0.1, 0.6, 0.2, 0.05
    m, mu = me.effective_mass(lr, momentum, dampening), me.damping(momentum, dampening)
    v0 = np.array([0.3, 0.7])
    times = np.linspace(0.0, 2.0, 5)
    flow = me.modified_flow(
        quadratic_gradient,
        Q0,
        times,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=k,
        initial_velocity=v0,
    )
    system = np.block([[np.zeros((2, 2)), np.eye(2)], [-(H + k * np.eye(2)) / m, -mu / m * np.eye(2)]])
    expected = np.array([(expm(system * s) @ np.concatenate([Q0, v0]))[:2] for s in times])
    np.testing.assert_allclose(flow, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("momentum, dampening", [(0.0, 0.0), (0.5, 0.0), (0.9, 0.0), (0.5, 0.3), (0.9, 0.6)])
def test_matched_initial_velocity_reproduces_the_start_up_shift(momentum, dampening):
    """Constant force (linear loss): the iterates and the modified flow end on the same line only with the
    matched initial velocity; the derivation in the docstring is exact here."""
    force = np.array([1.0, -2.0])
    lr = 0.1
    steps = int(40 / (1 - momentum))
    path = rules.heavy_ball(lambda q: force, Q0, lr, steps, momentum=momentum, dampening=dampening)
    times = me.step_times(steps, lr, dampening)
    flow = me.modified_flow(lambda q: force, Q0, times, lr=lr, momentum=momentum, dampening=dampening)
    scale = np.abs(path[-1] - Q0).max()
    assert np.abs(flow[-1] - path[-1]).max() < 1e-8 * scale
    np.testing.assert_allclose(
        me.matched_initial_velocity(force, momentum, dampening),
        (1 + dampening) / (1 + momentum) * (path[1] - path[0]) / me.time_scale(lr, dampening),
    )
    if momentum > 0:  # the first step's velocity lands O(lr) away from the line
        naive = me.modified_flow(
            lambda q: force,
            Q0,
            times,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            initial_velocity=(path[1] - path[0]) / me.time_scale(lr, dampening),
        )
        assert np.abs(naive[-1] - path[-1]).max() > 0.1 * me.time_scale(lr, dampening) * np.abs(force).max()


def _global_errors(lr: float, momentum: float, dampening: float, k: float, naive: bool = False) -> tuple[float, float]:
    total_time = 1.0
    steps = int(round(total_time / me.time_scale(lr, dampening)))
    path = rules.heavy_ball(quadratic_gradient, Q0, lr, steps, momentum=momentum, dampening=dampening, weight_decay=k)
    times = me.step_times(steps, lr, dampening)[[0, -1]]
    flow = me.gradient_flow(quadratic_gradient, Q0, times, momentum=momentum, weight_decay=k)[-1]
    v0 = (path[1] - path[0]) / me.time_scale(lr, dampening) if naive else None
    modified = me.modified_flow(
        quadratic_gradient,
        Q0,
        times,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=k,
        initial_velocity=v0,
    )[-1]
    return float(np.linalg.norm(flow - path[-1])), float(np.linalg.norm(modified - path[-1]))


@pytest.mark.parametrize("momentum, dampening, k", [(0.0, 0.0, 0.0), (0.5, 0.0, 0.1), (0.5, 0.3, 0.1)])
def test_orders_of_accuracy(momentum, dampening, k):
    """Halving the step halves the error of gradient flow (order 1) and quarters that of Eq. 3 (order 2)."""
    lr = 0.01 / (1 - dampening)
    coarse, fine = _global_errors(lr, momentum, dampening, k), _global_errors(lr / 2, momentum, dampening, k)
    assert coarse[0] / fine[0] == pytest.approx(2.0, rel=0.05)
    assert coarse[1] / fine[1] == pytest.approx(4.0, rel=0.05)


def test_first_step_velocity_is_only_first_order_with_momentum():
    lr = 0.01
    coarse = _global_errors(lr, 0.5, 0.0, 0.1, naive=True)[1]
    fine = _global_errors(lr / 2, 0.5, 0.0, 0.1, naive=True)[1]
    assert coarse / fine == pytest.approx(2.0, rel=0.1)


def test_bad_times_and_velocity_are_rejected():
    with pytest.raises(ValueError, match="times"):
        me.gradient_flow(quadratic_gradient, Q0, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="times"):
        me.modified_flow(quadratic_gradient, Q0, np.array([0.0, 1.0, 0.5]), lr=0.1)
    with pytest.raises(ValueError, match="initial_velocity"):
        me.modified_flow(quadratic_gradient, Q0, np.array([0.0, 1.0]), lr=0.1, initial_velocity=np.ones(3))


def test_global_errors_and_fitted_order():
    settings = dict(momentum=0.5, dampening=0.2, weight_decay=0.1)

    def iterates(lr: float, n: int) -> np.ndarray:
        return rules.heavy_ball(quadratic_gradient, Q0, lr, n, **settings)

    errors = me.global_errors(iterates, quadratic_gradient, Q0, [100, 200], 1.0, **settings)
    np.testing.assert_allclose(errors.lrs, [1.0 / (100 * 0.8), 1.0 / (200 * 0.8)])
    direct = _global_errors(errors.lrs[0], 0.5, 0.2, 0.1)
    assert errors.gradient_flow[0] == pytest.approx(direct[0], rel=1e-6)
    assert errors.modified_equation[0] == pytest.approx(direct[1], rel=1e-6)
    assert me.fitted_order(errors.lrs, errors.gradient_flow) == pytest.approx(1.0, abs=0.05)
    assert me.fitted_order(errors.lrs, errors.modified_equation) == pytest.approx(2.0, abs=0.1)
    naive = me.global_errors(
        iterates, quadratic_gradient, Q0, [100, 200], 1.0, initial_velocity="first step", **settings
    )
    assert me.fitted_order(naive.lrs, naive.modified_equation) == pytest.approx(1.0, abs=0.1)


def test_fitted_order_exact_power_law_and_bad_input():
    lrs = np.array([0.1, 0.05, 0.025])
    assert me.fitted_order(lrs, 3.0 * lrs**2) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        me.fitted_order(lrs, np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError):
        me.fitted_order(lrs[:1], lrs[:1])
    with pytest.raises(ValueError, match="initial_velocity"):
        me.global_errors(lambda lr, n: None, quadratic_gradient, Q0, [10], 1.0, initial_velocity="zero")
    with pytest.raises(ValueError, match="steps"):
        me.global_errors(lambda lr, n: None, quadratic_gradient, Q0, [0], 1.0)


def test_momentum_memory_and_critical_damping_of_eq3():
    beta, delta, eta, r = sp.symbols("beta delta eta r", positive=True)
    memory = effective_mass(eta, beta, delta) / damping(beta) / time_scale(eta, delta)
    assert sp.simplify(momentum_memory(beta) - memory) == 0
    # at h*lambda = critical the two roots of m r^2 + mu r + lambda coincide (the discriminant vanishes)
    m, mu = effective_mass(eta, beta, delta), damping(beta)
    critical_lambda = critical_step_curvature(beta) / time_scale(eta, delta)
    assert sp.simplify(sp.discriminant(m * r**2 + mu * r + critical_lambda, r)) == 0
    assert abs(momentum_memory(0.9) - 9.5) < 1e-12
