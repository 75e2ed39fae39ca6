"""The polar form of scale-invariant weights, symbolically (sympy): Eqs. 14--16 of the paper.

A filter in the plane, :math:`q=r(\\cos\\theta,\\sin\\theta)`, keeps the algebra short and has the radial and angular
structure of the paper's :math:`N`-dimensional case.
"""

from __future__ import annotations

import sympy as sp

__all__ = ["polar_lagrangian", "radial_equation", "angular_equation", "norm_equation"]


def polar_lagrangian(
    r: sp.Expr, theta: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, k: sp.Expr, loss: sp.Expr
) -> sp.Expr:
    """Lagrangian (4) of SGD with momentum and weight decay in polar coordinates (Eq. 14), for a 2-D filter.

    The Cartesian Lagrangian :math:`e^{\\mu t/m}[\\tfrac m2|\\dot q|^2-f-\\tfrac k2|q|^2]` is evaluated on
    :math:`q=r(\\cos\\theta,\\sin\\theta)`; ``loss`` is :math:`f(\\hat q)`, a function of ``theta`` only (scale symmetry).
    """
    x, y = r * sp.cos(theta), r * sp.sin(theta)
    kinetic = m / 2 * (sp.diff(x, t) ** 2 + sp.diff(y, t) ** 2)
    return sp.exp(mu * t / m) * (sp.trigsimp(sp.expand(kinetic)) - loss - k / 2 * sp.simplify(x**2 + y**2))


def radial_equation(r: sp.Expr, theta: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, k: sp.Expr) -> sp.Expr:
    """The paper's radial equation, :math:`m\\ddot r+\\mu\\dot r-(m|\\dot{\\hat q}|^2-k)r` (zero on solutions)."""
    return m * sp.diff(r, t, 2) + mu * sp.diff(r, t) - (m * sp.diff(theta, t) ** 2 - k) * r


def angular_equation(r: sp.Expr, theta: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, loss: sp.Expr) -> sp.Expr:
    """The paper's angular equation (Eq. 15), :math:`m\\ddot{\\hat q}+\\mu\\dot{\\hat q}+\\hat g/r^2` (zero on solutions).

    In 2-D the direction is the angle ``theta`` and :math:`\\hat g=\\partial f/\\partial\\theta`.
    """
    return m * sp.diff(theta, t, 2) + mu * sp.diff(theta, t) + sp.diff(loss, theta) / r**2


def norm_equation(r_squared: sp.Expr, t: sp.Symbol, m: sp.Expr, mu: sp.Expr, k: sp.Expr, g_hat_sq: sp.Expr) -> sp.Expr:
    """The norm equation (Eq. 16), :math:`m\\partial_t^2r^2+\\mu\\partial_tr^2+2kr^2-2m|\\hat g|^2/(\\mu^2r^2)`."""
    return (
        m * sp.diff(r_squared, t, 2)
        + mu * sp.diff(r_squared, t)
        + 2 * k * r_squared
        - 2 * m * g_hat_sq / (mu**2 * r_squared)
    )
