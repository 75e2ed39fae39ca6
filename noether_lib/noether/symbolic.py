"""Symbolic Noether charges and Noether's learning dynamics (Sec. 3 of the paper, Eqs. 8--13), with sympy.

For a Lagrangian :math:`\\mathcal L(q,\\dot q,t)` and a one-parameter family of maps :math:`Q(q,s)` with
:math:`Q(q,0)=q` and generator :math:`\\xi=\\partial_sQ|_{s=0}`, the Noether charge is
:math:`\\langle\\partial_{\\dot q}\\mathcal L,\\xi\\rangle` (:func:`noether_charge`) and, along every solution of
the Euler--Lagrange equations, :math:`\\frac{d}{dt}\\langle\\partial_{\\dot q}\\mathcal L,\\xi\\rangle=\\partial_s\\mathcal L`
(Eq. 8; :func:`noether_identity_residual` proves the off-shell form). For the learning-rule Lagrangian (Eq. 4)
:math:`e^{\\mu t/m}[\\tfrac m2|\\dot q|^2-V]` this is Noether's learning dynamics (Eq. 12 with Eq. 10's KSB term),
:math:`m\\frac{d}{dt}\\langle\\dot q,\\xi\\rangle+\\mu\\langle\\dot q,\\xi\\rangle=\\partial_sT-\\partial_sV`
(:func:`noether_learning_dynamics`), whose :math:`m\\to0` limit is Eq. 13 (:func:`overdamped_limit`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp

from noether_lib.mechanics import euler_lagrange, kanai_lagrangian

__all__ = [
    "generator",
    "noether_charge",
    "symmetry_derivative",
    "noether_identity_residual",
    "noether_learning_dynamics",
    "overdamped_limit",
]


def generator(transformation: Sequence[sp.Expr], s: sp.Symbol) -> list[sp.Expr]:
    """The generator :math:`\\xi=\\partial_sQ|_{s=0}` of a one-parameter family ``transformation`` :math:`Q(q,s)`."""
    return [sp.simplify(sp.diff(Q, s).subs(s, 0)) for Q in transformation]


def noether_charge(
    lagrangian: sp.Expr, coordinates: Sequence[sp.Expr], transformation: Sequence[sp.Expr], s: sp.Symbol, t: sp.Symbol
) -> sp.Expr:
    """The Noether charge :math:`\\langle\\partial_{\\dot q}\\mathcal L,\\partial_sQ\\rangle` (Eq. 8 of the paper).

    Args:
        lagrangian: :math:`\\mathcal L` in ``t``, the coordinates ``q_i(t)`` and their derivatives.
        coordinates: the coordinates as applied functions ``q_i(t)``.
        transformation: :math:`Q_i(q,s)`, one expression per coordinate, with :math:`Q(q,0)=q`.
        s: the group parameter.
        t: the time symbol.
    """
    _check_transformation(coordinates, transformation, s)
    xi = generator(transformation, s)
    return sum(sp.diff(lagrangian, sp.diff(q, t)) * x for q, x in zip(coordinates, xi))


def symmetry_derivative(
    lagrangian: sp.Expr, coordinates: Sequence[sp.Expr], transformation: Sequence[sp.Expr], s: sp.Symbol, t: sp.Symbol
) -> sp.Expr:
    """:math:`\\partial_s\\mathcal L(Q,\\dot Q,t)|_{s=0}`, the right-hand side of Eq. 8 (zero for a symmetry of
    :math:`\\mathcal L`; :math:`\\partial_sT-\\partial_sV` when kinetic and potential energy are separated)."""
    _check_transformation(coordinates, transformation, s)
    stand_ins = [sp.Function(f"_Q{i}")(t) for i in range(len(coordinates))]
    moved = lagrangian.subs({sp.diff(q, t): sp.diff(w, t) for q, w in zip(coordinates, stand_ins)})
    moved = moved.subs(dict(zip(coordinates, stand_ins)))
    moved = moved.subs({w: Q for w, Q in zip(stand_ins, transformation)}).doit()
    return sp.simplify(sp.diff(moved, s).subs(s, 0).doit())


def noether_identity_residual(
    lagrangian: sp.Expr, coordinates: Sequence[sp.Expr], transformation: Sequence[sp.Expr], s: sp.Symbol, t: sp.Symbol
) -> sp.Expr:
    """:math:`\\frac{d}{dt}\\langle\\partial_{\\dot q}\\mathcal L,\\xi\\rangle-\\partial_s\\mathcal L-\\sum_iE_i\\xi_i`,
    with :math:`E_i` the Euler--Lagrange expressions: identically zero (sympy simplifies it to 0), which is Eq. 8
    off shell; on the solutions (:math:`E_i=0`) the charge moves only through :math:`\\partial_s\\mathcal L`."""
    charge = noether_charge(lagrangian, coordinates, transformation, s, t)
    el = euler_lagrange(lagrangian, coordinates, t)
    xi = generator(transformation, s)
    rhs = symmetry_derivative(lagrangian, coordinates, transformation, s, t)
    return sp.simplify(sp.diff(charge, t) - rhs - sum(e * x for e, x in zip(el, xi)))


def noether_learning_dynamics(
    coordinates: Sequence[sp.Expr],
    t: sp.Symbol,
    m: sp.Expr,
    mu: sp.Expr,
    potential: sp.Expr,
    transformation: Sequence[sp.Expr],
    s: sp.Symbol,
) -> sp.Eq:
    """Noether's learning dynamics for the Lagrangian of Eq. 4 (Eqs. 10--12 with a Euclidean metric):

    .. math:: m\\frac{d}{dt}\\langle\\dot q,\\xi\\rangle+\\mu\\langle\\dot q,\\xi\\rangle
              =\\underbrace{m\\langle\\dot q,\\partial_s\\dot Q\\rangle}_{\\partial_sT\\ (\\text{KSB})}-\\partial_sV .

    Derived, not assembled: Eq. 8 applied to the Lagrangian of Eq. 4,
    :func:`noether_lib.mechanics.kanai_lagrangian` with :math:`V=f+\\tfrac k2|q|^2`, divided by :math:`e^{\\mu t/m}`.
    Returns ``Eq(left, right)`` in the coordinates ``q_i(t)``.
    """
    lagrangian = kanai_lagrangian(list(coordinates), t, m, mu, potential)
    weight = sp.exp(mu * t / m)
    charge = noether_charge(lagrangian, coordinates, transformation, s, t)
    left = sp.expand(sp.simplify(sp.diff(charge, t) / weight))
    right = sp.expand(sp.simplify(symmetry_derivative(lagrangian, coordinates, transformation, s, t) / weight))
    return sp.Eq(left, right)


def overdamped_limit(equation: sp.Eq, m: sp.Symbol) -> sp.Eq:
    """The massless limit :math:`m\\to0` at fixed damping (Eq. 13): inertia and the KSB term (both :math:`\\propto m`)
    vanish, leaving :math:`\\mu\\langle\\dot q,\\xi\\rangle=-\\partial_sV`."""
    return sp.Eq(sp.limit(equation.lhs, m, 0), sp.limit(equation.rhs, m, 0))


def _check_transformation(coordinates: Sequence[sp.Expr], transformation: Sequence[sp.Expr], s: sp.Symbol) -> None:
    if len(coordinates) != len(transformation):
        raise ValueError(f"{len(coordinates)} coordinates but {len(transformation)} transformed coordinates")
    for q, Q in zip(coordinates, transformation):
        if sp.simplify(Q.subs(s, 0) - q) != 0:
            raise ValueError(f"Q(q, 0) must equal q; got Q = {Q} for {q}")
