"""Continuous predictions of the charges: the modified equation (Eq. 3) through NLD (Eq. 12), its overdamped
limit (Eq. 13) and gradient flow.

They take the realised update norms the tracker records and need one momentum, dampening and weight decay per
group and a piecewise-constant learning rate (:func:`~noether_lib.noether.coefficients.check_schedule`), except
:func:`gradient_flow_charge`, which holds for any schedule in the time :math:`t=\\sum_n\\eta_n(1-\\delta)`.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm

from noether_lib.learning_rule import check_hyperparameters, damping, effective_mass, time_scale
from noether_lib.noether.coefficients import (
    Kind,
    as_steps,
    charge_coefficients,
    check_kind,
    check_rates,
    check_schedule,
    effective_dampening,
    initial,
)

__all__ = ["matched_charge_velocity", "modified_equation_charge", "gradient_flow_charge"]


def _propagator(mass: float, mu: float, omega: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact one-step map of :math:`m\\ddot C+\\mu\\dot C+\\omega C=F` with :math:`F` constant over the step:
    :math:`(C,\\dot C)(t+h)=A\\,(C,\\dot C)(t)+b\\,F`. Computed as one matrix exponential of the augmented system, so
    under-, critically and over-damped regimes are treated alike; every entry is bounded (eigenvalues of
    :math:`A` have modulus at most 1), so nothing overflows however long the run."""
    system = np.array([[0.0, 1.0, 0.0], [-omega / mass, -mu / mass, 1.0 / mass], [0.0, 0.0, 0.0]])
    full = expm(system * h)
    return full[:2, :2], full[:2, 2]


def matched_charge_velocity(
    kind: Kind,
    initial_charge: np.ndarray,
    first_update_signed_sq: np.ndarray,
    first_projected_update: np.ndarray,
    lr: float,
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
) -> np.ndarray:
    """Initial :math:`\\dot C(0)` of the modified charge equation that matches the discrete start-up transient.

    The discrete charge relaxes within :math:`O(1)` steps onto a slow drift; so does the ODE, from a shifted
    start. Equating the two shifts (as :func:`noether_lib.modified_equation.matched_initial_velocity` does for
    :math:`q`) with the drive :math:`\\Phi=h(F_0-\\omega C_0)` per step of length :math:`h` gives

    .. math:: \\dot C(0)=\\frac{2\\,\\Delta C_0-\\Phi}{h(1+\\beta)},\\qquad \\Delta C_0=C_1-C_0=(1+a)P_0+aU_0 .
    """
    check_kind(kind)
    delta = effective_dampening(momentum, dampening)
    h = time_scale(lr, delta)
    mass = effective_mass(lr, momentum, delta)
    omega, force = charge_coefficients(kind, mass, weight_decay)
    c0 = initial(initial_charge)
    a = 0.0 if kind == "translation" else 1.0
    u0 = np.asarray(first_update_signed_sq, dtype=np.float64)
    first_step = (1 + a) * np.asarray(first_projected_update, dtype=np.float64) + a * u0
    drive = h * (force * u0 / h**2 - omega * c0)
    return (2 * first_step - drive) / (h * (1 + momentum))


def modified_equation_charge(
    kind: Kind,
    initial_charge: np.ndarray,
    lr: np.ndarray,
    *,
    update_signed_sq: np.ndarray | None = None,
    first_projected_update: np.ndarray | None = None,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    overdamped: bool = False,
) -> np.ndarray:
    """Continuous prediction of the charge from the modified equation (Eq. 3) through NLD (Eq. 12).

    Solves :math:`m\\ddot C+\\mu\\dot C+\\omega C=c\\,\\langle\\dot q,J\\dot q\\rangle` (:func:`charge_coefficients`) in the
    time :math:`t=\\sum_n h_n`, :math:`h_n=\\eta_n(1-\\delta)` (PyTorch's dampening rescales time; the velocity is
    :math:`\\dot q=u_n/h_n=-v_{n+1}/(1-\\delta)`, so the KSB forcing is :math:`c\\,U_n/h_n^2` over step :math:`n`: the
    dampening factor that earlier code dropped is kept). :math:`m=h(1+\\beta)/2`, :math:`\\mu=1-\\beta`
    (:func:`noether_lib.modified_equation.effective_mass`, :func:`~noether_lib.modified_equation.damping`); the
    learning rate may drop at any step (the state :math:`(C,\\dot C)` is continuous across a drop, because the
    momentum buffer is), see :func:`check_schedule`. The start uses :func:`matched_charge_velocity`.

    With ``overdamped=True`` the inertia is dropped (Eq. 13's limit for the left-hand side) while the KSB forcing,
    itself :math:`\\propto m`, is kept: :math:`\\mu\\dot C+\\omega C=F`.

    Evaluated step by step with exact one-step propagators in float64 (a matrix exponential of the augmented
    system, the same for every regime): no growing exponentials, no
    overflow, no dropped terms over arbitrarily long runs. ``update_signed_sq`` (:math:`U_n`) and
    ``first_projected_update`` (:math:`P_0`) are the tracker's records; :math:`P_0` defaults as in
    :func:`exact_charge`.
    """
    check_kind(kind)
    lr = check_schedule(lr)
    check_hyperparameters(float(lr[0]), momentum, dampening, weight_decay)
    c0 = initial(initial_charge)
    steps, units = len(lr), len(c0)
    u = (
        as_steps(update_signed_sq, steps, units, "update_signed_sq")
        if update_signed_sq is not None
        else np.zeros((steps, units))
    )
    if kind != "translation" and update_signed_sq is None:
        raise ValueError(f"the {kind} prediction needs update_signed_sq")
    delta = effective_dampening(momentum, dampening)
    mu = damping(momentum, delta)
    p0 = -lr[0] * weight_decay * c0 if first_projected_update is None else first_projected_update
    out = np.empty((steps + 1, units))
    out[0] = c0
    state = np.vstack(
        [
            c0,
            matched_charge_velocity(
                kind, c0, u[0], p0, lr[0], momentum=momentum, dampening=delta, weight_decay=weight_decay
            ),
        ]
    )
    cache: dict[float, tuple[np.ndarray, np.ndarray, float, float]] = {}
    for n in range(steps):
        if lr[n] not in cache:
            h = time_scale(lr[n], delta)
            mass = effective_mass(lr[n], momentum, delta)
            omega, force = charge_coefficients(kind, mass, weight_decay)
            if overdamped:
                decay = np.exp(-omega * h / mu)
                gain = h / mu if omega == 0 else -np.expm1(-omega * h / mu) / omega
                cache[lr[n]] = (np.array([[decay, 0.0], [0.0, 0.0]]), np.array([gain, 0.0]), force / h**2, h)
            else:
                A, b = _propagator(mass, mu, omega, h)
                cache[lr[n]] = (A, b, force / h**2, h)
        A, b, per_update, _ = cache[lr[n]]
        state = A @ state + np.outer(b, per_update * u[n])
        out[n + 1] = state[0]
    return out


def gradient_flow_charge(
    kind: Kind,
    initial_charge: np.ndarray,
    lr: np.ndarray,
    *,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
) -> np.ndarray:
    """The :math:`\\eta\\to0` limit: the KSB forcing (:math:`\\propto m\\propto\\eta`) vanishes and
    :math:`\\mu\\dot C=-\\omega C`, so :math:`C(t)=C_0e^{-\\omega t/\\mu}`; without weight decay :math:`C` is conserved
    (Eq. 13: the conservation laws of gradient flow). Any learning-rate sequence: only the time
    :math:`t=\\sum_n\\eta_n(1-\\delta)` enters."""
    check_kind(kind)
    lr = check_rates(lr)
    check_hyperparameters(float(lr[0]), momentum, dampening, weight_decay)
    c0 = initial(initial_charge)
    delta = effective_dampening(momentum, dampening)
    times = np.concatenate([[0.0], np.cumsum(lr * (1 - delta))])
    omega, _ = charge_coefficients(kind, 0.0, weight_decay)
    return c0[None, :] * np.exp(-omega * times / damping(momentum, delta))[:, None]
