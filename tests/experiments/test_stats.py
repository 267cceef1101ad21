"""Bootstrap statistics of paired trials."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from adaptrx.experiments.stats import (
    bootstrap_iqm,
    bootstrap_mean,
    bootstrap_statistic,
    holm,
    iqm,
    outcome_shares,
    paired_difference,
    probability_of_improvement,
    sign_flip_p,
    stratified_resample_index,
)


def _coverage(seed: int, mean: float, n: int, n_boot: int, reps: int) -> float:
    """Share of ``reps`` normal samples (sd 2, size ``n``) whose bootstrap 95 % CI covers the true ``mean``."""
    rng = np.random.default_rng(seed)
    hits = 0
    for k in range(reps):
        est = bootstrap_mean(rng.normal(mean, 2.0, n), n_boot=n_boot, seed=k)
        hits += est.low <= mean <= est.high
    return hits / reps


def test_bootstrap_ci_covers_the_true_mean_at_about_95_percent() -> None:
    assert 0.90 <= _coverage(seed=0, mean=1.0, n=200, n_boot=500, reps=300) <= 0.98


def test_paired_difference_uses_the_pairing() -> None:
    rng = np.random.default_rng(1)
    patient = rng.normal(5.0, 2.0, 500)  # large between-patient spread
    a, b = patient + 0.3 + rng.normal(0, 0.1, 500), patient
    est = paired_difference(a, b)
    assert est.low > 0.25 and est.high < 0.35  # unpaired CI would be ~ +-0.25 wide
    with pytest.raises(ValueError, match="same shape"):
        paired_difference(a, b[:10])


def test_iqm_ignores_the_tails() -> None:
    x = np.r_[np.arange(1.0, 9.0), 1e6]
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)
    assert iqm(x) < 10
    with pytest.raises(ValueError):
        bootstrap_mean(np.array([1.0, np.nan]))


# --- bootstrap: normal theory, stratification, backward compatibility -------------------------------------------


def test_bootstrap_ci_of_a_normal_mean_matches_normal_theory() -> None:
    x = np.random.default_rng(2).normal(3.0, 2.0, 400)
    est = bootstrap_mean(x, n_boot=4000, seed=0)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert est.value == pytest.approx(x.mean())
    assert abs(est.low - (x.mean() - half)) < 0.15 * half
    assert abs(est.high - (x.mean() + half)) < 0.15 * half
    assert 0.90 <= _coverage(seed=3, mean=3.0, n=100, n_boot=400, reps=200) <= 0.99


def test_unstratified_results_are_unchanged() -> None:
    # numbers computed with the implementation before strata were added, on another machine. The resample means
    # are a BLAS matrix-vector product whose summation order depends on the CPU's kernel: rounding error is
    # bounded by n * eps = 50 * 1.1e-16 (5.5e-15 relative); 1e-12 leaves room for that and still fails on any
    # change of the resampling (which moves these numbers in the second decimal)
    x = np.random.default_rng(7).normal(3, 2, 50)
    y = np.random.default_rng(8).normal(2, 2, 50)
    est = bootstrap_mean(x, 500, 3, 0.9)
    assert (est.value, est.low, est.high) == pytest.approx((2.4146914207076744, 2.0029177936209432,
                                                            2.796251753187978), rel=1e-12, abs=0)
    est = paired_difference(x, y, 500, 3, 0.9)
    assert (est.value, est.low, est.high) == pytest.approx((0.7490068698924075, 0.18614218491036383,
                                                            1.3648894565252572), rel=1e-12, abs=0)
    old_index = np.random.default_rng(5).integers(0, 30, size=(40, 30))
    np.testing.assert_array_equal(stratified_resample_index(None, 30, 40, 5), old_index)
    np.testing.assert_array_equal(stratified_resample_index(np.zeros(30), 30, 40, 5), old_index)


@pytest.mark.parametrize("strata", [np.array([0, 1, 1, 2, 0, 1, 1, 2, 1, 1]), np.array(list("abbcabbcbb"))])
def test_stratified_resampling_stays_within_strata(strata: np.ndarray) -> None:
    index = stratified_resample_index(strata, len(strata), 300, seed=1)
    assert index.shape == (300, 10)
    np.testing.assert_array_equal(strata[index], np.broadcast_to(strata, index.shape))  # same stratum, same counts
    for label in np.unique(strata):
        members = np.flatnonzero(strata == label)
        assert set(np.unique(index[:, members])) == set(members)  # every member gets drawn somewhere
    with pytest.raises(ValueError, match="strata"):
        stratified_resample_index(strata[:5], 10, 300, seed=1)


def test_stratified_bootstrap_removes_between_stratum_variance() -> None:
    rng = np.random.default_rng(4)
    strata = np.repeat([0, 1], 100)
    x = np.where(strata == 0, 0.0, 10.0) + rng.normal(0, 0.5, 200)  # two very different populations
    plain, stratified = bootstrap_mean(x), bootstrap_mean(x, strata=strata)
    assert stratified.value == plain.value
    assert stratified.high - stratified.low < 0.2 * (plain.high - plain.low)
    assert stratified.low < x.mean() < stratified.high


def test_bootstrap_statistic_and_iqm() -> None:
    assert iqm(np.arange(1.0, 9.0)) == 4.5  # mean of 3, 4, 5, 6
    assert iqm(np.r_[np.arange(1.0, 8.0), 1e6]) == 4.5  # an outlier in place of 8 does not move it
    x = np.random.default_rng(6).standard_t(2, 300)
    est = bootstrap_iqm(x, n_boot=500, seed=2)
    assert est.value == iqm(x)
    assert est.low < est.value < est.high
    med = bootstrap_statistic(x, lambda m: np.median(m, axis=1), n_boot=500, seed=2)
    assert med.value == np.median(x) and med.low < med.value < med.high
    wide = bootstrap_mean(x, n_boot=500, seed=2, level=0.99)
    narrow = bootstrap_mean(x, n_boot=500, seed=2, level=0.5)
    assert wide.low < narrow.low < narrow.high < wide.high


@pytest.mark.parametrize("bad", [np.array([]), np.array([1.0, np.nan]), np.array([1.0, np.inf]), np.ones((2, 2))])
def test_bad_values_are_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="values"):
        bootstrap_statistic(bad, lambda m: m.mean(axis=1))
    with pytest.raises(ValueError, match="values"):
        bootstrap_iqm(bad)
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean(np.ones(3), level=1.5)


# --- tests and multiplicity -----------------------------------------------------------------------------------


def test_sign_flip_p_exact_enumeration() -> None:
    """Small samples: every sign pattern is enumerated; p is the share with |sum| >= the observed |sum|."""
    d = np.array([1.0, 2.0, 3.0, -0.5])  # |sum| 5.5; flips reaching it: +-(1, 2, 3, +-0.5) -> 4 of 16
    assert sign_flip_p(d) == pytest.approx(4 / 16)
    assert sign_flip_p(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(2 / 16)  # only all + and all -
    assert sign_flip_p(np.zeros(5)) == 1.0  # no evidence of any difference
    np.testing.assert_allclose(sign_flip_p(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])),
                               [2 / 16, 1.0])


def test_sign_flip_p_is_the_test_of_the_mean() -> None:
    """Monte Carlo flips: p is valid under the null (about 5 % of null samples below 0.05), agrees with the
    z-test of the mean for large n, and follows the mean, not the median, when the two disagree."""
    rng = np.random.default_rng(3)
    null = sign_flip_p(rng.normal(0.0, 1.0, (400, 60)), n_perm=2000, seed=1)
    assert 0.02 <= (null < 0.05).mean() <= 0.09
    d = rng.normal(0.08, 1.0, (6, 2000))
    z = np.abs(d.mean(axis=1)) / np.sqrt((d**2).sum(axis=1)) * d.shape[1]
    np.testing.assert_allclose(sign_flip_p(d, n_perm=20_000, seed=2), 2 * norm.sf(z), atol=0.01)
    skewed = np.r_[np.full(900, 0.5), np.full(100, -6.0)]  # median +0.5, mean -0.15
    rng.shuffle(skewed)
    est = paired_difference(skewed, np.zeros_like(skewed), seed=0)
    p = sign_flip_p(skewed, n_perm=20_000)
    assert est.high < 0 and p < 0.05  # CI and test agree: the mean is below 0
    assert np.median(skewed) > 0  # although most patients are above 0
    with pytest.raises(ValueError, match="differences"):
        sign_flip_p(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="n_perm"):
        sign_flip_p(np.ones(200), n_perm=10)


def test_holm() -> None:
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm(np.array([0.5, 0.2, 0.9])), [1.0, 0.6, 1.0])  # capped at 1
    p = np.random.default_rng(8).uniform(0, 0.1, 20)
    adjusted = holm(p)
    assert (adjusted >= p).all()
    assert (np.diff(adjusted[np.argsort(p)]) >= 0).all()
    with pytest.raises(ValueError, match="pvalues"):
        holm(np.array([0.1, np.nan]))


# --- probability of improvement and win rate --------------------------------------------------------------------


def _brute_force_poi(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a[:, None] < b[None, :]) + 0.5 * (a[:, None] == b[None, :])))


def test_probability_of_improvement_point_values() -> None:
    low, high = np.arange(10.0), np.arange(10.0) + 20
    assert probability_of_improvement(low, high).value == 1.0
    assert probability_of_improvement(high, low).value == 0.0
    assert probability_of_improvement(low, high, lower_is_better=False).value == 0.0
    assert probability_of_improvement(low, low.copy()).value == 0.5
    a, b = np.array([1.0, 2, 2, 3, 5, 5, 0]), np.array([2.0, 2, 4, 1, 5, 0, 3])
    assert probability_of_improvement(a, b).value == pytest.approx(_brute_force_poi(a, b))
    assert probability_of_improvement(a, b, lower_is_better=False).value == pytest.approx(_brute_force_poi(-a, -b))
    rng = np.random.default_rng(9)
    same = probability_of_improvement(rng.normal(0, 1, 2000), rng.normal(0, 1, 2000), n_boot=200)
    assert abs(same.value - 0.5) < 0.05


def test_probability_of_improvement_averages_strata_with_equal_weight() -> None:
    rng = np.random.default_rng(10)
    strata = np.array(["x"] * 30 + ["y"] * 10)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(1, 6, 40).astype(float)  # many ties
    x, y = strata == "x", strata == "y"
    expected = 0.5 * (_brute_force_poi(a[x], b[x]) + _brute_force_poi(a[y], b[y]))
    assert probability_of_improvement(a, b, strata=strata).value == pytest.approx(expected)


def test_probability_of_improvement_ci() -> None:
    rng = np.random.default_rng(11)
    widths = []
    for n in (100, 2000):
        patient = rng.normal(0, 1, n)
        est = probability_of_improvement(patient - 0.3 + rng.normal(0, 1, n), patient, n_boot=300, seed=1)
        assert est.low <= est.value <= est.high
        widths.append(est.high - est.low)
    assert widths[1] < 0.5 * widths[0]
    with pytest.raises(ValueError, match="same shape"):
        probability_of_improvement(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="a:"):
        probability_of_improvement(np.array([]), np.array([]))


def test_outcome_shares() -> None:
    a, b = np.array([1.0, 2, 3, 4]), np.array([2.0, 2, 1, 5])  # a better, tied, worse, better
    assert outcome_shares(a, b) == pytest.approx((0.5, 0.25, 0.25))
    assert outcome_shares(a, b, lower_is_better=False) == pytest.approx((0.25, 0.5, 0.25))
    with pytest.raises(ValueError, match="b:"):
        outcome_shares(a, np.array([1.0, np.nan, 1, 1]))


def test_weighted_bootstrap_replicates_equal_the_resampled_statistics() -> None:
    """The fast IQM and probability-of-improvement replicates (weights, one sort) equal the statistics
    computed on the explicitly resampled arrays, with ties and with strata."""
    from scipy.stats import trim_mean

    from adaptrx.experiments.stats import _improvement, _iqm_replicates, _strata_members

    rng = np.random.default_rng(5)
    n = 101
    a = np.round(rng.normal(0, 1, n), 1)  # rounded: many ties
    b = np.round(a + rng.normal(0.2, 1, n), 1)
    strata = np.repeat(["s0", "s1", "s2"], [40, 40, 21])
    index = stratified_resample_index(strata, n, 50, 3)
    np.testing.assert_allclose(_iqm_replicates(a, index), trim_mean(a[index], 0.25, axis=1), rtol=1e-6, atol=1e-9)
    groups = _strata_members(strata, n)
    fast = _improvement(a, b, index, groups)
    slow = np.zeros(len(index))
    for members in groups:
        x, y = a[index[:, members]], b[index[:, members]]
        slow += ((x[:, :, None] > y[:, None, :]) + 0.5 * (x[:, :, None] == y[:, None, :])).mean(axis=(1, 2))
    np.testing.assert_allclose(fast, slow / len(groups), rtol=1e-9, atol=1e-12)


def test_improvement_memo_reuses_only_the_same_reference_and_index() -> None:
    """Several policies against one reference on one resample index share the reference's sorted cumulative
    counts; a different reference, index or grouping must not get a stale result."""
    from adaptrx.experiments.stats import _improvement

    rng = np.random.default_rng(9)
    n = 120
    ref = np.round(rng.normal(0, 1, n), 1)
    index = stratified_resample_index(None, n, 40, 1)
    whole = [np.arange(n)]

    def slow(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> np.ndarray:
        x, y = a[idx], b[idx]
        return ((x[:, :, None] > y[:, None, :]) + 0.5 * (x[:, :, None] == y[:, None, :])).mean(axis=(1, 2))

    for _ in range(3):  # other policies, same reference and index: memo hits
        a = np.round(ref + rng.normal(0.1, 1, n), 1)
        np.testing.assert_allclose(_improvement(a, ref, index, whole), slow(a, ref, index), rtol=1e-12)
    other_ref = ref + 0.05  # another reference, same index
    np.testing.assert_allclose(_improvement(a, other_ref, index, whole), slow(a, other_ref, index), rtol=1e-12)
    other_index = stratified_resample_index(None, n, 40, 2)
    np.testing.assert_allclose(_improvement(a, ref, other_index, whole), slow(a, ref, other_index), rtol=1e-12)
