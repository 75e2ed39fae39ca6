"""Closed forms of the filter norm (Eqs. 15--18 of the paper) and the exact norm recursion of SGD on the sphere.

Continuous time is :math:`t=n\\eta` after :math:`n` steps. Weight decay follows PyTorch's SGD:
``v = beta * v + g + k * q; q -= lr * v``. Hyperparameters are validated by
:func:`noether_lib.learning_rule.check_hyperparameters`.
"""

from __future__ import annotations

import numpy as np
import torch

from noether_lib.learning_rule import check_hyperparameters, damping, effective_mass

__all__ = [
    "effective_learning_rate",
    "adaptive_prefactor",
    "momentum_amplification",
    "memory_rate",
    "closed_form_parts",
    "closed_form_norm_squared",
    "rmsprop_closed_form",
    "matched_rmsprop",
    "accumulator_step",
    "rmsprop_accumulator",
    "steady_state_norm4",
    "angular_update",
    "stationary_update_ratio",
    "sphere_step_size",
    "sphere_norm_recursion",
]


def effective_learning_rate(lr: float, norm_squared: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The direction's effective learning rate :math:`\\eta/r^2` (Eq. 15)."""
    check_hyperparameters(lr)
    return lr / norm_squared


def adaptive_prefactor(lr: float, momentum: float) -> float:
    """Prefactor :math:`4m/\\mu^3=2\\eta(1+\\beta)/(1-\\beta)^3` of the gradient memory in Eq. 17."""
    check_hyperparameters(lr, momentum)
    return float(4 * effective_mass(lr, momentum) / damping(momentum) ** 3)


def momentum_amplification(momentum: float) -> float:
    """:math:`(1+\\beta)/(1-\\beta)^3`: Eq. 17's prefactor relative to plain SGD's :math:`2\\eta` at the same
    :math:`\\eta` (1900 at β = 0.9). :func:`~noether_lib.normalization.amplification_table` sets it beside the
    other like-for-like factors."""
    return adaptive_prefactor(1.0, momentum) / 2


def memory_rate(momentum: float, weight_decay: float) -> float:
    """Decay rate :math:`4k/\\mu=4k/(1-\\beta)` of Eq. 17's memory kernel; RMSProp's :math:`(1-\\rho)/\\eta` (Eq. 18)."""
    check_hyperparameters(1.0, momentum, weight_decay=weight_decay)
    return float(4 * weight_decay / damping(momentum))


def _discounted_memory(
    samples: np.ndarray, dt: float, rate: float, prefactor: float, initial: np.ndarray | float
) -> np.ndarray:
    """:math:`\\text{prefactor}\\int_0^te^{-\\text{rate}(t-\\tau)}h(\\tau)d\\tau+e^{-\\text{rate}\\,t}\\,\\text{initial}`
    at :math:`t=n\\,dt`, ``n = 0..len(samples)``, with ``h`` constant over each step (exact for that ``h``)."""
    samples = np.asarray(samples, dtype=np.float64)
    decay = np.exp(-rate * dt)
    gain = prefactor * (-np.expm1(-rate * dt) / rate if rate > 0 else dt)
    out = np.empty((len(samples) + 1,) + samples.shape[1:])
    out[0] = initial
    for n, h in enumerate(samples):  # a running sum that never grows exponentially (stable in float64)
        out[n + 1] = decay * out[n] + gain * h
    return out


def closed_form_parts(
    g_hat_sq: np.ndarray, lr: float, momentum: float, weight_decay: float, initial_norm_squared: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 17's :math:`r^4` split into its two parts: the initial memory :math:`e^{-\\frac{4k}{1-\\beta}t}r^4(0)` and
    the forcing :math:`\\frac{2\\eta(1+\\beta)}{(1-\\beta)^3}\\int_0^te^{-\\frac{4k}{1-\\beta}(t-\\tau)}|\\hat g(\\tau)|^2d\\tau`.

    Only the forcing carries the gradients, so only it carries a momentum correlation factor
    (:func:`~noether_lib.normalization.implied_correlation_factor`). Shapes as in :func:`closed_form_norm_squared`.
    """
    g_hat_sq = np.asarray(g_hat_sq, dtype=np.float64)
    rate = memory_rate(momentum, weight_decay)
    r4_0 = np.asarray(initial_norm_squared, dtype=np.float64) ** 2
    time = lr * np.arange(len(g_hat_sq) + 1).reshape((-1,) + (1,) * (g_hat_sq.ndim - 1))
    initial = np.exp(-rate * time) * r4_0 * np.ones(g_hat_sq.shape[1:])
    forcing = _discounted_memory(g_hat_sq, lr, rate, adaptive_prefactor(lr, momentum), 0.0)
    return initial, forcing


def closed_form_norm_squared(
    g_hat_sq: np.ndarray, lr: float, momentum: float, weight_decay: float, initial_norm_squared: np.ndarray | float
) -> np.ndarray:
    """Eq. 17: :math:`r^2(t)=\\sqrt{\\tfrac{2\\eta(1+\\beta)}{(1-\\beta)^3}\\int_0^te^{-\\frac{4k}{1-\\beta}(t-\\tau)}
    |\\hat g(\\tau)|^2d\\tau+e^{-\\frac{4k}{1-\\beta}t}r^4(0)}`.

    Args:
        g_hat_sq: recorded :math:`|\\hat g|^2` at steps ``0..N-1`` (shape ``(N,)`` or ``(N, units)``).
        lr, momentum, weight_decay: SGD's :math:`\\eta,\\beta,k`.
        initial_norm_squared: :math:`r^2(0)` (scalar or per unit).

    Returns:
        :math:`r^2` at :math:`t=n\\eta`, ``n = 0..N`` (one row more than ``g_hat_sq``).
    """
    initial, forcing = closed_form_parts(g_hat_sq, lr, momentum, weight_decay, initial_norm_squared)
    return np.sqrt(initial + forcing)


def rmsprop_closed_form(g_sq: np.ndarray, lr: float, rho: float, initial: np.ndarray | float) -> np.ndarray:
    """Eq. 18: :math:`\\sqrt{G(t)}=\\sqrt{\\tfrac{1-\\rho}{\\eta}\\int_0^te^{-\\frac{1-\\rho}{\\eta}(t-\\tau)}|g|^2d\\tau
    +e^{-\\frac{1-\\rho}{\\eta}t}G(0)}`, at ``n = 0..N`` like :func:`closed_form_norm_squared`."""
    check_hyperparameters(lr)
    if not 0 < rho <= 1:
        raise ValueError(f"rho must lie in (0, 1], got {rho}")
    rate = (1 - rho) / lr
    return np.sqrt(_discounted_memory(g_sq, lr, rate, rate, initial))


def matched_rmsprop(lr: float, momentum: float, weight_decay: float) -> tuple[float, float]:
    """RMSProp's ``(rho, weight)`` in :math:`G\\leftarrow\\rho G+w|\\hat g|^2` that reproduces Eq. 17 with :math:`G=r^4`.

    The decay matches :math:`(1-\\rho)/\\eta=4k/(1-\\beta)`; the weight is :math:`\\eta` times Eq. 17's prefactor, so the
    recursion is the forward-Euler step of :math:`\\partial_tr^4=-\\frac{4k}{1-\\beta}r^4+\\frac{2\\eta(1+\\beta)}
    {(1-\\beta)^3}|\\hat g|^2`. :math:`k=0` gives :math:`\\rho=1`: AdaGrad-like accumulation.
    """
    rho = 1 - lr * memory_rate(momentum, weight_decay)
    if rho <= 0:
        raise ValueError(f"4*lr*k/(1-beta) = {1 - rho:.3g} must be below 1 for a matched RMSProp")
    return rho, lr * adaptive_prefactor(lr, momentum)


def _check_accumulator(rho: float, weight: float) -> None:
    if not 0 < rho <= 1 or not weight > 0:
        raise ValueError(f"need 0 < rho <= 1 and weight > 0, got rho={rho}, weight={weight}")


def accumulator_step(
    accumulator: np.ndarray | torch.Tensor, g_sq: np.ndarray | torch.Tensor, rho: float, weight: float
) -> np.ndarray | torch.Tensor:
    """One step of scalar RMSProp's accumulator (Eq. 18 discretised), :math:`G_{n+1}=\\rho G_n+w|g_n|^2`.

    The one home of the recursion: :func:`rmsprop_accumulator` runs it along a record,
    :class:`~noether_lib.normalization.FilterRMSProp` online.
    """
    _check_accumulator(rho, weight)
    return rho * accumulator + weight * g_sq


def rmsprop_accumulator(g_sq: np.ndarray, rho: float, weight: float, initial: np.ndarray | float) -> np.ndarray:
    """Scalar RMSProp's accumulator :func:`accumulator_step` run over a recorded ``g_sq``, ``n = 0..N``."""
    _check_accumulator(rho, weight)
    g_sq = np.asarray(g_sq, dtype=np.float64)
    out = np.empty((len(g_sq) + 1,) + g_sq.shape[1:])
    out[0] = initial
    for n, g2 in enumerate(g_sq):
        out[n + 1] = accumulator_step(out[n], g2, rho, weight)
    return out


def steady_state_norm4(g_hat_sq: np.ndarray | float, lr: float, momentum: float, weight_decay: float) -> np.ndarray:
    """Steady state of Eq. 16, :math:`r^4_\\star=m|\\hat g|^2/(k\\mu^2)=\\eta(1+\\beta)|\\hat g|^2/(2k(1-\\beta)^2)`
    (derived in the book, not stated in the paper)."""
    check_hyperparameters(lr, momentum, weight_decay=weight_decay)
    if weight_decay == 0:
        raise ValueError("without weight decay the norm has no steady state")
    return adaptive_prefactor(lr, momentum) * np.asarray(g_hat_sq) / memory_rate(momentum, weight_decay)


def angular_update(lr: float, momentum: float, weight_decay: float) -> float:
    """Per-step angle of the direction at the steady state, :math:`\\eta\\sqrt{k/m}=\\sqrt{2\\eta k/(1+\\beta)}`
    (spherical motion dynamics): where :math:`2m|\\dot q|^2` balances :math:`2kr^2` in the exact norm equation."""
    check_hyperparameters(lr, momentum, weight_decay=weight_decay)
    return float(lr * np.sqrt(weight_decay / effective_mass(lr, momentum)))


def stationary_update_ratio(lr: float, momentum: float, weight_decay: float) -> float:
    """:math:`E[U]/E[C]=2\\eta k/(1+\\beta)` for a scale charge :math:`C=r^2` whose mean is stationary.

    From the exact recursion :math:`C_{n+1}=C_n+2P_n+U_n`, :math:`P_n=\\beta(P_{n-1}+U_{n-1})-\\eta kC_n`: stationary
    means give :math:`E[P]=-E[U]/2` and then the ratio. It is the square of :func:`angular_update` when the update
    is tangential (:math:`U\\approx r^2\\theta^2`): the spherical-motion angular update.
    """
    check_hyperparameters(lr, momentum, weight_decay=weight_decay)
    return 2 * lr * weight_decay / (1 + momentum)


def sphere_step_size(
    lr: float, weight_decay: float, norm_squared: np.ndarray | torch.Tensor
) -> np.ndarray | torch.Tensor:
    """Step :math:`\\eta/((1-\\eta k)r_n^2)` of projected SGD on the unit sphere that *is* SGD with weight decay on
    scale-invariant filters (β = 0; exact, derived in the book).

    SGD gives :math:`q_{n+1}=(1-\\eta k)q_n-\\eta\\hat g_n/r_n`, with :math:`\\hat g_n\\perp\\hat q_n` the gradient at the
    unit-norm filter, so :math:`\\hat q_{n+1}` is :math:`\\hat q_n-\\eta\\hat g_n/((1-\\eta k)r_n^2)` normalised.
    """
    check_hyperparameters(lr, weight_decay=weight_decay)
    if not lr * weight_decay < 1:
        raise ValueError(f"lr * weight_decay = {lr * weight_decay:.3g} must be below 1")
    return lr / ((1 - lr * weight_decay) * norm_squared)


def sphere_norm_recursion(
    g_hat_sq: np.ndarray, lr: float, weight_decay: float, initial_norm_squared: np.ndarray | float
) -> np.ndarray:
    """The exact norm of SGD with weight decay on scale-invariant filters (β = 0):
    :math:`r^2_{n+1}=(1-\\eta k)^2r_n^2+\\eta^2|\\hat g_n|^2/r_n^2` (Pythagoras, :math:`\\hat g_n\\perp q_n`).

    Eq. 17 at β = 0 is its continuous limit. Returns :math:`r_n^2`, ``n = 0..N``, for ``g_hat_sq`` at ``0..N-1``.
    """
    check_hyperparameters(lr, weight_decay=weight_decay)
    g_hat_sq = np.asarray(g_hat_sq, dtype=np.float64)
    out = np.empty((len(g_hat_sq) + 1,) + g_hat_sq.shape[1:])
    out[0] = initial_norm_squared
    decay = (1 - lr * weight_decay) ** 2
    for n, g2 in enumerate(g_hat_sq):
        out[n + 1] = decay * out[n] + lr**2 * g2 / out[n]
    return out
