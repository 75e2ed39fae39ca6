"""Kinetic energies of learning rules and their symmetry tests (Sec. 2 of the paper, Eqs. 5--7), with sympy.

A learning rule is a kinetic energy :math:`T(q,\\dot q)`; the loss is the potential. A one-parameter family
:math:`Q(q,s)` (an action of :mod:`noether_lib.symmetry`: translation, scale, rescale, rotation) is a symmetry of
the kinetic energy when :math:`\\partial_sT(Q,\\dot Q)|_{s=0}=0`, with :math:`\\dot Q=\\frac{d}{dt}Q(q(t),s)`
(:func:`kinetic_symmetry_rate`). Where the loss is symmetric but :math:`\\partial_sT\\neq0` the learning rule
breaks the symmetry: *kinetic symmetry breaking*.

* :class:`EuclideanKinetic` :math:`\\tfrac m2|\\dot q|^2` (gradient descent with momentum, Eq. 4): symmetric under
  translation and rotation, broken by scale, :math:`\\partial_sT=m|\\dot q|^2` (Eq. 6).
* :class:`DiagonalKinetic` :math:`\\tfrac m2\\sum_iD_i\\dot q_i^2`, the metric of an adaptive optimizer whose step is
  :math:`-D^{-1}g` (for RMSProp and Adam :math:`D_i=\\sqrt{v_i}+\\epsilon`, held fixed here): it breaks rotation
  unless :math:`D\\propto I`.
* :class:`MetricKinetic` :math:`\\tfrac m2\\langle\\dot q,G(q)\\dot q\\rangle`, a general (Riemannian) metric (Eq. 7).
* :class:`BregmanKinetic`, Eq. 5, :math:`T_h=e^{\\alpha_t}D_h(q+e^{-\\alpha_t}\\dot q,q)`, whose expansion in
  :math:`e^{-\\alpha_t}` is Eq. 7 with :math:`G=\\nabla^2h` (:meth:`BregmanKinetic.leading_order`).

The mass :math:`m=e^{-\\alpha_t}` (:math:`\\eta(1+\\beta)/2` for SGD with momentum, Eq. 3). Coordinates are sympy
column matrices of functions ``q_i(t)``; kinetic energies are called as ``T(q, qdot)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

from noether_lib.mechanics import bregman_divergence, euler_lagrange
from noether_lib.noether.symbolic import noether_charge, symmetry_derivative

__all__ = [
    "EuclideanKinetic",
    "DiagonalKinetic",
    "MetricKinetic",
    "BregmanKinetic",
    "coordinates",
    "kinetic_symmetry_rate",
    "kinetic_noether_charge",
    "integrate_motion",
    "phase_space_function",
]


def _column(v: Any) -> sp.Matrix:
    return v if isinstance(v, sp.MatrixBase) else sp.Matrix(list(v))


@dataclass(frozen=True)
class EuclideanKinetic:
    """:math:`T_E=\\tfrac m2|\\dot q|^2` (Eqs. 4 and 6)."""

    mass: Any

    def __call__(self, q: sp.Matrix, qdot: sp.Matrix) -> sp.Expr:
        qdot = _column(qdot)
        return sp.Rational(1, 2) * self.mass * (qdot.T * qdot)[0, 0]


@dataclass(frozen=True)
class DiagonalKinetic:
    """:math:`T_D=\\tfrac m2\\sum_iD_i\\dot q_i^2`, a fixed diagonal metric as in adaptive optimizers."""

    mass: Any
    diagonal: Sequence[Any]

    def __call__(self, q: sp.Matrix, qdot: sp.Matrix) -> sp.Expr:
        qdot = _column(qdot)
        if len(self.diagonal) != len(qdot):
            raise ValueError(f"the metric has {len(self.diagonal)} entries for {len(qdot)} coordinates")
        return sp.Rational(1, 2) * self.mass * sum(d * v**2 for d, v in zip(self.diagonal, qdot))


@dataclass(frozen=True)
class MetricKinetic:
    """:math:`T_G=\\tfrac m2\\langle\\dot q,G(q)\\dot q\\rangle` (Eq. 7); ``metric`` is a matrix or a function of ``q``."""

    mass: Any
    metric: sp.Matrix | Callable[[sp.Matrix], sp.Matrix]

    def __call__(self, q: sp.Matrix, qdot: sp.Matrix) -> sp.Expr:
        q, qdot = _column(q), _column(qdot)
        g = self.metric(q) if callable(self.metric) and not isinstance(self.metric, sp.MatrixBase) else self.metric
        if g.shape != (len(qdot), len(qdot)):
            raise ValueError(f"the metric has shape {g.shape} for {len(qdot)} coordinates")
        return sp.Rational(1, 2) * self.mass * (qdot.T * g * qdot)[0, 0]


@dataclass(frozen=True)
class BregmanKinetic:
    """The Bregman kinetic energy, Eq. 5: :math:`T_h=e^{\\alpha_t}D_h(q+e^{-\\alpha_t}\\dot q,q)` with
    :math:`e^{-\\alpha_t}=` ``mass``.

    ``h`` is the distance-generating function, called with one sympy argument per coordinate
    (as in :func:`noether_lib.mechanics.bregman_divergence`). :math:`h=\\tfrac12|x|^2` gives :class:`EuclideanKinetic`.
    """

    mass: Any
    h: Callable[..., sp.Expr]

    def __call__(self, q: sp.Matrix, qdot: sp.Matrix) -> sp.Expr:
        q, qdot = list(_column(q)), list(_column(qdot))
        ahead = [qi + self.mass * vi for qi, vi in zip(q, qdot)]
        return bregman_divergence(self.h, ahead, q) / self.mass

    def hessian(self, q: sp.Matrix) -> sp.Matrix:
        """The metric :math:`\\nabla^2h(q)`."""
        q = list(_column(q))
        dummies = [sp.Dummy(f"x{i}") for i in range(len(q))]
        return sp.hessian(self.h(*dummies), dummies).subs(dict(zip(dummies, q)), simultaneous=True)

    def leading_order(self) -> MetricKinetic:
        """Eq. 7: :math:`T_h=\\tfrac{e^{-\\alpha_t}}2\\langle\\dot q,\\nabla^2h(q)\\dot q\\rangle+O(e^{-2\\alpha_t})`."""
        return MetricKinetic(self.mass, self.hessian)

    def expansion(self, q: sp.Matrix, qdot: sp.Matrix, order: int = 2) -> sp.Expr:
        """Taylor expansion of :math:`T_h` in the mass up to (excluding) ``mass**order``; needs a symbolic mass."""
        if not isinstance(self.mass, sp.Symbol):
            raise ValueError("the expansion is in the mass: give BregmanKinetic a sympy Symbol as mass")
        return sp.series(self(q, qdot), self.mass, 0, order).removeO()


def coordinates(n: int, t: sp.Symbol, name: str = "q") -> sp.Matrix:
    """A column of ``n`` coordinate functions ``q_1(t), ..., q_n(t)``."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return sp.Matrix([sp.Function(f"{name}_{i + 1}")(t) for i in range(n)])


def _transformation(action: Any, q: sp.Matrix, s: sp.Symbol) -> list[sp.Expr]:
    return list(_column(action(_column(q), s)))


def kinetic_symmetry_rate(
    kinetic: Callable[[sp.Matrix, sp.Matrix], sp.Expr], action: Any, q: sp.Matrix, t: sp.Symbol
) -> sp.Expr:
    """:math:`\\partial_sT(Q,\\dot Q)|_{s=0}` with :math:`Q=Q(q(t),s)` and :math:`\\dot Q=\\frac{d}{dt}Q` (Eq. 6).

    This is :func:`noether_lib.noether.symmetry_derivative` (the right-hand side of Eq. 8) applied to the kinetic
    energy alone, with the transformation given as an action of :mod:`noether_lib.symmetry`.

    Args:
        kinetic: a kinetic energy ``T(q, qdot)`` (any class of this module).
        action: a symmetry action ``Q = action(q, s)`` of :mod:`noether_lib.symmetry`.
        q: the coordinates, a column of functions of ``t`` (:func:`coordinates`).
        t: the time symbol.

    Returns:
        The simplified rate; zero if and only if the kinetic energy has the symmetry.
    """
    q = _column(q)
    s = sp.Dummy("s")
    return symmetry_derivative(kinetic(q, q.diff(t)), list(q), _transformation(action, q, s), s, t)


def kinetic_noether_charge(
    kinetic: Callable[[sp.Matrix, sp.Matrix], sp.Expr], action: Any, q: sp.Matrix, t: sp.Symbol
) -> sp.Expr:
    """The undamped Noether charge :math:`\\langle\\partial_{\\dot q}T,\\partial_sQ|_{s=0}\\rangle` (Eq. 8 with
    :math:`\\mathcal L=T-V`; :func:`noether_lib.noether.noether_charge` of the kinetic energy): for the rotation of a
    2-D oscillator, its angular momentum."""
    q = _column(q)
    s = sp.Dummy("s")
    return sp.simplify(noether_charge(kinetic(q, q.diff(t)), list(q), _transformation(action, q, s), s, t))


def integrate_motion(
    kinetic: Callable[[sp.Matrix, sp.Matrix], sp.Expr],
    potential: Callable[[sp.Matrix], sp.Expr],
    initial_position: Sequence[float],
    initial_velocity: Sequence[float],
    times: Sequence[float],
) -> np.ndarray:
    """Integrate the Euler--Lagrange equations (Eq. 1) of :math:`\\mathcal L=T-V` numerically.

    The equations are derived with :func:`noether_lib.mechanics.euler_lagrange`, solved for the accelerations
    and integrated with SciPy's DOP853 (relative and absolute tolerance ``1e-11``).

    Returns:
        An array of shape ``(len(times), 2n)``: the positions, then the velocities, at each time.
    """
    n = len(initial_position)
    if len(initial_velocity) != n:
        raise ValueError("initial_position and initial_velocity must have the same length")
    t = sp.Symbol("t")
    q = coordinates(n, t)
    qdot, qddot = q.diff(t), q.diff(t, 2)
    equations = euler_lagrange(kinetic(q, qdot) - potential(q), list(q), t)
    position, velocity, acceleration = sp.symbols(f"x:{n}"), sp.symbols(f"v:{n}"), sp.symbols(f"a:{n}")
    plain = {**dict(zip(qddot, acceleration)), **dict(zip(qdot, velocity))}
    equations = [e.subs(plain).subs(dict(zip(q, position))) for e in equations]
    solution = sp.solve(equations, acceleration, dict=True)
    if len(solution) != 1 or set(solution[0]) != set(acceleration):
        raise ValueError("the equations of motion do not determine the accelerations (is the metric singular?)")
    rhs = sp.lambdify([position, velocity], [solution[0][a] for a in acceleration], "numpy")

    def field(_: float, state: np.ndarray) -> np.ndarray:
        return np.concatenate([state[n:], np.asarray(rhs(state[:n], state[n:]), dtype=float)])

    at = np.asarray(times, dtype=float)
    result = solve_ivp(
        field,
        (at[0], at[-1]),
        np.concatenate([initial_position, initial_velocity]),
        t_eval=at,
        method="DOP853",
        rtol=1e-11,
        atol=1e-11,
    )
    if not result.success:
        raise RuntimeError(f"integration failed: {result.message}")
    return result.y.T


def phase_space_function(expression: sp.Expr, q: sp.Matrix, t: sp.Symbol) -> Callable[..., np.ndarray]:
    """``expression`` in the coordinates ``q_i(t)`` and their velocities as a NumPy function of
    ``(q_1, ..., q_n, qdot_1, ..., qdot_n)``, e.g. of the columns of :func:`integrate_motion`'s result.

    Velocities are replaced before positions, so that ``q_i(t)`` inside a derivative is not replaced first; the
    result broadcasts (a constant expression gives an array of the arguments' shape).
    """
    q = _column(q)
    n = len(q)
    state = sp.symbols(f"x:{2 * n}")
    plain = expression.subs(dict(zip(q.diff(t), state[n:]))).subs(dict(zip(q, state[:n])))
    function = sp.lambdify(state, plain, "numpy")

    def evaluate(*values: np.ndarray) -> np.ndarray:
        return np.asarray(function(*values), dtype=float) * np.ones(np.broadcast(*values).shape)

    return evaluate
