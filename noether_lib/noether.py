"""Noether charges and Noether's learning dynamics (Sec. 3 of the paper, Eqs. 8--13), and their predictions.

**Symbolically** (sympy). For a Lagrangian :math:`\\mathcal L(q,\\dot q,t)` and a one-parameter family of maps
:math:`Q(q,s)` with :math:`Q(q,0)=q` and generator :math:`\\xi=\\partial_sQ|_{s=0}`, the Noether charge is
:math:`\\langle\\partial_{\\dot q}\\mathcal L,\\xi\\rangle` (:func:`noether_charge`) and, along every solution of
the Euler--Lagrange equations, :math:`\\frac{d}{dt}\\langle\\partial_{\\dot q}\\mathcal L,\\xi\\rangle=\\partial_s\\mathcal L`
(Eq. 8; :func:`noether_identity_residual` proves the off-shell form). For the learning-rule Lagrangian (Eq. 4)
:math:`e^{\\mu t/m}[\\tfrac m2|\\dot q|^2-V]` this is Noether's learning dynamics (Eq. 12 with Eq. 10's KSB term),
:math:`m\\frac{d}{dt}\\langle\\dot q,\\xi\\rangle+\\mu\\langle\\dot q,\\xi\\rangle=\\partial_sT-\\partial_sV`
(:func:`noether_learning_dynamics`), whose :math:`m\\to0` limit is Eq. 13 (:func:`overdamped_limit`).

**Numerically**, for the per-unit quantity :math:`C` that gradient flow conserves
(:func:`noether_lib.symmetry.conserved_quantity`; :math:`\\langle\\dot q,\\xi\\rangle=\\dot C/2` for scale and
rescale, :math:`\\dot C` for translation) the NLD become the damped, driven oscillator

.. math:: m\\ddot C+\\mu\\dot C+\\omega C=F,

with :math:`\\omega,F` from :func:`charge_coefficients`. Predictions of :math:`C_n` during training with
:class:`torch.optim.SGD` (learning rate :math:`\\eta_n`, momentum :math:`\\beta`, dampening :math:`\\delta`,
weight decay :math:`k`):

* :func:`sgd_exact_charge`, :func:`exact_charge`: the exact discrete recursions (any learning-rate sequence);
* :func:`modified_equation_charge`: the continuous prediction of the modified equation (Eq. 3) in any regime,
  under-, critically or over-damped, piecewise-constant learning rates included; the :math:`m\\to0` limit with
  ``overdamped=True``;
* :func:`gradient_flow_charge`: the :math:`\\eta\\to0` limit.

All take the realised per-step quantities that :class:`noether_lib.tracking.NoetherTracker` records (arrays of
shape ``(steps, units)``) and return :math:`C_0,\\dots,C_N` (shape ``(steps + 1, units)``, float64).
:func:`predict_charges` applies them to a tracker's table.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import sympy as sp
from scipy.linalg import expm

from noether_lib.mechanics import euler_lagrange, kanai_lagrangian
from noether_lib.learning_rule import damping, effective_mass, time_scale

__all__ = [
    "generator",
    "noether_charge",
    "symmetry_derivative",
    "noether_identity_residual",
    "noether_learning_dynamics",
    "overdamped_limit",
    "charge_coefficients",
    "check_schedule",
    "effective_dampening",
    "sgd_exact_charge",
    "exact_charge",
    "matched_charge_velocity",
    "modified_equation_charge",
    "gradient_flow_charge",
    "relative_error",
    "predict_charges",
    "prediction_errors",
]

Kind = Literal["translation", "scale", "rescale"]
_KINDS = ("translation", "scale", "rescale")


# ---------------------------------------------------------------------------------------------------------------
# Symbolic: the charge, Eq. 8, NLD (Eqs. 10-12) and the overdamped limit (Eq. 13)
# ---------------------------------------------------------------------------------------------------------------


def generator(transformation: Sequence[sp.Expr], s: sp.Symbol) -> list[sp.Expr]:
    """The generator :math:`\\xi=\\partial_sQ|_{s=0}` of a one-parameter family ``transformation`` :math:`Q(q,s)`."""
    return [sp.simplify(sp.diff(Q, s).subs(s, 0)) for Q in transformation]


def noether_charge(lagrangian: sp.Expr, coordinates: Sequence[sp.Expr], transformation: Sequence[sp.Expr],
                   s: sp.Symbol, t: sp.Symbol) -> sp.Expr:
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


def symmetry_derivative(lagrangian: sp.Expr, coordinates: Sequence[sp.Expr], transformation: Sequence[sp.Expr],
                        s: sp.Symbol, t: sp.Symbol) -> sp.Expr:
    """:math:`\\partial_s\\mathcal L(Q,\\dot Q,t)|_{s=0}`, the right-hand side of Eq. 8 (zero for a symmetry of
    :math:`\\mathcal L`; :math:`\\partial_sT-\\partial_sV` when kinetic and potential energy are separated)."""
    _check_transformation(coordinates, transformation, s)
    stand_ins = [sp.Function(f"_Q{i}")(t) for i in range(len(coordinates))]
    moved = lagrangian.subs({sp.diff(q, t): sp.diff(w, t) for q, w in zip(coordinates, stand_ins)})
    moved = moved.subs(dict(zip(coordinates, stand_ins)))
    moved = moved.subs({w: Q for w, Q in zip(stand_ins, transformation)}).doit()
    return sp.simplify(sp.diff(moved, s).subs(s, 0).doit())


def noether_identity_residual(lagrangian: sp.Expr, coordinates: Sequence[sp.Expr],
                              transformation: Sequence[sp.Expr], s: sp.Symbol, t: sp.Symbol) -> sp.Expr:
    """:math:`\\frac{d}{dt}\\langle\\partial_{\\dot q}\\mathcal L,\\xi\\rangle-\\partial_s\\mathcal L-\\sum_iE_i\\xi_i`,
    with :math:`E_i` the Euler--Lagrange expressions: identically zero (sympy simplifies it to 0), which is Eq. 8
    off shell; on the solutions (:math:`E_i=0`) the charge moves only through :math:`\\partial_s\\mathcal L`."""
    charge = noether_charge(lagrangian, coordinates, transformation, s, t)
    el = euler_lagrange(lagrangian, coordinates, t)
    xi = generator(transformation, s)
    rhs = symmetry_derivative(lagrangian, coordinates, transformation, s, t)
    return sp.simplify(sp.diff(charge, t) - rhs - sum(e * x for e, x in zip(el, xi)))


def noether_learning_dynamics(coordinates: Sequence[sp.Expr], t: sp.Symbol, m: sp.Expr, mu: sp.Expr,
                              potential: sp.Expr, transformation: Sequence[sp.Expr], s: sp.Symbol) -> sp.Eq:
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


# ---------------------------------------------------------------------------------------------------------------
# Numbers: coefficients, checks of the learning rule
# ---------------------------------------------------------------------------------------------------------------


def charge_coefficients(kind: Kind, mass: float | sp.Expr, weight_decay: float | sp.Expr):
    """:math:`(\\omega, c)` of the charge equation :math:`m\\ddot C+\\mu\\dot C+\\omega C=c\\,\\langle\\dot q,J\\dot q\\rangle`.

    Translation: :math:`(k,0)` (no KSB). Scale and rescale: :math:`(2k,2m)`, the forcing being the KSB term
    :math:`2m\\langle\\dot q,J\\dot q\\rangle` (:math:`J=\\pm1` the member signs). Works on floats and sympy symbols;
    the chapter-3 notebook checks these against :func:`noether_learning_dynamics`.
    """
    if kind == "translation":
        return weight_decay, 0 * mass
    if kind in ("scale", "rescale"):
        return 2 * weight_decay, 2 * mass
    raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")


def check_schedule(lr: np.ndarray) -> np.ndarray:
    """Check a per-step learning-rate sequence and return it as float64.

    Raises:
        ValueError: if a rate is not positive and finite, or if the rate changes on two consecutive steps: the
            continuous predictions cover piecewise-constant schedules (step drops), not continuously varying ones
            (warm-up ramps, cosine or exponential decay), for which the mass :math:`m` of Eq. 3 would vary in time.
    """
    lr = np.asarray(lr, dtype=np.float64)
    if lr.ndim != 1 or len(lr) == 0:
        raise ValueError(f"the learning rates must be a non-empty one-dimensional sequence, got shape {lr.shape}")
    if not np.all(np.isfinite(lr) & (lr > 0)):
        raise ValueError("every learning rate must be positive and finite")
    changes = np.flatnonzero(lr[1:] != lr[:-1])
    if np.any(np.diff(changes) == 1):
        step = int(changes[np.flatnonzero(np.diff(changes) == 1)[0]]) + 1
        raise ValueError(
            f"the learning rate changes on consecutive steps (at step {step}): only piecewise-constant schedules "
            "(step drops, e.g. StepLR or MultiStepLR) are covered by the predictions"
        )
    return lr


def effective_dampening(momentum: float, dampening: float) -> float:
    """The dampening that acts: PyTorch ignores :math:`\\delta` without momentum, so it is 0 when :math:`\\beta=0`."""
    return dampening if momentum > 0 else 0.0


def _check_rule(momentum: float, dampening: float, weight_decay: float) -> None:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    if not 0.0 <= dampening < 1.0:
        raise ValueError(f"dampening must lie in [0, 1), got {dampening}")
    if not weight_decay >= 0.0:
        raise ValueError(f"weight decay must be non-negative, got {weight_decay}")


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")


def _as_steps(values: np.ndarray, steps: int, units: int, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.shape != (steps, units):
        raise ValueError(f"{name} must have shape (steps, units) = {(steps, units)}, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return values


def _initial(initial_charge: np.ndarray) -> np.ndarray:
    c0 = np.atleast_1d(np.asarray(initial_charge, dtype=np.float64))
    if c0.ndim != 1 or not np.all(np.isfinite(c0)):
        raise ValueError("initial_charge must be a finite scalar or one value per unit")
    return c0


# ---------------------------------------------------------------------------------------------------------------
# Exact discrete recursions
# ---------------------------------------------------------------------------------------------------------------


def sgd_exact_charge(kind: Kind, initial_charge: np.ndarray, lr: np.ndarray, *, grad_sq: np.ndarray | None = None,
                     weight_decay: float = 0.0) -> np.ndarray:
    """Exact recursion of the charge under SGD without momentum, in terms of the loss gradients :math:`g_n`.

    Scale and rescale: :math:`C_{n+1}=(1-\\eta_nk)^2C_n+\\eta_n^2\\langle g_n,Jg_n\\rangle` (``grad_sq``);
    translation: :math:`C_{n+1}=(1-\\eta_nk)C_n`. Exact because the gradient is orthogonal to the generator
    (:math:`\\langle g,\\xi\\rangle=0`, the gradient-flow form of Eq. 13) and :math:`J^2=1`.
    """
    _check_kind(kind)
    _check_rule(0.0, 0.0, weight_decay)
    lr = np.asarray(lr, dtype=np.float64)
    if lr.ndim != 1 or not np.all(np.isfinite(lr) & (lr > 0)):
        raise ValueError("lr must be a one-dimensional sequence of positive rates")
    c0 = _initial(initial_charge)
    steps = len(lr)
    decay = 1.0 - lr * weight_decay
    out = np.empty((steps + 1, len(c0)))
    out[0] = c0
    if kind == "translation":
        out[1:] = c0 * np.cumprod(decay)[:, None]
        return out
    if grad_sq is None:
        raise ValueError(f"the {kind} recursion needs grad_sq")
    g = _as_steps(grad_sq, steps, len(c0), "grad_sq")
    for n in range(steps):
        out[n + 1] = decay[n] ** 2 * out[n] + lr[n] ** 2 * g[n]
    return out


def exact_charge(kind: Kind, initial_charge: np.ndarray, lr: np.ndarray, *, update_sq: np.ndarray | None = None,
                 first_projected_update: np.ndarray | None = None, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, grad_proj: np.ndarray | None = None) -> np.ndarray:
    """Exact recursion of the charge under :class:`torch.optim.SGD` with momentum, dampening and weight decay.

    With the update :math:`u_n=q_{n+1}-q_n=-\\eta_nv_{n+1}`, the projected update (the discrete Noether charge,
    :math:`\\eta\\langle\\dot q,\\xi\\rangle`) :math:`P_n=\\langle\\xi(q_n),u_n\\rangle` and
    :math:`U_n=\\langle u_n,Ju_n\\rangle` (``update_sq``), PyTorch's rule gives, for :math:`n\\ge1`,

    .. math:: P_n=\\beta\\frac{\\eta_n}{\\eta_{n-1}}\\big(P_{n-1}+aU_{n-1}\\big)-\\eta_n(1-\\delta)\\big(kC_n+\\gamma_n\\big),
              \\qquad C_{n+1}=C_n+(1+a)P_n+aU_n,

    with :math:`a=1` for scale and rescale (quadratic charges) and :math:`a=0` for translation (linear), and
    :math:`\\gamma_n=\\langle\\xi(q_n),g_n\\rangle` (``grad_proj``; zero when the symmetry holds, the default).
    :math:`P_0` defaults to PyTorch's undampened first step from rest, :math:`P_0=-\\eta_0(kC_0+\\gamma_0)`. This is
    the discrete counterpart of Eq. 12: the charge equation of :func:`charge_coefficients` with finite differences.
    """
    _check_kind(kind)
    _check_rule(momentum, dampening, weight_decay)
    lr = np.asarray(lr, dtype=np.float64)
    if lr.ndim != 1 or not np.all(np.isfinite(lr) & (lr > 0)):
        raise ValueError("lr must be a one-dimensional sequence of positive rates")
    c0 = _initial(initial_charge)
    steps, units = len(lr), len(c0)
    quadratic = kind != "translation"
    if quadratic and update_sq is None:
        raise ValueError(f"the {kind} recursion needs update_sq")
    u = _as_steps(update_sq, steps, units, "update_sq") if quadratic else np.zeros((steps, units))
    gamma = np.zeros((steps, units)) if grad_proj is None else _as_steps(grad_proj, steps, units, "grad_proj")
    delta = effective_dampening(momentum, dampening)
    a = 1.0 if quadratic else 0.0
    out = np.empty((steps + 1, units))
    out[0] = c0
    if first_projected_update is None:
        p = -lr[0] * (weight_decay * c0 + gamma[0])
    else:
        p = np.broadcast_to(np.asarray(first_projected_update, dtype=np.float64), (units,)).copy()
    for n in range(steps):
        if n > 0:
            p = momentum * lr[n] / lr[n - 1] * (p + a * u[n - 1]) - lr[n] * (1 - delta) * (
                weight_decay * out[n] + gamma[n])
        out[n + 1] = out[n] + (1 + a) * p + a * u[n]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Continuous predictions: the modified equation, its overdamped limit, gradient flow
# ---------------------------------------------------------------------------------------------------------------


def _propagator(mass: float, mu: float, omega: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact one-step map of :math:`m\\ddot C+\\mu\\dot C+\\omega C=F` with :math:`F` constant over the step:
    :math:`(C,\\dot C)(t+h)=A\\,(C,\\dot C)(t)+b\\,F`. Computed as one matrix exponential of the augmented system, so
    under-, critically and over-damped regimes are treated alike; every entry is bounded (eigenvalues of
    :math:`A` have modulus at most 1), so nothing overflows however long the run."""
    system = np.array([[0.0, 1.0, 0.0], [-omega / mass, -mu / mass, 1.0 / mass], [0.0, 0.0, 0.0]])
    full = expm(system * h)
    return full[:2, :2], full[:2, 2]


def matched_charge_velocity(kind: Kind, initial_charge: np.ndarray, first_update_sq: np.ndarray,
                            first_projected_update: np.ndarray, lr: float, *, momentum: float = 0.0,
                            dampening: float = 0.0, weight_decay: float = 0.0) -> np.ndarray:
    """Initial :math:`\\dot C(0)` of the modified charge equation that matches the discrete start-up transient.

    The discrete charge relaxes within :math:`O(1)` steps onto a slow drift; so does the ODE, from a shifted
    start. Equating the two shifts (as :func:`noether_lib.modified_equation.matched_initial_velocity` does for
    :math:`q`) with the drive :math:`\\Phi=h(F_0-\\omega C_0)` per step of length :math:`h` gives

    .. math:: \\dot C(0)=\\frac{2\\,\\Delta C_0-\\Phi}{h(1+\\beta)},\\qquad \\Delta C_0=C_1-C_0=(1+a)P_0+aU_0 .
    """
    _check_kind(kind)
    delta = effective_dampening(momentum, dampening)
    h = time_scale(lr, delta)
    mass = effective_mass(lr, momentum, delta)
    omega, force = charge_coefficients(kind, mass, weight_decay)
    c0 = _initial(initial_charge)
    a = 0.0 if kind == "translation" else 1.0
    u0 = np.asarray(first_update_sq, dtype=np.float64)
    first_step = (1 + a) * np.asarray(first_projected_update, dtype=np.float64) + a * u0
    drive = h * (force * u0 / h**2 - omega * c0)
    return (2 * first_step - drive) / (h * (1 + momentum))


def modified_equation_charge(kind: Kind, initial_charge: np.ndarray, lr: np.ndarray, *,
                             update_sq: np.ndarray | None = None, first_projected_update: np.ndarray | None = None,
                             momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                             overdamped: bool = False) -> np.ndarray:
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
    overflow, no dropped terms over arbitrarily long runs. ``update_sq`` (:math:`U_n`) and
    ``first_projected_update`` (:math:`P_0`) are the tracker's records; :math:`P_0` defaults as in
    :func:`exact_charge`.
    """
    _check_kind(kind)
    _check_rule(momentum, dampening, weight_decay)
    lr = check_schedule(lr)
    c0 = _initial(initial_charge)
    steps, units = len(lr), len(c0)
    u = _as_steps(update_sq, steps, units, "update_sq") if update_sq is not None else np.zeros((steps, units))
    if kind != "translation" and update_sq is None:
        raise ValueError(f"the {kind} prediction needs update_sq")
    delta = effective_dampening(momentum, dampening)
    mu = damping(momentum, delta)
    p0 = -lr[0] * weight_decay * c0 if first_projected_update is None else first_projected_update
    out = np.empty((steps + 1, units))
    out[0] = c0
    state = np.vstack([c0, matched_charge_velocity(kind, c0, u[0], p0, lr[0], momentum=momentum, dampening=delta,
                                                   weight_decay=weight_decay)])
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


def gradient_flow_charge(kind: Kind, initial_charge: np.ndarray, lr: np.ndarray, *, momentum: float = 0.0,
                         dampening: float = 0.0, weight_decay: float = 0.0) -> np.ndarray:
    """The :math:`\\eta\\to0` limit: the KSB forcing (:math:`\\propto m\\propto\\eta`) vanishes and
    :math:`\\mu\\dot C=-\\omega C`, so :math:`C(t)=C_0e^{-\\omega t/\\mu}`; without weight decay :math:`C` is conserved
    (Eq. 13: the conservation laws of gradient flow)."""
    _check_kind(kind)
    _check_rule(momentum, dampening, weight_decay)
    lr = check_schedule(lr)
    c0 = _initial(initial_charge)
    delta = effective_dampening(momentum, dampening)
    times = np.concatenate([[0.0], np.cumsum(lr * (1 - delta))])
    omega, _ = charge_coefficients(kind, 0.0, weight_decay)
    return c0[None, :] * np.exp(-omega * times / damping(momentum, delta))[:, None]


# ---------------------------------------------------------------------------------------------------------------
# Comparing with measurements
# ---------------------------------------------------------------------------------------------------------------


def relative_error(measured: np.ndarray, predicted: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Per-unit error :math:`\\max_n|\\hat C_n-C_n|/\\max_n s_n` of arrays of shape ``(steps + 1, units)``.

    The scale :math:`s` defaults to :math:`|C|`. A rescale charge is a difference of two squared norms that may
    nearly cancel: pass the tracker's ``norm_sq`` (their sum) as ``scale`` to measure the error on the size of
    the quantities it is made of.
    """
    measured, predicted = np.asarray(measured, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    if measured.shape != predicted.shape:
        raise ValueError(f"shapes differ: {measured.shape} and {predicted.shape}")
    scale = np.abs(measured if scale is None else np.asarray(scale, dtype=np.float64)).max(axis=0)
    if np.any(scale == 0):
        raise ValueError("a unit's charge is zero throughout: its relative error is undefined")
    return np.abs(predicted - measured).max(axis=0) / scale


_PREDICTIONS = ("exact", "modified", "overdamped", "gradient_flow")


def predict_charges(table: pd.DataFrame) -> pd.DataFrame:
    """Add the predictions ``exact``, ``modified``, ``overdamped`` and ``gradient_flow`` to a tracker's table.

    ``table`` is :meth:`noether_lib.tracking.NoetherTracker.table` recorded every step: per group and unit, row
    ``step = n`` holds :math:`C_n` (``charge``) and the records of the step :math:`n-1\\to n` (``update_sq``,
    ``projected_update``, ``lr``); the hyperparameters are columns. Each prediction starts from the measured
    :math:`C_0` and uses only the realised update norms (stochasticity is not modelled).
    """
    required = {"step", "group", "kind", "unit", "charge", "update_sq", "projected_update", "lr", "momentum",
                "dampening", "weight_decay"}
    missing = required - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks the columns {sorted(missing)}")
    if "steps" in table.columns and (table["steps"].dropna() != 1).any():
        raise ValueError("predictions need a record of every step (a tracker with every=1)")
    pieces = []
    for _, rows in table.groupby("group", sort=False):
        kind = rows["kind"].iloc[0]
        wide = {c: rows.pivot(index="step", columns="unit", values=c).sort_index() for c in
                ("charge", "update_sq", "projected_update", "lr")}
        steps = wide["charge"].index.to_numpy()
        if steps[0] != 0 or np.any(np.diff(steps) != 1):
            raise ValueError("predictions need consecutive steps starting at 0")
        settings = {c: float(rows[c].iloc[0]) for c in ("momentum", "dampening", "weight_decay")}
        lr = wide["lr"].to_numpy()[1:, 0]
        c0 = wide["charge"].to_numpy()[0]
        u = wide["update_sq"].to_numpy()[1:]
        p0 = wide["projected_update"].to_numpy()[1]
        result = {
            "exact": exact_charge(kind, c0, lr, update_sq=u, first_projected_update=p0, **settings),
            "modified": modified_equation_charge(kind, c0, lr, update_sq=u, first_projected_update=p0, **settings),
            "overdamped": modified_equation_charge(kind, c0, lr, update_sq=u, first_projected_update=p0,
                                                   overdamped=True, **settings),
            "gradient_flow": gradient_flow_charge(kind, c0, lr, **settings),
        }
        index = pd.MultiIndex.from_product([steps, wide["charge"].columns], names=["step", "unit"])
        frame = pd.DataFrame({k: v.reshape(-1) for k, v in result.items()}, index=index).reset_index()
        pieces.append(rows.merge(frame, on=["step", "unit"], how="left"))
    return pd.concat(pieces, ignore_index=True)


def prediction_errors(predicted: pd.DataFrame) -> pd.DataFrame:
    """Largest per-unit :func:`relative_error` of each prediction of :func:`predict_charges`, one row per group.

    Rescale charges are measured against the unit's ``norm_sq`` (see :func:`relative_error`), the others against
    :math:`|C|`. Columns: ``group``, ``kind`` and one per prediction.
    """
    rows = []
    for name, group in predicted.groupby("group", sort=False):
        wide = {c: group.pivot(index="step", columns="unit", values=c).to_numpy() for c in
                ("charge", "norm_sq", *_PREDICTIONS)}
        kind = group["kind"].iloc[0]
        scale = wide["norm_sq"] if kind == "rescale" else None
        rows.append({"group": name, "kind": kind,
                     **{c: float(relative_error(wide["charge"], wide[c], scale).max()) for c in _PREDICTIONS}})
    return pd.DataFrame(rows)
