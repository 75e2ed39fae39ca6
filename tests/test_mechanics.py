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


# --- Bregman Lagrangian (Eq. 2), Table 1 and Eq. 4 ------------------------------------------------------------

tp = sp.Symbol("t", positive=True)
eta, beta = sp.symbols("eta beta", positive=True)
f = sp.Function("f")
h_general = sp.Function("h")
euclidean = lambda *x: sum(xi**2 for xi in x) / 2  # noqa: E731
entropy = lambda *x: sum(xi * sp.log(xi) for xi in x)  # noqa: E731


def test_kanai_lagrangian_several_coordinates():
    x, y = sp.Function("x")(t), sp.Function("y")(t)
    lagrangian = mechanics.kanai_lagrangian([x, y], t, m, mu, x * y)
    expected = sp.exp(mu * t / m) * (m / 2 * (sp.diff(x, t) ** 2 + sp.diff(y, t) ** 2) - x * y)
    assert mechanics.is_identically_zero(lagrangian - expected)


def test_bregman_divergence_examples():
    y1, y2, x1, x2 = sp.symbols("y1 y2 x1 x2", positive=True)
    squared = mechanics.bregman_divergence(euclidean, [y1, y2], [x1, x2])
    assert mechanics.is_identically_zero(squared - ((y1 - x1) ** 2 + (y2 - x2) ** 2) / 2)
    kl = mechanics.bregman_divergence(entropy, [y1, y2], [x1, x2])
    generalised_kl = sum(a * sp.log(a / b) - a + b for a, b in ((y1, x1), (y2, x2)))
    assert mechanics.is_identically_zero(sp.expand_log(kl - generalised_kl, force=True))
    # a general h: D_h vanishes to first order, and its second derivative in y is h''
    x, eps = sp.symbols("x epsilon")
    general = mechanics.bregman_divergence(h_general, [x + eps], [x])
    assert sp.simplify(general.subs(eps, 0).doit()) == 0
    assert sp.simplify(sp.diff(general, eps).subs(eps, 0).doit()) == 0
    with pytest.raises(ValueError):
        mechanics.bregman_divergence(euclidean, [y1], [x1, x2])


def test_bregman_lagrangian_of_damped_motion_is_kanai():
    q = sp.Function("q")(t)
    bregman = mechanics.bregman_lagrangian([q], t, mechanics.damped_motion_parameters(m, mu, t), euclidean, f(q))
    assert mechanics.is_identically_zero(bregman - mechanics.kanai_lagrangian(q, t, m, mu, f(q)))


def test_bregman_euler_lagrange_against_wibisono_general_equation():
    """Independent reference (Wibisono, Wilson & Jordan 2016, under ideal scaling d(gamma)/dt = e^alpha):
    q'' + (e^alpha - alpha') q' + e^(2 alpha + beta) h''(q + e^-alpha q')^(-1) f'(q) = 0, multiplied by h''."""
    q = sp.Function("q")(tp)
    p, C = sp.symbols("p C", positive=True)
    params = mechanics.BregmanParameters(sp.log(p) - sp.log(tp), p * sp.log(tp) + sp.log(C), p * sp.log(tp))
    h = lambda x: x**4 / 12 + x**2 / 2  # noqa: E731  (strictly convex, non-quadratic)
    (el,) = mechanics.euler_lagrange(mechanics.bregman_lagrangian([q], tp, params, h, f(q)), [q], tp)
    alpha, beta_t, _ = params
    qd = sp.diff(q, tp)
    x = sp.Symbol("x")
    h2 = sp.diff(h(x), x, 2).subs(x, q + sp.exp(-alpha) * qd)
    reference = h2 * (sp.diff(q, tp, 2) + (sp.exp(alpha) - sp.diff(alpha, tp)) * qd) + sp.exp(
        2 * alpha + beta_t
    ) * sp.diff(f(q), q)
    factor = mechanics.proportionality_factor([el], [reference], [q], tp)
    assert not factor.has(q)


def test_table1_nesterov_row():
    """The printed row (alpha = log 2 - log t, beta = 2 log t + log 1/4, gamma = 2 log t) gives q'' + 3/t q' + f' = 0."""
    q = sp.Function("q")(tp)
    lagrangian = mechanics.bregman_lagrangian([q], tp, mechanics.nesterov_parameters(tp), euclidean, f(q))
    el = mechanics.euler_lagrange(lagrangian, [q], tp)
    factor = mechanics.proportionality_factor(el, mechanics.nesterov_equation_of_motion([q], tp, f(q)), [q], tp)
    assert sp.simplify(factor - tp**3 / 2) == 0


def test_table1_damped_motion_and_momentum_rows():
    q = sp.Function("q")(t)
    el = mechanics.euler_lagrange(
        mechanics.bregman_lagrangian([q], t, mechanics.damped_motion_parameters(m, mu, t), euclidean, f(q)), [q], t
    )
    reference = [mechanics.damped_equation_of_motion(q, t, m, mu, f(q))]
    assert sp.simplify(mechanics.proportionality_factor(el, reference, [q], t) - sp.exp(mu * t / m)) == 0
    el = mechanics.euler_lagrange(
        mechanics.bregman_lagrangian([q], t, mechanics.momentum_parameters(eta, beta, t), euclidean, f(q)), [q], t
    )
    reference = mechanics.modified_equation_of_motion([q], t, eta, beta, 0, f(q))
    mechanics.proportionality_factor(el, reference, [q], t)


def test_table1_natural_gradient_row_general_h():
    q = sp.Function("q")(t)
    lagrangian = mechanics.bregman_lagrangian([q], t, mechanics.damped_motion_parameters(m, mu, t), h_general, f(q))
    (el,) = mechanics.euler_lagrange(lagrangian, [q], t)
    limit = mechanics.massless_limit(el * sp.exp(-mu * t / m), m)
    (reference,) = mechanics.natural_gradient_flow_equation([q], t, h_general, f(q), mu)
    assert mechanics.is_identically_zero(limit - reference.doit())


def test_table1_natural_gradient_row_entropy_in_two_dimensions():
    q1, q2 = sp.Function("q1")(t), sp.Function("q2")(t)
    lagrangian = mechanics.bregman_lagrangian(
        [q1, q2], t, mechanics.damped_motion_parameters(m, mu, t), entropy, f(q1, q2)
    )
    el = mechanics.euler_lagrange(lagrangian, [q1, q2], t)
    limits = [mechanics.massless_limit(e * sp.exp(-mu * t / m), m) for e in el]
    reference = mechanics.natural_gradient_flow_equation([q1, q2], t, entropy, f(q1, q2), mu)
    assert mechanics.proportionality_factor(limits, reference, [q1, q2], t) == 1
    # i.e. q_i' = -q_i df/dq_i / mu, the natural gradient for the Fisher metric diag(1/q)
    assert mechanics.is_identically_zero(reference[0] - (mu * sp.diff(q1, t) / q1 + sp.diff(f(q1, q2), q1)))


def test_eq4_gives_eq3_exactly():
    q1, q2 = sp.Function("q1")(t), sp.Function("q2")(t)
    lagrangian = mechanics.sgd_lagrangian([q1, q2], t, eta, beta, k, f(q1, q2))
    el = mechanics.euler_lagrange(lagrangian, [q1, q2], t)
    reference = mechanics.modified_equation_of_motion([q1, q2], t, eta, beta, k, f(q1, q2))
    factor = mechanics.proportionality_factor(el, reference, [q1, q2], t)
    assert sp.simplify(factor - sp.exp(2 * (1 - beta) * t / (eta * (1 + beta)))) == 0
    # Eq. 4 is the Bregman Lagrangian of Table 1's GD + momentum row with the weight-decay spring in the potential
    spring = k / 2 * (q1**2 + q2**2)
    bregman = mechanics.bregman_lagrangian(
        [q1, q2], t, mechanics.momentum_parameters(eta, beta, t), euclidean, f(q1, q2) + spring
    )
    assert mechanics.is_identically_zero(bregman - lagrangian)


def test_massless_limit():
    x = sp.Symbol("x")
    assert mechanics.massless_limit(sp.sin(m * x) / m, m) == x
    assert mechanics.massless_limit(m * x + 3, m) == 3
    assert sp.simplify(mechanics.massless_limit((sp.exp(m) - 1 - m) / m**2, m) - sp.Rational(1, 2)) == 0
    with pytest.raises(ValueError, match="diverges"):
        mechanics.massless_limit(x / m, m)


def test_proportionality_factor_rejects_different_equations():
    q = sp.Function("q")(t)
    with pytest.raises(ValueError, match="not proportional"):
        mechanics.proportionality_factor([sp.diff(q, t, 2) + q], [sp.diff(q, t, 2) + 2 * q], [q], t)
    with pytest.raises(ValueError):
        mechanics.proportionality_factor([q], [], [q], t)


def test_heavy_ball_modified_equation_is_eq3_with_the_dampened_time_scale():
    from noether_lib.modified_equation import damping, effective_mass

    q = sp.Function("q")(t)
    delta = sp.Symbol("delta", positive=True)
    potential = f(q) + k * q**2 / 2
    derived = mechanics.heavy_ball_modified_equation(q, t, eta, beta, delta, potential)
    reference = mechanics.damped_equation_of_motion(q, t, eta * (1 - delta) * (1 + beta) / 2, 1 - beta, potential)
    assert mechanics.is_identically_zero(derived - reference)
    assert mechanics.is_identically_zero(
        derived - mechanics.damped_equation_of_motion(q, t, effective_mass(eta, beta, delta), damping(beta), potential)
    )
    first = mechanics.heavy_ball_modified_equation(q, t, eta, beta, 0, potential, order=1)
    assert mechanics.is_identically_zero(first - ((1 - beta) * sp.diff(q, t) + sp.diff(potential, q)))
    # the next order: + eta^2 (1 - beta) q''' / 6 (independent Taylor coefficient)
    third = mechanics.heavy_ball_modified_equation(q, t, eta, beta, 0, potential, order=3)
    assert mechanics.is_identically_zero(third - derived.subs(delta, 0) - eta**2 * (1 - beta) / 6 * sp.diff(q, t, 3))
    with pytest.raises(ValueError):
        mechanics.heavy_ball_modified_equation(q, t, eta * 2, beta, 0, potential)


def test_solve_damped_motion_against_the_closed_form():
    times = np.linspace(0.0, 3.0, 301)
    gamma, omega = 0.2, np.sqrt(4.0 - 0.2**2)
    exact = np.exp(-gamma * times) * (np.cos(omega * times) + gamma / omega * np.sin(omega * times))
    path = mechanics.solve_damped_motion(lambda x: -4.0 * x, 1.0, 0.4, 1.0, 0.0, times)
    np.testing.assert_allclose(path, exact, atol=1e-10)


def test_first_conjugate_time_is_the_zero_of_the_jacobi_solution():
    mass, damping, spring = 2.0, 0.6, 3.0
    conjugate = mechanics.first_conjugate_time(mass, damping, spring)
    times = np.linspace(0.0, 1.2 * conjugate, 2001)
    jacobi = mechanics.solve_damped_motion(lambda x: -spring * x, mass, damping, 0.0, 1.0, times)  # dq(0) = 0
    first_zero = times[1:][np.argmax(jacobi[1:] <= 0)]
    assert abs(first_zero - conjugate) < 2 * (times[1] - times[0])
    assert mechanics.first_conjugate_time(1.0, 5.0, 1.0) == float("inf")  # overdamped: no conjugate point


def test_action_stationarity_tells_a_solution_from_a_wrong_path():
    t, m, mu = sp.Symbol("t"), sp.Symbol("m"), sp.Symbol("mu")
    q = sp.Function("q")(t)
    lagrangian = mechanics.numeric_lagrangian(
        mechanics.kanai_lagrangian(q, t, m, mu, 2 * q**2), q, t, {m: 1.0, mu: 0.3}
    )
    times = np.linspace(0.0, 1.0, 4001)
    bumps = [np.sin(j * np.pi * times) * np.sin(np.pi * times) for j in (1, 2, 3)]
    solution = mechanics.solve_damped_motion(lambda x: -4.0 * x, 1.0, 0.3, 1.0, 0.0, times)
    wrong = mechanics.solve_damped_motion(lambda x: -4.0 * x, 1.0, -0.3, 1.0, 0.0, times)
    assert mechanics.action_stationarity(solution, times, lagrangian, bumps) < 1e-6
    assert mechanics.action_stationarity(wrong, times, lagrangian, bumps) > 1e-2


def test_dot_notation_collects_an_equation_of_motion():
    t, m, mu = sp.Symbol("t"), sp.Symbol("m"), sp.Symbol("mu")
    q = sp.Function("q")(t)
    expression = m * q.diff(t, 2) + 2 * mu * q.diff(t) - mu * q.diff(t) + mu * m * q.diff(t)
    shown = mechanics.dot_notation(expression, [q], t, collect=True)
    qdot = sp.Symbol(r"\dot{q}")
    assert shown.coeff(qdot) == sp.factor(mu * (1 + m)) and shown.coeff(sp.Symbol(r"\ddot{q}")) == m
