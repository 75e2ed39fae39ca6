import numpy as np
import pytest
import sympy as sp

from noether_lib import mechanics

t = sp.Symbol("t", real=True)
m, mu, k = sp.symbols("m mu k", positive=True)


def test_euler_lagrange_of_harmonic_oscillator_is_newton():
    q = sp.Function("q")(t)
    lagrangian = m / 2 * sp.diff(q, t) ** 2 - k / 2 * q**2
    (el,) = mechanics.euler_lagrange(lagrangian, [q], t)
    assert sp.simplify(el - (m * sp.diff(q, t, 2) + k * q)) == 0


def test_euler_lagrange_two_coordinates_coupled():
    x, y = sp.Function("x")(t), sp.Function("y")(t)
    lagrangian = (sp.diff(x, t) ** 2 + sp.diff(y, t) ** 2) / 2 - x * y
    el = mechanics.euler_lagrange(lagrangian, [x, y], t)
    assert sp.simplify(el[0] - (sp.diff(x, t, 2) + y)) == 0
    assert sp.simplify(el[1] - (sp.diff(y, t, 2) + x)) == 0


def test_kanai_gives_damped_motion():
    q = sp.Function("q")(t)
    potential = sp.Function("V")(q)
    (el,) = mechanics.euler_lagrange(mechanics.kanai_lagrangian(q, t, m, mu, potential), [q], t)
    reference = mechanics.damped_equation_of_motion(q, t, m, mu, potential)
    assert mechanics.is_identically_zero(el * sp.exp(-mu * t / m) - reference)
    # and a wrong damping is detected
    wrong = mechanics.damped_equation_of_motion(q, t, m, 2 * mu, potential)
    assert not mechanics.is_identically_zero(el * sp.exp(-mu * t / m) - wrong)


def test_euler_lagrange_against_finite_differences_of_the_action():
    """Independent check: the functional derivative of the discretised action equals -E(q) along a test path."""
    q = sp.Function("q")(t)
    lagrangian = mechanics.kanai_lagrangian(q, t, sp.Rational(1), sp.Rational(1, 2), q**4 / 4)
    (el,) = mechanics.euler_lagrange(lagrangian, [q], t)
    times = np.linspace(0.0, 1.0, 2001)
    path = np.sin(2.0 * times) + 0.3 * times**2
    qs, vs = sp.symbols("qs vs")
    density = sp.lambdify((qs, vs, t), lagrangian.subs(sp.Derivative(q, t), vs).subs(q, qs), "numpy")
    el_numeric = sp.lambdify(t, el.subs(q, sp.sin(2 * t) + sp.Rational(3, 10) * t**2).doit(), "numpy")
    # variation localised at t = 0.5
    bump = np.exp(-((times - 0.5) ** 2) / (2 * 0.02**2))
    eps = 1e-4
    dS = (
        mechanics.discretised_action(path + eps * bump, times, density)
        - mechanics.discretised_action(path - eps * bump, times, density)
    ) / (2 * eps)
    expected = -np.trapezoid(el_numeric(times) * bump, times)
    assert dS == pytest.approx(expected, rel=1e-4)


def test_dot_notation():
    q = sp.Function("q")(t)
    expr = m * sp.diff(q, t, 2) + mu * sp.diff(q, t) + q
    shown = mechanics.dot_notation(expr, [q], t)
    assert shown == m * sp.Symbol(r"\ddot{q}") + mu * sp.Symbol(r"\dot{q}") + sp.Symbol("q")


def test_bad_coordinate_is_rejected():
    with pytest.raises(TypeError, match="function of t"):
        mechanics.euler_lagrange(t**2, [sp.Symbol("q")], t)


def test_discretised_action_rejects_mismatched_input():
    with pytest.raises(ValueError):
        mechanics.discretised_action(np.zeros(5), np.zeros(4), lambda q, v, s: q)
