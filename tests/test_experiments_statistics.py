"""Statistics of the ablations: Welch t intervals, contrasts, equivalence, verdicts (against scipy's own tests)."""

import numpy as np
import pytest
from scipy import stats

from noether_lib.experiments.statistics import (
    VERDICTS,
    accuracy_sampling_variance,
    contrast,
    equivalence,
    verdict,
    welch,
)

RNG = np.random.default_rng(0)
A, B = RNG.normal(1.0, 0.5, 10), RNG.normal(0.4, 0.1, 7)


def test_welch_matches_scipy_and_the_pooled_test_does_not():
    d = welch(A, B)
    reference = stats.ttest_ind(A, B, equal_var=False)
    pooled = stats.ttest_ind(A, B, equal_var=True)
    print(f"p: ours {d.p_value:.6f}, scipy Welch {reference.pvalue:.6f}, pooled (control) {pooled.pvalue:.6f}")
    assert d.p_value == pytest.approx(reference.pvalue, rel=1e-10)
    assert abs(pooled.pvalue / d.p_value - 1) > 0.1, "the control (equal variances) gives another p"
    low, high = reference.confidence_interval(0.95)
    assert (d.low, d.high) == pytest.approx((low, high), rel=1e-10)
    assert d.interval(0.95) == pytest.approx((d.low, d.high), rel=1e-12)


def test_an_interaction_is_a_contrast_of_four_means():
    c, e = RNG.normal(0.0, 0.3, 10), RNG.normal(0.1, 0.2, 10)
    d = contrast([A, B, c, e], [1, -1, -1, 1])
    assert d.estimate == pytest.approx(A.mean() - B.mean() - c.mean() + e.mean(), rel=1e-12)
    v = np.array([x.var(ddof=1) / len(x) for x in (A, B, c, e)])
    assert d.standard_error == pytest.approx(np.sqrt(v.sum()), rel=1e-12)
    assert d.dof == pytest.approx(v.sum() ** 2 / (v**2 / (np.array([10, 7, 10, 10]) - 1)).sum(), rel=1e-12)
    wider = contrast([A, B, c, e], [1, -1, -1, 1], extra_variance=0.01)
    assert wider.standard_error == pytest.approx(np.sqrt(v.sum() + 0.01), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        welch(A, B[:1])


def test_equivalence_is_two_one_sided_tests():
    same = welch(A, A + 0.001)
    established, p = equivalence(same, margin=0.5)
    assert established and p < 0.05
    d = welch(A, B)
    assert not equivalence(d, margin=0.1)[0]
    # the 90 % interval lies inside the margin exactly when TOST at 5 % establishes equivalence
    low, high = same.interval(0.90)
    assert (-0.5 < low and high < 0.5) == established


def test_verdicts_say_what_the_interval_says():
    assert verdict(welch(A, B), "positive") == "supports"
    assert verdict(welch(B, A), "positive") == "does not support"
    noisy = welch(RNG.normal(0.05, 1, 3), RNG.normal(0, 1, 3))
    assert verdict(noisy, "positive") in VERDICTS[1:]
    assert verdict(welch(A, A + 0.001), "none", margin=0.5) == "supports"
    assert verdict(welch(A, B), "none", margin=0.1) == "does not support"
    assert verdict(noisy, "none", margin=0.01) == "inconclusive", "non-significance alone is not equivalence"
    with pytest.raises(ValueError, match="margin"):
        verdict(noisy, "none")
    with pytest.raises(ValueError, match="expect"):
        verdict(noisy, "negative")  # type: ignore[arg-type]


def test_accuracy_sampling_variance_is_binomial():
    assert accuracy_sampling_variance([0.9, 0.8], 100) == pytest.approx(0.85 * 0.15 / 100)
