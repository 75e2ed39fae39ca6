"""Differences between training conditions over seeds, and what they say about a claim.

A condition is a set of runs that differ only in their seed. :func:`contrast` estimates a linear combination of the
conditions' mean outcomes, :math:`\\sum_i w_i\\bar x_i` (a difference: ``w = (1, -1)``; an interaction, the
difference of two differences: ``w = (1, -1, -1, 1)``), with its standard error
:math:`\\sqrt{\\sum_i w_i^2 s_i^2/n_i}` and the Welch--Satterthwaite degrees of freedom
:math:`\\nu=(\\sum_i v_i)^2/\\sum_i v_i^2/(n_i-1)`, :math:`v_i=w_i^2s_i^2/n_i`, which give a Student-t confidence
interval without assuming equal variances. An optional ``extra_variance`` adds a variance the seeds do not show,
such as the sampling error of a test set all runs share (:func:`accuracy_sampling_variance`).
:func:`equivalence` is the two one-sided tests (TOST) of a claimed *absence* of difference within a stated margin,
and :func:`verdict` turns a :class:`Difference` into the words the book uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

__all__ = ["Difference", "contrast", "welch", "equivalence", "accuracy_sampling_variance", "verdict", "VERDICTS"]

#: The words of :func:`verdict`.
VERDICTS: tuple[str, ...] = ("supports", "points the same way, not significant", "inconclusive", "does not support")


@dataclass(frozen=True)
class Difference:
    """An estimated contrast of mean outcomes with its Welch t interval.

    Attributes:
        estimate: :math:`\\sum_i w_i\\bar x_i`.
        standard_error: its standard error (seed spread, plus any extra variance).
        dof: Welch--Satterthwaite degrees of freedom.
        low, high: the two-sided confidence interval at ``confidence``.
        p_value: two-sided p-value of "no difference".
        confidence: the interval's level.
        seeds: the number of seeds of each condition.
    """

    estimate: float
    standard_error: float
    dof: float
    low: float
    high: float
    p_value: float
    confidence: float
    seeds: tuple[int, ...]

    def columns(self, estimate: str = "estimate") -> dict[str, float | int]:
        """The contrast as the report tables' columns (the estimate under the name ``estimate``): ``se, dof, low,
        high, p, seeds`` (the fewest seeds of any condition)."""
        return {
            estimate: self.estimate,
            "se": self.standard_error,
            "dof": self.dof,
            "low": self.low,
            "high": self.high,
            "p": self.p_value,
            "seeds": min(self.seeds),
        }

    def interval(self, confidence: float) -> tuple[float, float]:
        """The two-sided interval at another ``confidence``."""
        half = stats.t.ppf(0.5 + confidence / 2, self.dof) * self.standard_error
        return self.estimate - half, self.estimate + half


def contrast(
    samples: Sequence[Sequence[float]],
    weights: Sequence[float],
    *,
    extra_variance: float = 0.0,
    confidence: float = 0.95,
) -> Difference:
    """The contrast :math:`\\sum_i w_i\\bar x_i` of the conditions ``samples`` (one outcome per seed each), with
    its Welch t interval; every condition needs at least two seeds."""
    if len(samples) != len(weights) or not samples:
        raise ValueError(f"need one weight per condition, got {len(weights)} weights for {len(samples)} conditions")
    arrays = [np.asarray(s, dtype=np.float64) for s in samples]
    if min(len(a) for a in arrays) < 2:
        raise ValueError(f"every condition needs at least 2 seeds for a spread, got {[len(a) for a in arrays]}")
    if not (0 < confidence < 1 and extra_variance >= 0):
        raise ValueError(
            f"confidence must lie in (0, 1) and extra_variance be >= 0, got {confidence}, {extra_variance}"
        )
    parts = [w**2 * a.var(ddof=1) / len(a) for w, a in zip(weights, arrays)]
    variance = sum(parts) + extra_variance
    estimate = float(sum(w * a.mean() for w, a in zip(weights, arrays)))
    spread = sum(p**2 / (len(a) - 1) for p, a in zip(parts, arrays))
    dof = float(sum(parts) ** 2 / spread) if spread > 0 else math.inf
    se = math.sqrt(variance)
    if se == 0:
        p_value = 1.0 if estimate == 0 else 0.0
        low = high = estimate
    else:
        p_value = float(2 * stats.t.sf(abs(estimate) / se, dof))
        half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * se
        low, high = estimate - half, estimate + half
    return Difference(estimate, se, dof, low, high, p_value, confidence, tuple(len(a) for a in arrays))


def welch(a: Sequence[float], b: Sequence[float], **options: float) -> Difference:
    """Mean of ``a`` minus mean of ``b`` with its Welch t interval (:func:`contrast` with weights ``(1, -1)``)."""
    return contrast([a, b], [1.0, -1.0], **options)


def accuracy_sampling_variance(accuracies: Sequence[float], test_examples: int) -> float:
    """Sampling variance of a mean test accuracy :math:`p` measured on ``test_examples`` fixed test examples,
    :math:`p(1-p)/n_{test}`: the error the seeds cannot average away, since every seed meets the same test set."""
    p = float(np.mean(accuracies))
    return p * (1 - p) / test_examples


def equivalence(difference: Difference, margin: float, alpha: float = 0.05) -> tuple[bool, float]:
    """Two one-sided tests of :math:`|\\Delta| < \\text{margin}`: ``(established, p)``, with ``p`` the larger of the
    two one-sided p-values (equivalence is established when ``p < alpha``, i.e. the ``1 - 2 alpha`` interval lies
    inside the margin)."""
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    d, se, dof = difference.estimate, difference.standard_error, difference.dof
    if se == 0:
        inside = abs(d) < margin
        return inside, 0.0 if inside else 1.0
    p = max(float(stats.t.sf((d + margin) / se, dof)), float(stats.t.cdf((d - margin) / se, dof)))
    return p < alpha, p


def verdict(difference: Difference, expect: Literal["positive", "none"], margin: float | None = None) -> str:
    """How ``difference`` bears on a claim that it is positive (``expect="positive"``) or absent within ``margin``
    (``expect="none"``), in one of :data:`VERDICTS`:

    * positive: ``supports`` when the interval lies above 0, ``points the same way, not significant`` when only
      the estimate does, ``does not support`` otherwise;
    * none: ``supports`` when :func:`equivalence` within ``margin`` is established at
      :math:`\\alpha = (1-\\text{confidence})`, ``does not support`` when the interval excludes 0 instead,
      ``inconclusive`` when neither (too few seeds to tell).
    """
    if expect == "positive":
        if difference.low > 0:
            return "supports"
        return "points the same way, not significant" if difference.estimate > 0 else "does not support"
    if expect == "none":
        if margin is None:
            raise ValueError("a claim of no difference needs an equivalence margin")
        if equivalence(difference, margin, 1 - difference.confidence)[0]:
            return "supports"
        return "does not support" if difference.low > 0 or difference.high < 0 else "inconclusive"
    raise ValueError(f"expect must be 'positive' or 'none', got {expect!r}")
