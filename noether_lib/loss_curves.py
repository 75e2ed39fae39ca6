"""Loss curves: smoothing a per-step training loss and the gap between two runs that a theory calls equivalent."""

from __future__ import annotations

import numpy as np

__all__ = ["smoothed_loss", "loss_curve_gap"]


def smoothed_loss(loss: np.ndarray, window: int = 50) -> np.ndarray:
    """Running mean of a per-step loss curve over ``window`` steps (only complete windows)."""
    loss = np.asarray(loss, dtype=float)
    if window < 1 or window > len(loss):
        raise ValueError(f"window must lie in [1, {len(loss)}], got {window}")
    return np.convolve(loss, np.ones(window) / window, mode="valid")


def loss_curve_gap(loss: np.ndarray, reference: np.ndarray, window: int = 50) -> float:
    """Largest gap between two smoothed loss curves, relative to the reference's mean loss.

    The deviation the book asserts when two runs are claimed equivalent (free training against fixed-norm training
    with the adaptive step :math:`\\eta/r^2`), and that a non-adaptive control must miss.
    """
    loss, reference = np.asarray(loss, dtype=float), np.asarray(reference, dtype=float)
    if loss.shape != reference.shape:
        raise ValueError(f"the curves must have the same length, got {loss.shape} and {reference.shape}")
    gap = np.abs(smoothed_loss(loss, window) - smoothed_loss(reference, window)).max()
    return float(gap / reference.mean())
