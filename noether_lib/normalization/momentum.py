"""How momentum amplifies the filter norm: correlated against white-noise gradients (derived in the book).

Eq. 17's prefactor assumes the overdamped speed :math:`|\\dot q|=|\\hat g|/(\\mu r^2)`, a gradient that keeps its
direction over the :math:`1/(1-\\beta)` steps momentum remembers. For a gradient with autocorrelation
:math:`C(\\ell)` only the fraction :func:`correlation_factor` of it arrives; :func:`implied_correlation_factor`
reads that fraction off a run, :func:`amplification_table` sets the like-for-like factors side by side.
"""

from __future__ import annotations

import numpy as np

from noether_lib.learning_rule import check_hyperparameters
from noether_lib.normalization.closed_form import closed_form_parts

__all__ = ["correlation_factor", "autocorrelation", "implied_correlation_factor", "amplification_table"]


def correlation_factor(autocorrelation: np.ndarray, momentum: float) -> float:
    """How much of the overdamped speed :math:`|\\dot q|^2=|\\hat g|^2/(\\mu^2r^2)` momentum really delivers.

    With normalised gradient autocorrelation :math:`C(\\ell)` (``autocorrelation[0] = 1``), the heavy-ball velocity
    :math:`v_n=\\sum_i\\beta^ig_{n-i}` has :math:`\\langle|v|^2\\rangle=\\frac{\\langle|g|^2\\rangle}{1-\\beta^2}
    (1+2\\sum_{\\ell\\ge1}\\beta^\\ell C(\\ell))`, so the ratio to the correlated value :math:`\\langle|g|^2\\rangle/(1-\\beta)^2`
    is :math:`\\kappa=\\frac{1-\\beta}{1+\\beta}(1+2\\sum_{\\ell\\ge1}\\beta^\\ell C(\\ell))`: 1 for persistent gradients,
    :math:`(1-\\beta)/(1+\\beta)` for white noise (``autocorrelation = [1]``). Derived in the book, not in the paper.
    """
    check_hyperparameters(1.0, momentum)
    c = np.asarray(autocorrelation, dtype=np.float64)
    if c.ndim != 1 or len(c) == 0 or not np.isclose(c[0], 1.0):
        raise ValueError("autocorrelation must be a 1-D array starting with C(0) = 1")
    lags = np.arange(1, len(c))
    return float((1 - momentum) / (1 + momentum) * (1 + 2 * np.sum(momentum**lags * c[1:])))


def autocorrelation(vectors: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised autocorrelation :math:`C(\\ell)=\\sum_n\\langle x_n,x_{n+\\ell}\\rangle/\\sum_n|x_n|^2` of a sequence
    of vectors (rows), for :math:`\\ell=0..` ``max_lag``, each averaged over the available pairs."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not 0 <= max_lag < len(x):
        raise ValueError("vectors must be a (steps, dim) array and 0 <= max_lag < steps")
    power = np.mean(np.sum(x * x, axis=1))
    return np.array([np.mean(np.sum(x[: len(x) - lag] * x[lag:], axis=1)) for lag in range(max_lag + 1)]) / power


def implied_correlation_factor(
    norm_squared: np.ndarray, g_hat_sq: np.ndarray, lr: float, momentum: float, weight_decay: float, start: int
) -> float:
    """The factor :math:`\\kappa=(r^4-\\text{initial part})/\\text{forcing}` of Eq. 17 that a run implies.

    ``norm_squared`` (:math:`r_n^2`) and ``g_hat_sq`` (:math:`|\\hat g_n|^2`) are recorded at steps ``0..N-1`` (shape
    ``(N, units)``); both parts of :func:`~noether_lib.normalization.closed_form_parts` are summed over the filters
    and over steps ``start..N-1``, so :math:`\\kappa` weighs filters by their forcing. Compare it with
    :func:`correlation_factor` of the run's gradient autocorrelation, and with 1 (correlated gradients).
    """
    r2 = np.asarray(norm_squared, dtype=np.float64)
    if r2.shape != np.shape(g_hat_sq) or not 0 <= start < len(r2):
        raise ValueError("norm_squared and g_hat_sq must have one shape, and 0 <= start < steps")
    initial, forcing = closed_form_parts(g_hat_sq, lr, momentum, weight_decay, r2[0])
    span = slice(start, len(r2))
    return float((r2[span] ** 2 - initial[:-1][span]).sum() / forcing[:-1][span].sum())


def amplification_table(momentum: float) -> dict[tuple[str, str, str], float]:
    """Momentum's like-for-like amplification relative to plain SGD (β = 0), from Eq. 17 and :math:`r^4_\\star`.

    Keys ``(quantity, held fixed, gradient)``: quantity ``"prefactor"`` (Eq. 17's :math:`2\\eta(1+\\beta)/(1-\\beta)^3`)
    or ``"r4_star"`` (:math:`\\eta(1+\\beta)|\\hat g|^2/(2k(1-\\beta)^2)`, same :math:`k`); held fixed ``"lr"``
    (:math:`\\eta`) or ``"lr/(1-beta)"`` (the effective step); gradient ``"correlated"`` or ``"white"`` (times
    :math:`(1-\\beta)/(1+\\beta)`). The paper's 1900 at β = 0.9 is the prefactor at fixed :math:`\\eta`, correlated.
    """
    check_hyperparameters(1.0, momentum)
    b = momentum
    white = (1 - b) / (1 + b)
    base = {("prefactor", "lr"): (1 + b) / (1 - b) ** 3, ("r4_star", "lr"): (1 + b) / (1 - b) ** 2}
    base[("prefactor", "lr/(1-beta)")] = base[("prefactor", "lr")] * (1 - b)
    base[("r4_star", "lr/(1-beta)")] = base[("r4_star", "lr")] * (1 - b)
    table = {}
    for (quantity, fixed), value in base.items():
        table[(quantity, fixed, "correlated")] = value
        table[(quantity, fixed, "white")] = value * white
    return table
