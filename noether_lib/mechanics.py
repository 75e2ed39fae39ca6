"""Lagrangian mechanics of learning, symbolically (sympy).

The principle of least action turns a Lagrangian :math:`\\mathcal L(q,\\dot q,t)` into the
Euler--Lagrange equation (Eq. 1 of the paper)

.. math:: \\frac{d}{dt}\\frac{\\partial\\mathcal L}{\\partial\\dot q}-\\frac{\\partial\\mathcal L}{\\partial q}=0 .

Damping enters through an explicitly time-dependent Lagrangian (Kanai 1948),
:math:`\\mathcal L=e^{\\mu t/m}(\\tfrac m2\\dot q^2-V(q))`, whose Euler--Lagrange equation is
:math:`m\\ddot q+\\mu\\dot q+V'(q)=0`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sympy as sp

__all__ = [
    "euler_lagrange",
    "kanai_lagrangian",
    "damped_equation_of_motion",
    "is_identically_zero",
    "dot_notation",
    "discretised_action",
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


def kanai_lagrangian(q: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, potential: sp.Expr) -> sp.Expr:
    """The damped (Caldirola--Kanai) Lagrangian :math:`e^{\\mu t/m}(\\tfrac m2\\dot q^2-V(q))`.

    This is the time-dependent Lagrangian of Sec. 1 of the paper ("Damping in optimization") and the
    one-dimensional form of its Eq. 4 with :math:`V=f+\\tfrac k2 q^2`.
    """
    return sp.exp(mu * t / m) * (m / 2 * _velocity(q, t) ** 2 - potential)


def damped_equation_of_motion(q: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, potential: sp.Expr) -> sp.Expr:
    """Left-hand side of Newton's damped equation :math:`m\\ddot q+\\mu\\dot q+V'(q)`, written directly.

    This is the reference the Euler--Lagrange derivation is checked against, not a derivation.
    """
    return m * sp.diff(q, t, 2) + mu * sp.diff(q, t) + sp.diff(potential, q)


def is_identically_zero(expression: sp.Expr) -> bool:
    """True when sympy proves ``expression`` equal to zero (after expansion and simplification)."""
    return sp.simplify(sp.expand(expression)) == 0


def dot_notation(expression: sp.Expr, coordinates: Sequence[sp.Expr], t: sp.Symbol) -> sp.Expr:
    """Rewrite ``q(t)``, ``dq/dt`` and ``d^2q/dt^2`` as the symbols :math:`q,\\dot q,\\ddot q` for display."""
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
