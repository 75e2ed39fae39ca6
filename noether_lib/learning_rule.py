"""The learning rule's constants and its one hyperparameter validator (the bottom of the library).

Heavy-ball momentum in PyTorch's convention with learning rate :math:`\\eta`, momentum :math:`\\beta`, dampening
:math:`\\delta` and weight decay :math:`k` has the modified equation of Eq. 3 of the paper,
:math:`m\\ddot q+\\mu\\dot q=-\\nabla f(q)-kq`, in the time :math:`t=n\\eta(1-\\delta)`: :func:`time_scale`,
:func:`effective_mass` and :func:`damping` are its constants. :func:`check_hyperparameters` is the one place that
says which hyperparameters are valid; every other module calls it at its boundary.
"""

from __future__ import annotations

from typing import TypeAlias

import sympy as sp

#: A hyperparameter, which is a number, or a sympy expression when the constants enter a Lagrangian.
Scalar: TypeAlias = float | sp.Expr

__all__ = [
    "Scalar",
    "check_hyperparameters",
    "time_scale",
    "effective_mass",
    "damping",
    "momentum_memory",
    "critical_step_curvature",
]


def check_hyperparameters(
    lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0, steps: int = 0
) -> None:
    """Raise ``ValueError`` unless :math:`\\eta>0`, :math:`0\\le\\beta<1`, :math:`0\\le\\delta<1`, :math:`k\\ge0` and
    ``steps`` is a non-negative integer."""
    if not lr > 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    if not 0.0 <= dampening < 1.0:
        raise ValueError(f"dampening must lie in [0, 1), got {dampening}")
    if not weight_decay >= 0:
        raise ValueError(f"weight decay must be non-negative, got {weight_decay}")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")


def _check_constants(lr: Scalar = 1.0, momentum: Scalar = 0.0, dampening: Scalar = 0.0) -> None:
    """Validate numeric hyperparameters; symbolic ones (sympy symbols, for the Lagrangians) pass unchecked."""
    values = (lr, momentum, dampening)
    if all(not isinstance(v, sp.Basic) or v.is_number for v in values):
        check_hyperparameters(float(lr), float(momentum), float(dampening))


def time_scale(lr: Scalar, dampening: Scalar = 0) -> Scalar:
    """Continuous time per update, :math:`h=\\eta(1-\\delta)`: after :math:`n` steps :math:`t=nh` (Eq. 3's time).

    Without dampening this is the paper's :math:`t=n\\eta`. PyTorch's dampening scales every gradient after the
    first by :math:`1-\\delta`, so the rule is heavy ball with learning rate :math:`\\eta(1-\\delta)`.
    """
    _check_constants(lr, dampening=dampening)
    return lr * (1 - dampening)


def effective_mass(lr: Scalar, momentum: Scalar = 0, dampening: Scalar = 0) -> Scalar:
    """Mass of the modified equation (Eq. 3), :math:`m=\\eta(1-\\delta)(1+\\beta)/2` in the time of :func:`time_scale`.

    With :math:`\\delta=0` it is the paper's :math:`m=\\eta(1+\\beta)/2`: the inertia that a finite learning rate adds.
    Accepts floats or sympy expressions.
    """
    _check_constants(lr, momentum, dampening)
    return time_scale(lr, dampening) * (1 + momentum) / 2


def damping(momentum: Scalar = 0, dampening: Scalar = 0) -> Scalar:
    """Damping of the modified equation (Eq. 3), :math:`\\mu=1-\\beta`.

    In the time :math:`t=n\\eta(1-\\delta)` of :func:`time_scale` the damping does not depend on the dampening
    :math:`\\delta` (which is only validated here): :math:`\\delta` enters through the time scale and the mass.
    Accepts floats or sympy expressions.
    """
    _check_constants(momentum=momentum, dampening=dampening)
    return 1 - momentum


def momentum_memory(momentum: Scalar = 0) -> Scalar:
    """The memory of the modified equation in steps, :math:`m/(\\mu h)=(1+\\beta)/(2(1-\\beta))`.

    :math:`m/\\mu` is the time over which a velocity decays in :math:`m\\ddot q+\\mu\\dot q=F` (Eq. 3); divided by
    the time per step :math:`h=\\eta(1-\\delta)` it counts steps, and does not depend on :math:`\\eta` or
    :math:`\\delta`. For :math:`\\beta\\to1` it approaches the buffer's memory :math:`1/(1-\\beta)`.
    """
    _check_constants(momentum=momentum)
    return effective_mass(1, momentum) / damping(momentum)


def critical_step_curvature(momentum: Scalar = 0) -> Scalar:
    """The step times curvature :math:`h\\lambda=(1-\\beta)^2/(2(1+\\beta))` at which Eq. 3 is critically damped.

    Along an eigendirection of curvature :math:`\\lambda`, :math:`m\\ddot x+\\mu\\dot x+\\lambda x=0` oscillates
    when :math:`\\mu^2<4m\\lambda`, i.e. when :math:`h\\lambda` (:math:`\\eta\\lambda` without dampening) exceeds
    this value; below it the motion is overdamped, as gradient flow's always is.
    """
    _check_constants(momentum=momentum)
    return damping(momentum) ** 2 / (4 * effective_mass(1, momentum))
