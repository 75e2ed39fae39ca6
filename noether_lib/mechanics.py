"""Lagrangian mechanics of learning, symbolically (sympy).

The principle of least action turns a Lagrangian :math:`\\mathcal L(q,\\dot q,t)` into the
Euler--Lagrange equation (Eq. 1 of the paper)

.. math:: \\frac{d}{dt}\\frac{\\partial\\mathcal L}{\\partial\\dot q}-\\frac{\\partial\\mathcal L}{\\partial q}=0 .

Damping enters through an explicitly time-dependent Lagrangian (Kanai 1948),
:math:`\\mathcal L=e^{\\mu t/m}(\\tfrac m2\\dot q^2-V(q))`, whose Euler--Lagrange equation is
:math:`m\\ddot q+\\mu\\dot q+V'(q)=0`.

The Bregman Lagrangian of Wibisono, Wilson and Jordan (Eq. 2 of the paper),

.. math:: \\mathcal L(q,\\dot q,t)=e^{\\alpha_t+\\gamma_t}\\Big(D_h\\big(q+e^{-\\alpha_t}\\dot q,\\,q\\big)-e^{\\beta_t}f(q)\\Big),

covers the learning rules of Table 1 through its algorithmic degrees of freedom :math:`(\\alpha_t,\\beta_t,\\gamma_t,h)`
(:class:`BregmanParameters` and the functions ``*_parameters``); the Lagrangian of SGD with a finite learning rate,
momentum and weight decay (Eq. 4) is :func:`sgd_lagrangian`. Coordinates are sympy functions ``q_i(t)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import sympy as sp

from noether_lib.learning_rule import damping, effective_mass, time_scale

__all__ = [
    "euler_lagrange",
    "kanai_lagrangian",
    "damped_equation_of_motion",
    "is_identically_zero",
    "dot_notation",
    "discretised_action",
    "numeric_lagrangian",
    "action_stationarity",
    "solve_damped_motion",
    "first_conjugate_time",
    "bregman_divergence",
    "BregmanParameters",
    "bregman_lagrangian",
    "nesterov_parameters",
    "damped_motion_parameters",
    "momentum_parameters",
    "sgd_lagrangian",
    "modified_equation_of_motion",
    "heavy_ball_modified_equation",
    "nesterov_equation_of_motion",
    "natural_gradient_flow_equation",
    "massless_limit",
    "proportionality_factor",
]


def _velocity(q: sp.Expr, t: sp.Symbol) -> sp.Expr:
    return sp.diff(q, t)


def euler_lagrange(lagrangian: sp.Expr, coordinates: Sequence[sp.Expr], t: sp.Symbol) -> list[sp.Expr]:
    """Euler--Lagrange expressions of ``lagrangian`` (Eq. 1 of the paper).

    Args:
        lagrangian: a sympy expression in ``t``, the coordinates ``q_i(t)`` and their first derivatives.
        coordinates: the generalised coordinates, as applied functions ``q(t)``.
        t: the time symbol.

    Returns:
        One expression per coordinate, :math:`E_i=\\frac{d}{dt}\\partial_{\\dot q_i}\\mathcal L-\\partial_{q_i}\\mathcal L`;
        the equations of motion are :math:`E_i=0`.
    """
    equations = []
    for q in coordinates:
        if not (isinstance(q, sp.core.function.AppliedUndef) and q.args == (t,)):
            raise TypeError(f"each coordinate must be a function of {t} alone, like q({t}); got {q!r}")
        momentum = sp.diff(lagrangian, _velocity(q, t))
        equations.append(sp.diff(momentum, t) - sp.diff(lagrangian, q))
    return equations


def kanai_lagrangian(
    q: sp.Expr | Sequence[sp.Expr], t: sp.Symbol, m: sp.Expr, mu: sp.Expr, potential: sp.Expr
) -> sp.Expr:
    """The damped (Caldirola--Kanai) Lagrangian :math:`e^{\\mu t/m}(\\tfrac m2|\\dot q|^2-V(q))`.

    This is the time-dependent Lagrangian of Sec. 1 of the paper ("Damping in optimization"); with
    :math:`V=f+\\tfrac k2|q|^2` it is Eq. 4 (:func:`sgd_lagrangian`). ``q`` is one coordinate or a sequence of them.
    """
    coordinates = [q] if isinstance(q, sp.Expr) else list(q)
    kinetic = m / 2 * sum(_velocity(qi, t) ** 2 for qi in coordinates)
    return sp.exp(mu * t / m) * (kinetic - potential)


def damped_equation_of_motion(q: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, potential: sp.Expr) -> sp.Expr:
    """Left-hand side of Newton's damped equation :math:`m\\ddot q+\\mu\\dot q+V'(q)`, written directly.

    This is the reference the Euler--Lagrange derivation is checked against, not a derivation.
    """
    return m * sp.diff(q, t, 2) + mu * sp.diff(q, t) + sp.diff(potential, q)


def is_identically_zero(expression: sp.Expr) -> bool:
    """True when sympy proves ``expression`` equal to zero (after expansion and simplification).

    If that fails, powers are rewritten as exponentials (so that :math:`t^p` and :math:`e^{p\\log t}` meet) and
    the expression is simplified once more.
    """
    if sp.simplify(sp.expand(expression)) == 0:
        return True
    return sp.simplify(sp.expand(expression.rewrite(sp.exp))) == 0


def dot_notation(
    expression: sp.Expr, coordinates: Sequence[sp.Expr], t: sp.Symbol, *, collect: bool = False
) -> sp.Expr:
    """Rewrite ``q(t)``, ``dq/dt`` and ``d^2q/dt^2`` as the symbols :math:`q,\\dot q,\\ddot q` for display.

    With ``collect`` the expression is first expanded and collected in the accelerations and velocities, each
    coefficient factored: an equation of motion then reads :math:`m\\ddot q+\\mu\\dot q+\\dots`.
    """
    if collect:
        derivatives = [sp.diff(q, t, 2) for q in coordinates] + [sp.diff(q, t) for q in coordinates]

        def collected(e: sp.Expr) -> sp.Expr:
            return sp.collect(sp.expand(e), derivatives, sp.factor)

        expression = expression.applyfunc(collected) if isinstance(expression, sp.MatrixBase) else collected(expression)
    replacements: dict[sp.Expr, sp.Expr] = {}
    for q in coordinates:
        name = sp.latex(q.func)
        replacements[sp.Derivative(q, (t, 2))] = sp.Symbol(rf"\ddot{{{name}}}")
        replacements[sp.Derivative(q, t)] = sp.Symbol(rf"\dot{{{name}}}")
    for q in coordinates:
        replacements[q] = sp.Symbol(sp.latex(q.func))
    # derivatives first, so that q(t) inside them is not replaced too early
    result = expression.subs({k: v for k, v in replacements.items() if isinstance(k, sp.Derivative)})
    return result.subs({k: v for k, v in replacements.items() if not isinstance(k, sp.Derivative)})


def discretised_action(
    path: np.ndarray, times: np.ndarray, lagrangian: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
) -> float:
    """The action :math:`S=\\int\\mathcal L(q,\\dot q,t)\\,dt` of a sampled path (trapezoidal rule, second-order velocities).

    Args:
        path: samples :math:`q(t_i)` of a one-dimensional path.
        times: the sample times (increasing).
        lagrangian: a vectorised numeric Lagrangian ``L(q, qdot, t)``.
    """
    path = np.asarray(path, dtype=float)
    times = np.asarray(times, dtype=float)
    if path.shape != times.shape or path.ndim != 1 or len(path) < 3:
        raise ValueError("path and times must be one-dimensional arrays of the same length (at least 3 samples)")
    velocity = np.gradient(path, times, edge_order=2)
    return float(np.trapezoid(lagrangian(path, velocity, times), times))


def numeric_lagrangian(
    lagrangian: sp.Expr, q: sp.Expr, t: sp.Symbol, values: dict[sp.Basic, float] | None = None
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A one-coordinate Lagrangian in ``q(t)``, its velocity and ``t`` as a vectorised NumPy function
    ``L(q, qdot, t)`` (for :func:`discretised_action`), after substituting ``values`` (constants, a concrete
    potential for an undetermined function) and evaluating the derivatives they create."""
    position, velocity = sp.Dummy("q"), sp.Dummy("v")
    expression = lagrangian.subs(values or {}).doit()
    expression = expression.subs(sp.Derivative(q, t), velocity).subs(q, position)
    return sp.lambdify((position, velocity, t), expression, "numpy")


def action_stationarity(
    path: np.ndarray,
    times: np.ndarray,
    lagrangian: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    variations: Sequence[np.ndarray],
    step: float = 1e-3,
) -> float:
    """How far a path is from making the discretised action stationary: :math:`\\max_j|S'_j|/\\max_j|S''_j|`.

    :math:`S'_j` and :math:`S''_j` are the first and second derivatives of :math:`\\varepsilon\\mapsto
    S[q+\\varepsilon\\,\\delta q_j]` at 0 (:func:`discretised_action`), by central differences with ``step``; each
    variation should vanish at the end points. The ratio is the size of :math:`\\varepsilon` at which the linear
    term would match the quadratic one: zero, up to the discretisation, for a solution of the Euler--Lagrange equation.
    """
    first, second = [], []
    for bump in variations:
        plus, zero, minus = (
            discretised_action(path + e * np.asarray(bump), times, lagrangian) for e in (step, 0.0, -step)
        )
        first.append(abs(plus - minus) / (2 * step))
        second.append(abs(plus - 2 * zero + minus) / step**2)
    return max(first) / max(second)


def solve_damped_motion(
    force: Callable[[np.ndarray], np.ndarray],
    mass: float,
    damping_coefficient: float,
    position: float,
    velocity: float,
    times: np.ndarray,
) -> np.ndarray:
    """Integrate Newton's damped equation :math:`m\\ddot q+\\mu\\dot q=F(q)` numerically (SciPy's DOP853, rtol =
    atol = 1e-12), with :math:`F=-V'` written by hand: an integration that no symbolic derivation enters.

    Returns the positions :math:`q(t)` at ``times`` (starting at ``times[0]``).
    """
    from scipy.integrate import solve_ivp

    if not mass > 0:
        raise ValueError(f"mass must be positive, got {mass}")
    times = np.asarray(times, dtype=float)

    def field(_: float, state: np.ndarray) -> list[float]:
        return [state[1], (float(force(state[0])) - damping_coefficient * state[1]) / mass]

    result = solve_ivp(
        field, (times[0], times[-1]), [position, velocity], t_eval=times, method="DOP853", rtol=1e-12, atol=1e-12
    )
    if not result.success:
        raise RuntimeError(f"integration failed: {result.message}")
    return result.y[0]


def first_conjugate_time(mass: float, damping_coefficient: float, spring: float) -> float:
    """The first conjugate time :math:`\\pi/\\omega`, :math:`\\omega=\\sqrt{k/m-(\\mu/2m)^2}`, of the damped
    oscillator :math:`V=\\tfrac k2q^2` started from a fixed point.

    The second variation of the Kanai action is :math:`\\int e^{\\mu t/m}(m\\,\\delta\\dot q^2-k\\,\\delta q^2)\\,dt`;
    its Jacobi equation is the damped equation itself, whose solution with :math:`\\delta q(0)=0` is
    :math:`e^{-\\mu t/2m}\\sin\\omega t`. For end times below :math:`\\pi/\\omega` the stationary path is a minimum;
    beyond it some variation lowers the action. Over- or critically damped oscillators have none (``inf``).
    """
    if not (mass > 0 and spring > 0 and damping_coefficient >= 0):
        raise ValueError("mass and spring must be positive and the damping non-negative")
    omega_sq = spring / mass - (damping_coefficient / (2 * mass)) ** 2
    return float(np.pi / np.sqrt(omega_sq)) if omega_sq > 0 else float("inf")


def bregman_divergence(h: Callable[..., sp.Expr], y: Sequence[sp.Expr], x: Sequence[sp.Expr]) -> sp.Expr:
    """The Bregman divergence :math:`D_h(y,x)=h(y)-h(x)-\\langle\\nabla h(x),y-x\\rangle` (Sec. 1 of the paper).

    Args:
        h: the distance-generating function, called with one sympy argument per coordinate (a lambda, or an
            undefined ``sympy.Function`` for a general :math:`h`).
        y, x: the two points, as sequences of the same length.
    """
    if len(y) != len(x) or not x:
        raise ValueError("y and x must be non-empty sequences of the same length")
    dummies = [sp.Dummy(f"x{i}") for i in range(len(x))]
    at_x = dict(zip(dummies, x))
    gradient = [sp.diff(h(*dummies), z).subs(at_x, simultaneous=True) for z in dummies]
    return h(*y) - h(*x) - sum(g * (yi - xi) for g, yi, xi in zip(gradient, y, x))


class BregmanParameters(NamedTuple):
    """The algorithmic degrees of freedom :math:`(\\alpha_t,\\beta_t,\\gamma_t)` of the Bregman Lagrangian (Eq. 2).

    (The metric :math:`h` is passed to :func:`bregman_lagrangian` separately; :math:`\\beta_t` is not the momentum.)
    """

    alpha: sp.Expr
    beta: sp.Expr
    gamma: sp.Expr


def bregman_lagrangian(
    coordinates: Sequence[sp.Expr],
    t: sp.Symbol,
    parameters: BregmanParameters,
    h: Callable[..., sp.Expr],
    potential: sp.Expr,
) -> sp.Expr:
    """The Bregman Lagrangian, Eq. 2: :math:`e^{\\alpha_t+\\gamma_t}\\big(D_h(q+e^{-\\alpha_t}\\dot q,q)-e^{\\beta_t}f(q)\\big)`.

    Args:
        coordinates: the parameters :math:`q_i(t)`.
        t: the time symbol.
        parameters: :math:`(\\alpha_t,\\beta_t,\\gamma_t)`, expressions in ``t``.
        h: the distance-generating function (see :func:`bregman_divergence`).
        potential: the loss :math:`f(q)`.
    """
    alpha, beta, gamma = parameters
    coordinates = list(coordinates)
    ahead = [qi + sp.exp(-alpha) * _velocity(qi, t) for qi in coordinates]
    return sp.exp(alpha + gamma) * (bregman_divergence(h, ahead, coordinates) - sp.exp(beta) * potential)


def nesterov_parameters(t: sp.Symbol) -> BregmanParameters:
    """Table 1, Nesterov momentum: :math:`\\alpha_t=\\log2-\\log t`, :math:`\\beta_t=2\\log t+\\log\\tfrac14`,
    :math:`\\gamma_t=2\\log t` (Wibisono et al.'s family with :math:`p=2`, :math:`C=1/4`)."""
    return BregmanParameters(sp.log(2) - sp.log(t), 2 * sp.log(t) + sp.log(sp.Rational(1, 4)), 2 * sp.log(t))


def damped_motion_parameters(m: sp.Expr, mu: sp.Expr, t: sp.Symbol) -> BregmanParameters:
    """Table 1, damped physical motion (and natural-gradient flow with a general :math:`h`):
    :math:`\\alpha_t=-\\log m`, :math:`\\beta_t=\\log m`, :math:`\\gamma_t=\\mu t/m`."""
    return BregmanParameters(-sp.log(m), sp.log(m), mu * t / m)


def momentum_parameters(lr: sp.Expr, momentum: sp.Expr, t: sp.Symbol) -> BregmanParameters:
    """Table 1, GD + momentum: damped motion with the mass and damping of Eq. 3,
    :math:`m=\\eta(1+\\beta)/2` (:func:`~noether_lib.modified_equation.effective_mass`) and :math:`\\mu=1-\\beta`
    (:func:`~noether_lib.modified_equation.damping`)."""
    return damped_motion_parameters(effective_mass(lr, momentum), damping(momentum), t)


def sgd_lagrangian(
    coordinates: Sequence[sp.Expr], t: sp.Symbol, lr: sp.Expr, momentum: sp.Expr, weight_decay: sp.Expr, loss: sp.Expr
) -> sp.Expr:
    """Eq. 4, the Lagrangian of SGD with learning rate :math:`\\eta`, momentum :math:`\\beta` and weight decay :math:`k`:

    :math:`e^{\\mu t/m}\\big[\\tfrac m2|\\dot q|^2-\\big(f(q)+\\tfrac k2|q|^2\\big)\\big]` with
    :math:`m=\\eta(1+\\beta)/2`, :math:`\\mu=1-\\beta`: a Kanai Lagrangian whose potential is the loss plus the
    weight-decay spring.
    """
    spring = weight_decay / 2 * sum(qi**2 for qi in coordinates)
    return kanai_lagrangian(list(coordinates), t, effective_mass(lr, momentum), damping(momentum), loss + spring)


def modified_equation_of_motion(
    coordinates: Sequence[sp.Expr], t: sp.Symbol, lr: sp.Expr, momentum: sp.Expr, weight_decay: sp.Expr, loss: sp.Expr
) -> list[sp.Expr]:
    """Eq. 3 as the paper prints it, :math:`\\tfrac\\eta2(1+\\beta)\\ddot q+(1-\\beta)\\dot q+\\nabla f+kq`, one entry per
    coordinate; written directly, as the reference that the Euler--Lagrange equation of Eq. 4 is checked against."""
    potential = loss + weight_decay / 2 * sum(qi**2 for qi in coordinates)
    return [damped_equation_of_motion(qi, t, lr / 2 * (1 + momentum), 1 - momentum, potential) for qi in coordinates]


def heavy_ball_modified_equation(
    q: sp.Expr, t: sp.Symbol, lr: sp.Symbol, momentum: sp.Expr, dampening: sp.Expr, potential: sp.Expr, order: int = 2
) -> sp.Expr:
    """The modified equation of heavy ball, derived: the two-step recursion of :mod:`noether_lib.rules`,
    :math:`q_{n+1}-q_n-\\beta(q_n-q_{n-1})+hV'(q_n)=0` with :math:`h=\\eta(1-\\delta)`, evaluated on a smooth path
    :math:`q_{n\\pm1}=q(t\\pm h)`, Taylor-expanded, divided by :math:`h` and truncated before :math:`O(\\eta^{\\rm order})`.

    With ``order=2`` the result is Eq. 3, :math:`m\\ddot q+\\mu\\dot q+V'(q)`; ``order=1`` gives gradient flow.
    ``lr`` must be a symbol (the expansion variable).
    """
    if not isinstance(lr, sp.Symbol) or order < 1:
        raise ValueError("lr must be a sympy Symbol and order a positive integer")
    h = time_scale(lr, dampening)
    # q(t + h) - q(t) - beta (q(t) - q(t - h)) = sum_j h^j / j! (1 + (-1)^j beta) q^(j)(t), divided by h
    recursion = sum(
        h ** (j - 1) / sp.factorial(j) * (1 + (-1) ** j * momentum) * sp.diff(q, t, j) for j in range(1, order + 2)
    ) + sp.diff(potential, q)
    poly = sp.Poly(sp.expand(recursion), lr)
    truncated = sum(coefficient * lr**power for (power,), coefficient in poly.terms() if power < order)
    return sp.collect(sp.expand(truncated), [sp.diff(q, t, j) for j in range(order, 0, -1)], sp.factor)


def nesterov_equation_of_motion(coordinates: Sequence[sp.Expr], t: sp.Symbol, loss: sp.Expr) -> list[sp.Expr]:
    """Table 1's equation for Nesterov momentum, :math:`\\ddot q+\\tfrac3t\\dot q+\\nabla f` (the ODE of Su, Boyd and
    Candès), written directly as a reference."""
    return [sp.diff(qi, t, 2) + 3 / t * sp.diff(qi, t) + sp.diff(loss, qi) for qi in coordinates]


def natural_gradient_flow_equation(
    coordinates: Sequence[sp.Expr], t: sp.Symbol, h: Callable[..., sp.Expr], loss: sp.Expr, mu: sp.Expr
) -> list[sp.Expr]:
    """Natural-gradient flow :math:`\\mu\\,\\nabla^2h(q)\\,\\dot q+\\nabla f(q)`, i.e.
    :math:`\\dot q=-\\mu^{-1}(\\nabla^2h)^{-1}\\nabla f`: the massless limit of the damped Bregman Lagrangian
    (Table 1's natural-gradient row; the paper prints :math:`\\dot q+F^{-1}\\nabla f`, the case :math:`\\mu=1`)."""
    coordinates = list(coordinates)
    dummies = [sp.Dummy(f"x{i}") for i in range(len(coordinates))]
    hessian = sp.hessian(h(*dummies), dummies).subs(dict(zip(dummies, coordinates)), simultaneous=True)
    velocity = sp.Matrix([_velocity(qi, t) for qi in coordinates])
    return [mu * row + sp.diff(loss, qi) for row, qi in zip(hessian * velocity, coordinates)]


def massless_limit(expression: sp.Expr, mass: sp.Symbol, max_order: int = 4) -> sp.Expr:
    """The limit :math:`m\\to0` of ``expression`` (the overdamped limit of the paper), by l'Hôpital's rule.

    Works with undefined functions (a general :math:`h`), where sympy's series expansion does not.
    Raises ``ValueError`` if the expression diverges.
    """
    numerator, denominator = sp.fraction(sp.together(expression))
    for _ in range(max_order + 1):
        if not is_identically_zero(denominator.subs(mass, 0)):
            return sp.simplify(numerator.subs(mass, 0).doit() / denominator.subs(mass, 0))
        if not is_identically_zero(numerator.subs(mass, 0).doit()):
            raise ValueError(f"the expression diverges as {mass} -> 0")
        numerator, denominator = sp.diff(numerator, mass), sp.diff(denominator, mass)
    raise ValueError(f"no finite limit found within {max_order} orders of {mass}")


def proportionality_factor(
    expressions: Sequence[sp.Expr], references: Sequence[sp.Expr], coordinates: Sequence[sp.Expr], t: sp.Symbol
) -> sp.Expr:
    """The factor :math:`c(t)` with ``expressions`` :math:`=c\\cdot` ``references``, proved by sympy.

    Two equations of motion :math:`E=0` and :math:`R=0` are the same when :math:`E=cR` with :math:`c\\neq0` free of
    the coordinates and their derivatives. Raises ``ValueError`` when no such factor exists.
    """
    if len(expressions) != len(references) or not expressions:
        raise ValueError("expressions and references must be non-empty sequences of the same length")
    factor = sp.simplify(sp.cancel(sp.together(expressions[0] / references[0])))
    state = set(coordinates) | {_velocity(qi, t) for qi in coordinates} | {sp.diff(qi, t, 2) for qi in coordinates}
    if factor == 0 or factor.has(*state):
        raise ValueError(f"the equations are not proportional (ratio {factor})")
    for expression, reference in zip(expressions, references):
        if not is_identically_zero(expression - factor * reference):
            raise ValueError("the equations are not proportional")
    return factor
