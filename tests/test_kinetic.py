"""Kinetic energies and their symmetry tests (Eqs. 5--7), checked against sympy and independent computations."""

import numpy as np
import pytest
import sympy as sp

from noether_lib.kinetic import (
    BregmanKinetic,
    DiagonalKinetic,
    EuclideanKinetic,
    MetricKinetic,
    coordinates,
    integrate_motion,
    kinetic_noether_charge,
    kinetic_symmetry_rate,
    phase_space_function,
)
from noether_lib.mechanics import is_identically_zero
from noether_lib.symmetry import Rescale, Rotation, Scale, Translation
from noether_lib.tolerances import INTEGRATOR_DRIFT

t, m = sp.Symbol("t"), sp.Symbol("m", positive=True)
q = coordinates(2, t)
v = q.diff(t)
d1, d2 = sp.symbols("d_1 d_2", positive=True)
n1, n2 = sp.symbols("n_1 n_2")
TRANSLATION, ROTATION, SCALE = Translation(sp.Matrix([n1, n2])), Rotation(0, 1), Scale()


def test_euclidean_eq6_translation_rotation_scale():
    T = EuclideanKinetic(m)
    assert kinetic_symmetry_rate(T, TRANSLATION, q, t) == 0
    assert kinetic_symmetry_rate(T, ROTATION, q, t) == 0
    assert is_identically_zero(kinetic_symmetry_rate(T, SCALE, q, t) - m * (v[0] ** 2 + v[1] ** 2))
    assert is_identically_zero(kinetic_symmetry_rate(T, Rescale([1, -1]), q, t) - m * (v[0] ** 2 - v[1] ** 2))


def test_diagonal_metric_breaks_rotation_unless_isotropic():
    rate = kinetic_symmetry_rate(DiagonalKinetic(m, [d1, d2]), ROTATION, q, t)
    assert is_identically_zero(rate - m * (d2 - d1) * v[0] * v[1])
    assert rate.subs(d2, d1) == 0
    assert kinetic_symmetry_rate(DiagonalKinetic(m, [d1, d2]), TRANSLATION, q, t) == 0
    assert is_identically_zero(
        kinetic_symmetry_rate(DiagonalKinetic(m, [d1, d2]), SCALE, q, t) - m * (d1 * v[0] ** 2 + d2 * v[1] ** 2)
    )


def test_metric_kinetic_matches_diagonal_and_position_dependent_metric_breaks_translation():
    diag = sp.diag(d1, d2)
    assert is_identically_zero(MetricKinetic(m, diag)(q, v) - DiagonalKinetic(m, [d1, d2])(q, v))
    position_dependent = MetricKinetic(m, lambda x: sp.diag(sp.exp(x[0]), 1))
    assert kinetic_symmetry_rate(position_dependent, TRANSLATION, q, t) != 0
    with pytest.raises(ValueError, match="shape"):
        MetricKinetic(m, sp.eye(3))(q, v)
    with pytest.raises(ValueError, match="entries"):
        DiagonalKinetic(m, [1, 2, 3])(q, v)


def test_bregman_eq5_euclidean_h_is_exactly_euclidean():
    T = BregmanKinetic(m, lambda x, y: (x**2 + y**2) / 2)
    assert is_identically_zero(T(q, v) - EuclideanKinetic(m)(q, v))


def test_bregman_eq5_expands_to_eq7():
    h = lambda x, y: sp.exp(x) + x**4 / 12 + x * y**2  # noqa: E731  a non-quadratic metric
    T = BregmanKinetic(m, h)
    leading = T.leading_order()(q, v)
    assert is_identically_zero(T.expansion(q, v, order=2) - leading)
    # independent: Eq. 7 written out with the Hessian computed by hand
    x, y = q
    hess = sp.Matrix([[sp.exp(x) + x**2, 2 * y], [2 * y, 2 * x]])
    assert is_identically_zero(leading - m / 2 * (v.T * hess * v)[0, 0])
    # the remainder is O(m^2): (T - leading)/m^2 stays finite as m -> 0
    assert sp.limit(((T(q, v) - leading) / m**2).subs({x: 0.3, y: -0.2, v[0]: 1, v[1]: 2}), m, 0).is_finite
    with pytest.raises(ValueError, match="Symbol"):
        BregmanKinetic(0.1, h).expansion(q, v)


def test_quadratic_diagonal_h_gives_the_adaptive_metric_and_breaks_rotation():
    T = BregmanKinetic(m, lambda x, y: (d1 * x**2 + d2 * y**2) / 2)
    assert is_identically_zero(T(q, v) - DiagonalKinetic(m, [d1, d2])(q, v))
    assert is_identically_zero(kinetic_symmetry_rate(T, ROTATION, q, t) - m * (d2 - d1) * v[0] * v[1])


def test_rate_matches_finite_difference():
    T = DiagonalKinetic(m, [d1, d2])
    point = {m: 0.3, d1: 1.0, d2: 2.5, v[0]: 0.7, v[1]: -1.1, q[0]: 0.4, q[1]: 0.9}
    rate = float(kinetic_symmetry_rate(T, ROTATION, q, t).subs(point))
    h = 1e-6
    vv = np.array([0.7, -1.1])  # the rate of a diagonal metric under rotation does not depend on q

    def energy(s):
        moved_v = Rotation(0, 1)(vv, s)  # a rotation is linear: Qdot = R(s) qdot
        return 0.3 / 2 * (1.0 * moved_v[0] ** 2 + 2.5 * moved_v[1] ** 2)

    assert abs((energy(h) - energy(-h)) / (2 * h) - rate) < 1e-8


def test_angular_momentum_is_conserved_only_with_an_isotropic_kinetic_energy():
    potential = lambda x: (x[0] ** 2 + x[1] ** 2) / 2  # noqa: E731  isotropic spring
    times = np.linspace(0, 10, 201)
    for masses, conserved in (([1.0, 1.0], True), ([1.0, 3.0], False)):
        kinetic = DiagonalKinetic(1, masses)
        path = integrate_motion(kinetic, potential, [1.0, 0.0], [0.0, 0.5], times)
        charge = sp.lambdify([q[0], q[1], v[0], v[1]], kinetic_noether_charge(kinetic, ROTATION, q, t))
        momentum = charge(*path.T)
        assert (np.ptp(momentum) < INTEGRATOR_DRIFT) == conserved
        energy = masses[0] * path[:, 2] ** 2 / 2 + masses[1] * path[:, 3] ** 2 / 2 + (path[:, :2] ** 2).sum(1) / 2
        assert np.ptp(energy) < INTEGRATOR_DRIFT  # the energy is always conserved (time translation)
    # against the exact solution of the isotropic oscillator
    path = integrate_motion(DiagonalKinetic(1, [1.0, 1.0]), potential, [1.0, 0.0], [0.0, 0.5], times)
    assert np.allclose(path[:, 0], np.cos(times), atol=1e-9) and np.allclose(path[:, 1], 0.5 * np.sin(times), atol=1e-9)


def test_charge_of_rotation_is_angular_momentum():
    charge = kinetic_noether_charge(EuclideanKinetic(m), ROTATION, q, t)
    assert is_identically_zero(charge - m * (q[0] * v[1] - q[1] * v[0]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 1"):
        coordinates(0, t)
    with pytest.raises(ValueError, match="same length"):
        integrate_motion(EuclideanKinetic(1), lambda x: x[0] ** 2, [0.0], [0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match="singular"):
        integrate_motion(DiagonalKinetic(1, [1, 0]), lambda x: x[0] ** 2 + x[1] ** 2, [0.0, 1.0], [0.0, 1.0], [0, 1])


def test_phase_space_function_evaluates_positions_and_velocities():
    expression = q[0] * v[1] - 3 * v[0] ** 2 + q[1]
    f = phase_space_function(expression, q, t)
    x = np.array([[0.5, -1.0], [2.0, 0.3], [0.1, 0.7], [1.5, -0.2]])  # q1, q2, qdot1, qdot2 at two times
    np.testing.assert_allclose(f(*x), x[0] * x[3] - 3 * x[2] ** 2 + x[1], rtol=1e-15)
    assert phase_space_function(sp.Integer(2), q, t)(*x).shape == (2,)  # a constant broadcasts


def test_kinetic_rate_against_differentiating_the_moved_kinetic_energy():
    """The rate (computed through Noether's symmetry derivative) against d/ds T(Q, dQ/dt) at s = 0, done by hand."""
    s = sp.Symbol("s")
    metric = MetricKinetic(m, lambda x: sp.Matrix([[1 + x[0] ** 2, x[1]], [x[1], 2]]))
    for action in (TRANSLATION, ROTATION, SCALE, Rescale([1, -1])):
        moved = action(q, s)
        by_hand = sp.diff(metric(moved, moved.diff(t)), s).subs(s, 0).doit()
        assert is_identically_zero(kinetic_symmetry_rate(metric, action, q, t) - by_hand)
