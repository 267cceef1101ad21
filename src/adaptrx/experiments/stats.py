"""Statistics of paired virtual trials (numpy/scipy; rliable does not work with pandas 3).

Percentile bootstrap over patients: in a paired trial every policy meets the same patients, so a paired
difference resamples patients once and takes the difference on the same resample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import trim_mean


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a bootstrap 95 % confidence interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def _resample_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_mean(values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Estimate:
    """Mean of ``values`` (1-D, finite) with a percentile bootstrap CI at ``level``."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0 or not np.isfinite(x).all():
        raise ValueError("values: expected a non-empty 1-D array of finite numbers")
    means = x[_resample_index(len(x), n_boot, seed)].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return Estimate(float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha)))


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> Estimate:
    """Mean of ``a - b`` over the same patients with a percentile bootstrap CI (patients resampled)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a, b: paired samples must have the same shape, got {a.shape} and {b.shape}")
    return bootstrap_mean(a - b, n_boot, seed, level)


def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50 % (Agarwal et al. 2021)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("values: empty")
    return float(trim_mean(x, 0.25))
