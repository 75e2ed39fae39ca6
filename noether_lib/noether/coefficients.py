"""The numbers shared by the charge predictions: the coefficients of the charge equation and input checks.

For the per-unit quantity :math:`C` that gradient flow conserves (:func:`noether_lib.symmetry.conserved_quantity`;
:math:`\\langle\\dot q,\\xi\\rangle=\\dot C/2` for scale and rescale, :math:`\\dot C` for translation) Noether's
learning dynamics become the damped, driven oscillator :math:`m\\ddot C+\\mu\\dot C+\\omega C=F`, with
:math:`\\omega,F` from :func:`charge_coefficients`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import sympy as sp

from noether_lib.learning_rule import check_hyperparameters

__all__ = ["Kind", "KINDS", "charge_coefficients", "check_schedule", "effective_dampening", "per_step"]

Kind = Literal["translation", "scale", "rescale"]
KINDS = ("translation", "scale", "rescale")


def charge_coefficients(kind: Kind, mass: float | sp.Expr, weight_decay: float | sp.Expr) -> tuple:
    """:math:`(\\omega, c)` of the charge equation :math:`m\\ddot C+\\mu\\dot C+\\omega C=c\\,\\langle\\dot q,J\\dot q\\rangle`.

    Translation: :math:`(k,0)` (no KSB). Scale and rescale: :math:`(2k,2m)`, the forcing being the KSB term
    :math:`2m\\langle\\dot q,J\\dot q\\rangle` (:math:`J=\\pm1` the member signs). Works on floats and sympy symbols;
    the chapter-3 notebook checks these against :func:`noether_lib.noether.noether_learning_dynamics`.
    """
    if kind == "translation":
        return weight_decay, 0 * mass
    if kind in ("scale", "rescale"):
        return 2 * weight_decay, 2 * mass
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def check_schedule(lr: np.ndarray) -> np.ndarray:
    """Check a per-step learning-rate sequence for the *continuous* predictions and return it as float64.

    Raises:
        ValueError: if a rate is not positive and finite, or if the rate changes on two consecutive steps: the
            modified equation covers piecewise-constant schedules (step drops), not continuously varying ones
            (warm-up ramps, cosine or exponential decay), for which the mass :math:`m` of Eq. 3 would vary in time.
            The exact recursions hold for any sequence; recording never checks the schedule.
    """
    lr = check_rates(lr)
    changes = np.flatnonzero(lr[1:] != lr[:-1])
    if np.any(np.diff(changes) == 1):
        step = int(changes[np.flatnonzero(np.diff(changes) == 1)[0]]) + 1
        raise ValueError(
            f"the learning rate changes on consecutive steps (at step {step}): the continuous predictions cover "
            "piecewise-constant schedules only (step drops, e.g. StepLR or MultiStepLR); the exact recursions "
            "cover any schedule"
        )
    return lr


def check_rates(lr: np.ndarray) -> np.ndarray:
    """``lr`` as a one-dimensional float64 array of positive, finite rates (``ValueError`` otherwise)."""
    lr = np.asarray(lr, dtype=np.float64)
    if lr.ndim != 1 or len(lr) == 0:
        raise ValueError(f"the learning rates must be a non-empty one-dimensional sequence, got shape {lr.shape}")
    if not np.all(np.isfinite(lr) & (lr > 0)):
        raise ValueError("every learning rate must be positive and finite")
    return lr


def effective_dampening(momentum: float, dampening: float) -> float:
    """The dampening that acts: PyTorch ignores :math:`\\delta` without momentum, so it is 0 when :math:`\\beta=0`."""
    return dampening if momentum > 0 else 0.0


def per_step(value: float | np.ndarray, steps: int, name: str) -> np.ndarray:
    """A hyperparameter as one value per step (a constant is repeated); ``ValueError`` for a wrong length."""
    out = (
        np.broadcast_to(np.asarray(value, dtype=np.float64), (steps,))
        if np.ndim(value) == 0
        else np.asarray(value, dtype=np.float64)
    )
    if out.shape != (steps,) or not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be a finite scalar or one value per step ({steps}), got shape {out.shape}")
    return out


def check_rule(lr: np.ndarray, momentum: np.ndarray, dampening: np.ndarray, weight_decay: float) -> None:
    """Validate every step's hyperparameters with :func:`noether_lib.learning_rule.check_hyperparameters`."""
    for rate, beta, delta in {(float(a), float(b), float(c)) for a, b, c in zip(lr, momentum, dampening)}:
        check_hyperparameters(rate, beta, delta, float(weight_decay))


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def as_steps(values: np.ndarray, steps: int, units: int, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.shape != (steps, units):
        raise ValueError(f"{name} must have shape (steps, units) = {(steps, units)}, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return values


def initial(initial_charge: np.ndarray) -> np.ndarray:
    c0 = np.atleast_1d(np.asarray(initial_charge, dtype=np.float64))
    if c0.ndim != 1 or not np.all(np.isfinite(c0)):
        raise ValueError("initial_charge must be a finite scalar or one value per unit")
    return c0
