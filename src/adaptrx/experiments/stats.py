"""Statistics of paired virtual trials (numpy/scipy; rliable does not work with pandas 3).

Percentile bootstrap over patients: in a paired trial every policy meets the same patients, so a paired
difference resamples patients once and takes the difference on the same resample. With ``strata`` (e.g. a
patient-population label per patient) patients are resampled within their stratum, so every replicate keeps
the stratum sizes of the trial. All randomness comes from ``np.random.default_rng(seed)``; the bootstrap is
vectorised over replicates (an ``(n_boot, n)`` index array).

One estimand per comparison: the paired mean difference ``mean(a - b)``. Its interval is
``paired_difference`` (bootstrap) and its test ``sign_flip_p`` (the paired permutation test of the mean:
under "no effect" each patient's difference is as likely to have either sign), Holm-adjusted over a family
with ``holm``. Both describe the mean, so a CI that excludes 0 and a small p agree (up to the Holm adjustment and
Monte Carlo error). Descriptive companions, labelled as what they are: ``median`` of the differences,
``outcome_shares`` (the share of patients better, worse and tied), ``probability_of_improvement`` (Agarwal et
al. 2021; a different estimand, with its own CI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import trim_mean

Statistic = Callable[[np.ndarray], np.ndarray]
"""Reduces a ``(r, n)`` array along axis 1 to shape ``(r,)``."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a bootstrap confidence interval ``[low, high]`` (95 % unless asked otherwise)."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def _sample(values: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0 or not np.isfinite(x).all():
        raise ValueError(f"{name}: expected a non-empty 1-D array of finite numbers")
    return x


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a, b: paired samples must have the same shape, got {a.shape} and {b.shape}")
    return _sample(a, "a"), _sample(b, "b")


def _strata_members(strata: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Positions of each stratum (in order of first appearance); ``None`` is one stratum of all ``n``."""
    if strata is None:
        return [np.arange(n)]
    labels = np.asarray(strata)
    if labels.shape != (n,):
        raise ValueError(f"strata: expected one label per patient, shape ({n},), got {labels.shape}")
    codes: dict[object, int] = {}
    inverse = np.array([codes.setdefault(label, len(codes)) for label in labels.tolist()])
    return [np.flatnonzero(inverse == k) for k in range(len(codes))]


def _resample_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


_LAST_COUNTS: list[tuple[np.ndarray, int, np.ndarray]] = []  # (index, n, counts) of the last call


def _counts(index: np.ndarray, n: int) -> np.ndarray:
    """``(r, n)`` multiplicities (float32, exact) of each patient in each resample row of ``index`` (positions
    in ``0..n-1``). The last result is kept: several statistics of one policy share one ``index``."""
    if _LAST_COUNTS and _LAST_COUNTS[0][0] is index and _LAST_COUNTS[0][1] == n:
        return _LAST_COUNTS[0][2]
    r = index.shape[0]
    flat = (index + (np.arange(r) * n)[:, None]).ravel()
    counts = np.bincount(flat, minlength=r * n).reshape(r, n).astype(np.float32)
    _LAST_COUNTS[:] = [(index, n, counts)]
    return counts


def stratified_resample_index(strata: np.ndarray | None, n: int, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap patient indices of shape ``(n_boot, n)``, drawn with replacement within each stratum.

    Column ``j`` of every replicate holds a patient of the same stratum as patient ``j``, so each stratum keeps
    its size in every replicate. ``strata`` is a 1-D array of ``n`` hashable labels (ints, strings, ...);
    ``None`` means a single stratum, i.e. the plain bootstrap ``default_rng(seed).integers(0, n, (n_boot, n))``.
    """
    if n < 1 or n_boot < 1:
        raise ValueError(f"n, n_boot: expected positive sizes, got n={n}, n_boot={n_boot}")
    if strata is None:
        return _resample_index(n, n_boot, seed)
    rng = np.random.default_rng(seed)
    index = np.empty((n_boot, n), dtype=np.int64)
    for members in _strata_members(strata, n):
        index[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return index


def _percentile_ci(value: float, replicates: np.ndarray, level: float) -> Estimate:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a confidence level in (0, 1), got {level}")
    alpha = (1.0 - level) / 2.0
    return Estimate(float(value), float(np.quantile(replicates, alpha)), float(np.quantile(replicates, 1.0 - alpha)))


def _resamples(index: np.ndarray | None, strata: np.ndarray | None, n: int, n_boot: int, seed: int) -> np.ndarray:
    """The given resample ``index`` (checked) or a new one from ``strata``, ``n_boot`` and ``seed``."""
    if index is None:
        return stratified_resample_index(strata, n, n_boot, seed)
    index = np.asarray(index)
    if index.ndim != 2 or index.shape[1] != n or index.dtype.kind not in "iu":
        raise ValueError(f"index: expected integer resamples of shape (n_boot, {n}), got {index.shape}")
    return index


def bootstrap_statistic(values: np.ndarray, statistic: Statistic, strata: np.ndarray | None = None,
                        n_boot: int = 2000, seed: int = 0, level: float = 0.95, *,
                        index: np.ndarray | None = None) -> Estimate:
    """``statistic`` of ``values`` (1-D, finite) with a percentile bootstrap CI at ``level`` (in (0, 1)).

    ``statistic`` reduces a 2-D array along axis 1 (e.g. ``lambda m: m.mean(axis=1)``); it is applied to the
    ``(1, n)`` data for the point estimate and to the ``(n_boot, n)`` resamples (stratified by ``strata``).
    ``index``: resamples made once with :func:`stratified_resample_index` and shared by several statistics of
    the same patients (then ``strata``, ``n_boot`` and ``seed`` are not used).
    """
    x = _sample(values, "values")
    value = np.asarray(statistic(x[None, :])).reshape(-1)[0]
    replicates = np.asarray(statistic(x[_resamples(index, strata, len(x), n_boot, seed)]))
    return _percentile_ci(value, replicates, level)


def bootstrap_mean(values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                   strata: np.ndarray | None = None, *, index: np.ndarray | None = None) -> Estimate:
    """Mean of ``values`` (1-D, finite) with a percentile bootstrap CI at ``level`` (stratified by ``strata``;
    ``index`` as for :func:`bootstrap_statistic`). A resample's mean is its multiplicities times the values over
    ``n`` (one matrix-vector product; the multiplicities are shared with the other statistics of ``index``)."""
    x = _sample(values, "values")
    index = _resamples(index, strata, len(x), n_boot, seed)
    return _percentile_ci(float(x.mean()), _counts(index, len(x)) @ x / len(x), level)


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95, strata: np.ndarray | None = None, *,
                      index: np.ndarray | None = None) -> Estimate:
    """Mean of ``a - b`` over the same patients with a percentile bootstrap CI (patients resampled)."""
    a, b = _pair(a, b)
    return bootstrap_mean(a - b, n_boot, seed, level, strata, index=index)


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50 % (Agarwal et al. 2021)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("values: empty")
    return float(trim_mean(x, 0.25))


def bootstrap_iqm(values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                  strata: np.ndarray | None = None, *, index: np.ndarray | None = None) -> Estimate:
    """Interquartile mean (``iqm``, 25 % trimmed on each side) with a (stratified) percentile bootstrap CI
    (``index`` as for :func:`bootstrap_statistic`)."""
    x = _sample(values, "values")
    return _percentile_ci(iqm(x), _iqm_replicates(x, _resamples(index, strata, len(x), n_boot, seed)), level)


def _iqm_replicates(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``trim_mean(x[index], 0.25, axis=1)`` without sorting every resample.

    With ``x`` sorted once (``xs``), a resample is a weighting ``w``; its sorted element ``e`` fills positions
    ``[C_{e-1}, C_e)`` (``C = cumsum(w)``), of which those in ``[cut, n - cut)`` are kept. With
    ``c = clip(C, cut, n - cut)`` the trimmed sum is ``sum_e xs_e (c_e - c_{e-1})`` (``c_{-1} = cut``), which
    summation by parts turns into one matrix-vector product: ``sum_{e < n-1} c_e (xs_e - xs_{e+1})
    + (n - cut) xs_{n-1} - cut xs_0``. Four passes over the ``(r, n)`` counts.
    """
    n = len(x)
    cut = int(0.25 * n)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    # float32: exact for counts, half the memory traffic. np.take, not [:, order]: a fancy index on axis 1 gives
    # a Fortran-ordered array, on which the row-wise cumsum is ~5x slower.
    cum = np.cumsum(np.take(_counts(index, n), order, axis=1), axis=1)
    np.clip(cum, cut, n - cut, out=cum)
    tail = (n - cut) * xs[-1] - cut * xs[0]
    return (cum[:, :-1] @ (xs[:-1] - xs[1:]) + tail) / (n - 2 * cut)


def sign_flip_p(differences: np.ndarray, n_perm: int = 100_000, seed: int = 0) -> np.ndarray:
    """Two-sided paired permutation (sign-flip) p-values of the mean of each row of ``differences``.

    ``differences``: ``(k, n)`` (or ``(n,)``) paired differences ``a - b``, finite. Under the null hypothesis of no
    effect each difference is as likely to be ``+d`` as ``-d``, so the p-value is the share of random sign flips
    whose ``|sum|`` is at least the observed ``|sum|``. Exact (every ``2**n`` flip enumerated) when ``2**n <=
    n_perm``; otherwise Monte Carlo with ``n_perm`` flips (shared by the rows; ``default_rng(seed)``), reported as
    ``(1 + hits) / (1 + n_perm)`` so that no p-value is 0 (the smallest is ``1 / (1 + n_perm)``). A row of zero
    differences gets 1. Returns a ``(k,)`` array in (0, 1] (a float for a 1-D input).

    The statistic is the mean, the estimand of :func:`paired_difference`: for large ``n`` the test is the paired
    z-test of the mean, so it agrees with that bootstrap CI (unlike a signed-rank test, which tests a location
    shift and can point the other way when the mean and the median differ).
    """
    d = np.asarray(differences, dtype=np.float64)
    one = d.ndim == 1
    d = np.atleast_2d(d)
    if d.ndim != 2 or d.shape[1] == 0 or not np.isfinite(d).all():
        raise ValueError("differences: expected a non-empty (k, n) array of finite numbers")
    if n_perm < 100:
        raise ValueError(f"n_perm: expected at least 100 sign flips, got {n_perm}")
    n = d.shape[1]
    observed = np.abs(d.sum(axis=1))
    slack = 1e-9 * np.abs(d).sum(axis=1)  # a flip equal to the observed sum up to rounding counts as a hit
    hits = np.zeros(len(d), dtype=np.int64)
    exact = n < 63 and 2**n <= n_perm
    total = 2**n if exact else n_perm
    rng = np.random.default_rng(seed)
    chunk = max(1, min(total, 2**22 // n))
    for start in range(0, total, chunk):
        rows = min(chunk, total - start)
        if exact:  # the bits of start..start+rows-1 are every sign pattern once
            bits = (np.arange(start, start + rows)[:, None] >> np.arange(n)[None, :]) & 1
        else:
            bits = rng.integers(0, 2, size=(rows, n), dtype=np.int8)
        sums = (1.0 - 2.0 * bits) @ d.T  # (rows, k)
        hits += (np.abs(sums) >= observed - slack).sum(axis=0)
    p = hits / total if exact else (hits + 1) / (n_perm + 1)
    p = np.minimum(p, 1.0)
    return float(p[0]) if one else p


def outcome_shares(a: np.ndarray, b: np.ndarray, lower_is_better: bool = True) -> tuple[float, float, float]:
    """Shares of patients (each in [0, 1], summing to 1) on whom ``a`` is better than, worse than and tied with
    ``b`` (exactly equal: e.g. both arms gave the same outcome under common random numbers)."""
    a, b = _pair(a, b)
    better = a < b if lower_is_better else a > b
    tied = a == b
    return float(better.mean()), float((~better & ~tied).mean()), float(tied.mean())


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values, in the order of ``pvalues`` (1-D, in [0, 1], no NaN).

    With ``p_(1) <= ... <= p_(m)`` sorted, ``adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))``; reject the
    hypotheses with ``adj <= alpha`` to control the family-wise error rate at ``alpha``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("pvalues: expected a 1-D array of p-values in [0, 1] without NaN")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return adjusted




_LAST_BASES: list[tuple[np.ndarray, bytes, list[np.ndarray], list[tuple[Any, ...]]]] = []  # see _improvement_bases


def _improvement_bases(b: np.ndarray, index: np.ndarray, groups: list[np.ndarray],
                       memo: bool) -> list[tuple[Any, ...]]:
    """Per group of patients, what :func:`_improvement` needs from ``b`` and the resamples alone:
    ``(members, k, w, sorted_b, cum)`` with ``w`` the ``(r, k)`` multiplicities and ``cum`` their cumulative sums
    in the order of ``b`` (a leading zero column). Comparing several policies with one reference on one
    resample index reuses them (``memo``: the last result is kept)."""
    if memo and _LAST_BASES:
        last_index, last_b, last_groups, bases = _LAST_BASES[0]
        if (last_index is index and last_b == b.tobytes() and len(last_groups) == len(groups)
                and all(np.array_equal(g, h) for g, h in zip(last_groups, groups, strict=True))):
            return bases
    bases = []
    for members in groups:
        k = len(members)
        if k == len(b):  # one group of every patient: the index is already local
            w = _counts(index, k)
        else:
            local = np.full(len(b), -1)
            local[members] = np.arange(k)
            w = _counts(local[index[:, members]], k)
        order = np.argsort(b[members], kind="stable")
        cum = np.zeros((len(w), k + 1), dtype=np.float32)  # float32: exact for counts up to 2**24
        np.cumsum(np.take(w, order, axis=1), axis=1, out=cum[:, 1:])  # np.take: C order (see _iqm_replicates)
        bases.append((members, k, w, b[members][order], cum))
    if memo:
        _LAST_BASES[:] = [(index, b.tobytes(), list(groups), bases)]
    return bases


def _improvement(a: np.ndarray, b: np.ndarray, index: np.ndarray, groups: list[np.ndarray],
                 memo: bool = True) -> np.ndarray:
    """P(A > B) + 0.5 P(A = B) of each resample row of ``index`` (``(r, n)``), within each group of patients,
    averaged over groups with equal weight.

    A resample is a weighting of the original patients (multiplicities ``w``), so with ``b`` sorted once the
    weighted number of ``b`` below / at most each ``a_i`` is a cumulative sum read at ``searchsorted``
    positions: ``sum_i w_i (W(b < a_i) + W(b <= a_i)) / 2 / k^2``, O(r k) per group after one sort (the
    Mann-Whitney U statistic of the resample, ties counting half).
    """
    total = np.zeros(len(index))
    for members, k, w, sorted_b, cum in _improvement_bases(b, index, groups, memo):
        ga = a[members]
        score = np.take(cum, np.searchsorted(sorted_b, ga, side="left"), axis=1)
        score += np.take(cum, np.searchsorted(sorted_b, ga, side="right"), axis=1)  # exact: integers < 2**24
        total += np.einsum("ij,ij->i", w, score, dtype=np.float64) / (2 * k * k)
    return total / len(groups)


def probability_of_improvement(a: np.ndarray, b: np.ndarray, lower_is_better: bool = True,
                               strata: np.ndarray | None = None, n_boot: int = 2000, seed: int = 0,
                               level: float = 0.95, *, index: np.ndarray | None = None) -> Estimate:
    """Probability of improvement of ``a`` over ``b`` (Agarwal et al. 2021, rliable), in [0, 1].

    ``P(X better than Y) + 0.5 P(X == Y)`` with ``X`` and ``Y`` drawn independently from the ``a`` and ``b``
    outcomes of one stratum ("better" = smaller when ``lower_is_better``), averaged over strata with equal
    weight (as rliable averages over tasks). 0.5 means no tendency either way. Computed from the Mann-Whitney
    U statistic (O(n log n)). CI: percentile bootstrap resampling the same patients for ``a`` and ``b``
    (the trial is paired; ``a`` and ``b`` have the same shape), within strata; a shared ``index`` must come
    from :func:`stratified_resample_index` with the same ``strata``.
    """
    a, b = _pair(a, b)
    sign = -1.0 if lower_is_better else 1.0
    a, b = sign * a, sign * b
    groups = _strata_members(strata, len(a))
    index = _resamples(index, strata, len(a), n_boot, seed)
    value = _improvement(a, b, np.arange(len(a))[None, :], groups, memo=False)[0]
    return _percentile_ci(value, _improvement(a, b, index, groups), level)
