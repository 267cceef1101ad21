"""Bootstrap statistics of paired trials."""

from __future__ import annotations

import numpy as np
import pytest

from adaptrx.experiments.stats import bootstrap_mean, iqm, paired_difference


def test_bootstrap_ci_covers_the_true_mean_at_about_95_percent() -> None:
    rng = np.random.default_rng(0)
    covered = 0
    for k in range(300):
        est = bootstrap_mean(rng.normal(1.0, 2.0, 200), n_boot=500, seed=k)
        covered += est.low <= 1.0 <= est.high
    assert 0.90 <= covered / 300 <= 0.98


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
