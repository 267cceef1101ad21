"""Counter-based noise streams: determinism, common random numbers, distribution and independence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from adaptrx.patient import NoiseStreams, PatientSimulator, make_cohort
from adaptrx.patient.noise import CHANNELS, patient_keys

N_BIG = 10_000


@pytest.fixture(scope="module")
def keys() -> np.ndarray:
    return patient_keys(np.random.default_rng(12345), N_BIG)


def test_patient_keys_deterministic_and_distinct(keys: np.ndarray) -> None:
    again = patient_keys(np.random.default_rng(12345), N_BIG)
    assert keys.dtype == np.uint64
    assert keys.shape == (N_BIG,)
    np.testing.assert_array_equal(keys, again)
    assert len(np.unique(keys)) == N_BIG
    other = patient_keys(np.random.default_rng(12346), N_BIG)
    assert not np.array_equal(keys, other)


def test_shapes() -> None:
    ns = NoiseStreams(np.arange(1, 6, dtype=np.uint64))
    assert len(ns) == 5
    assert ns.uniform(["attend", "flare"], 0, n_days=7, slots=3).shape == (2, 7, 5, 3)
    assert ns.normal(["eta"], np.arange(5), n_days=4).shape == (1, 4, 5, 1)


def test_deterministic(keys: np.ndarray) -> None:
    a = NoiseStreams(keys).uniform(["attend", "eta"], 17, n_days=7)
    b = NoiseStreams(keys.copy()).uniform(["attend", "eta"], 17, n_days=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(NoiseStreams(keys).normal(["eta"], 3, 5), NoiseStreams(keys).normal(["eta"], 3, 5))


@pytest.mark.parametrize("position", [0, 1, 4_999, 8_191, N_BIG - 1])
def test_crn_independent_of_batch_size_and_position(keys: np.ndarray, position: int) -> None:
    """A patient's draws are the same alone (batch of 1) and anywhere in a batch of 10,000."""
    channels = list(CHANNELS)
    big = NoiseStreams(keys)
    alone = NoiseStreams(keys[[position]])
    np.testing.assert_array_equal(
        big.uniform(channels, 8, n_days=7, slots=2)[:, :, position],
        alone.uniform(channels, 8, n_days=7, slots=2)[:, :, 0],
    )
    np.testing.assert_array_equal(
        big.normal(channels, 8, n_days=7)[:, :, position], alone.normal(channels, 8, n_days=7)[:, :, 0]
    )
    # subset() and a shuffled batch give the same draws too
    perm = np.random.default_rng(position).permutation(N_BIG)
    shuffled = NoiseStreams(keys[perm]).uniform(["attend"], 8, n_days=3)[0]
    where = int(np.flatnonzero(perm == position)[0])
    np.testing.assert_array_equal(shuffled[:, where], big.uniform(["attend"], 8, n_days=3)[0][:, position])
    np.testing.assert_array_equal(
        big.subset(np.array([position])).normal(["eta"], 8, 2), alone.normal(["eta"], 8, 2)
    )


def test_per_patient_first_day_matches_scalar_day(keys: np.ndarray) -> None:
    """Draws for day d do not depend on which other days the batch is asking for."""
    ns = NoiseStreams(keys[:100])
    days = np.arange(100, dtype=np.int64) * 7 + 1
    per_patient = ns.uniform(["attend", "flare"], days, n_days=7)
    for i in (0, 37, 99):
        scalar = NoiseStreams(keys[[i]]).uniform(["attend", "flare"], int(days[i]), n_days=7)
        np.testing.assert_array_equal(per_patient[:, :, i], scalar[:, :, 0])
    # a multi-day draw equals the concatenation of single-day draws
    week = ns.normal(["eta"], 50, n_days=7)[0]
    singles = np.stack([ns.normal(["eta"], 50 + d)[0, 0] for d in range(7)])
    np.testing.assert_array_equal(week, singles)


def test_different_keys_days_channels_slots_differ(keys: np.ndarray) -> None:
    ns = NoiseStreams(keys[:2000])
    base = ns.uniform(["attend"], 10)[0, 0, :, 0]
    # different keys (patients): essentially no ties
    assert len(np.unique(base)) == len(base)
    # different days, channels, slots: no coinciding draws and no correlation
    others = {
        "day": ns.uniform(["attend"], 11)[0, 0, :, 0],
        "channel": ns.uniform(["flare"], 10)[0, 0, :, 0],
        "slot": ns.uniform(["attend"], 10, slots=2)[0, 0, :, 1],
    }
    for name, other in others.items():
        assert not np.any(other == base), name
        assert abs(np.corrcoef(base, other)[0, 1]) < 4 / np.sqrt(len(base)) + 0.02, name
    # all channels of one patient-day are pairwise distinct
    all_ch = ns.uniform(list(CHANNELS), 10)[:, 0, :, 0]  # (n_channels, n)
    assert all(len(np.unique(all_ch[:, i])) == len(CHANNELS) for i in range(len(base)))


def test_draws_do_not_depend_on_slot_count() -> None:
    ns = NoiseStreams(patient_keys(np.random.default_rng(10), 1000))
    one = ns.uniform(list(CHANNELS), 0, n_days=3, slots=1)
    many = ns.uniform(list(CHANNELS), 0, n_days=3, slots=4)
    # no draw of a 4-slot call coincides with any draw of a 1-slot call (other channel, day or slot)
    assert not np.isin(many[..., 1:], one).any()
    np.testing.assert_array_equal(many[..., :1], one)


def test_uniform_moments() -> None:
    """10^6 uniforms: strictly inside (0, 1), mean 1/2 and variance 1/12 within ~5 standard errors."""
    ns = NoiseStreams(patient_keys(np.random.default_rng(7), 1000))
    u = ns.uniform(["attend"], 1, n_days=1000).ravel()
    assert u.size == 1_000_000
    assert u.min() > 0.0
    assert u.max() < 1.0
    se_mean = np.sqrt(1 / 12 / u.size)  # ~2.9e-4
    se_var = np.sqrt((1 / 80 - 1 / 144) / u.size)  # ~7.5e-5
    assert abs(u.mean() - 0.5) < 5 * se_mean
    assert abs(u.var() - 1 / 12) < 5 * se_var
    # uniform over deciles: chi-square goodness of fit
    counts = np.bincount((u * 10).astype(int), minlength=10)
    assert stats.chisquare(counts).pvalue > 0.001


def test_normal_distribution() -> None:
    ns = NoiseStreams(patient_keys(np.random.default_rng(8), 1000))
    z = ns.normal(["eta"], 1, n_days=200).ravel()  # 2e5 draws
    assert np.all(np.isfinite(z))
    assert stats.kstest(z, "norm").pvalue > 0.001
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.std() - 1.0) < 0.01
    # the normal of a channel is the inverse CDF of its uniform (documented construction)
    u = ns.uniform(["eta"], 1, n_days=2)
    np.testing.assert_allclose(stats.norm.cdf(ns.normal(["eta"], 1, n_days=2)), u, rtol=1e-12, atol=1e-15)


def test_lag1_autocorrelation_across_days() -> None:
    ns = NoiseStreams(patient_keys(np.random.default_rng(9), 1000))
    for channel in ("eta", "attend", "flare"):
        x = ns.uniform([channel], 1, n_days=1000)[0]  # (days, patients)
        x = x - x.mean()
        r = (x[1:] * x[:-1]).sum() / (x * x).sum()
        assert abs(r) < 4 / np.sqrt(x[1:].size), (channel, r)  # ~0.004
        # per patient the lag-1 autocorrelation averages to ~0 as well
        r_pat = (x[1:] * x[:-1]).mean(axis=0) / x.var(axis=0)
        assert abs(r_pat.mean()) < 4 / np.sqrt(x[1:].size), channel


def test_adjacent_keys_independent() -> None:
    """Keys that differ by a small integer (e.g. sequential ids) still give uncorrelated streams."""
    keys = np.arange(1, 20_001, dtype=np.uint64)
    u = NoiseStreams(keys).uniform(["attend"], 1, n_days=50)[0]  # (50, 20000)
    r = np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]
    assert abs(r) < 4 / np.sqrt(u[:, 1:].size)
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)


def _simulate_a_little() -> np.ndarray:
    cohort = make_cohort("knee_oa", 200, seed=1)
    sim = PatientSimulator(cohort, seed=5)
    pains = [sim.step_week(0.2 + 0.1 * w, 3, w % 3).pain for w in range(4)]
    NoiseStreams(patient_keys(np.random.default_rng(0), 10)).normal(["eta"], 0, 3)
    return np.stack(pains)


def test_global_rng_untouched() -> None:
    """Cohorts, noise and simulation never draw from (or depend on) numpy's global RNG."""
    saved = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what this test guards
    try:
        np.random.seed(2024)  # noqa: NPY002
        before = np.random.get_state()  # noqa: NPY002
        first = _simulate_a_little()
        after = np.random.get_state()  # noqa: NPY002
        assert before[0] == after[0]
        np.testing.assert_array_equal(before[1], after[1])
        assert before[2:] == after[2:]
        np.random.seed(99)  # noqa: NPY002
        np.testing.assert_array_equal(_simulate_a_little(), first)
    finally:
        np.random.set_state(saved)  # noqa: NPY002


def test_ndtri_matches_scipy_including_tails() -> None:
    """AS241 (the kernel's inverse normal CDF) agrees with scipy.special.ndtri to 1e-12 on (1e-300, 1)."""
    from scipy.special import ndtri as scipy_ndtri

    from adaptrx.patient.kernel import ndtri_array

    u = np.concatenate([
        np.geomspace(1e-300, 0.5, 20_000),  # lower tail, including the far branch (r > 5)
        1.0 - np.geomspace(1e-16, 0.5, 20_000),  # upper tail
        np.linspace(0.0, 1.0, 20_001)[1:-1],  # central region and both split points
        np.array([0.075, 0.925, 0.5 - 0.425, 0.5 + 0.425, np.nextafter(0.075, 0.0), np.exp(-25.0)]),
        NoiseStreams(patient_keys(np.random.default_rng(3), 100)).uniform(["eta"], 0, n_days=100).ravel(),
    ])
    z = ndtri_array(u)
    assert np.all(np.isfinite(z))
    assert np.max(np.abs(z - scipy_ndtri(u))) < 1e-12
    assert np.all(np.diff(z[:20_000]) > 0)  # monotone in the far tail


def test_kernel_draws_equal_noise_streams_bit_for_bit() -> None:
    """The compiled simulator's inline draws are exactly NoiseStreams' (many keys, days, channels, slots)."""
    from adaptrx.patient import kernel

    keys = np.concatenate([patient_keys(np.random.default_rng(4), 40), np.array([0, 1, 2**64 - 1], dtype=np.uint64)])
    ns = NoiseStreams(keys)
    days = [0, 1, 2, 7, 8, 365, 10_007, 2**30]
    channels = list(CHANNELS)
    for day in days:
        u = ns.uniform(channels, day, slots=3)[:, 0]  # (channel, patient, slot)
        z = ns.normal(channels, day, slots=3)[:, 0]
        for c, name in enumerate(channels):
            for i, key in enumerate(keys):
                for slot in range(3):
                    assert kernel.uniform(key, day, CHANNELS[name], slot) == u[c, i, slot]
                    assert kernel.normal(key, day, CHANNELS[name], slot) == z[c, i, slot]


def test_normals_identical_across_calls_shapes_and_subsets(keys: np.ndarray) -> None:
    """One inverse CDF for every caller: normals of a big call equal those of any sub-call bit for bit."""
    ns = NoiseStreams(keys[:3000])
    big = ns.normal(list(CHANNELS), 5, n_days=4, slots=2)
    np.testing.assert_array_equal(ns.subset(np.arange(10, 20)).normal(["obs_rpe"], 7, 1, 2)[0, 0],
                                  big[list(CHANNELS).index("obs_rpe"), 2, 10:20])


def _splitmix_reference(key: int, day: int, channel: int, slot: int) -> float:
    """SplitMix64 of the documented counter in plain Python integers (mod 2**64), as a uniform."""
    mask = (1 << 64) - 1
    z = ((day * 64 + channel + (slot << 40)) * 0x9E3779B97F4A7C15 + key) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return ((z >> 11) + 0.5) / float(1 << 53)


def test_uniforms_are_splitmix64_of_the_documented_counter() -> None:
    keys = np.array([0, 1, 2**63 + 12345, 2**64 - 1], dtype=np.uint64)
    streams = NoiseStreams(keys)
    u = streams.uniform(["eta", "enrolment"], np.array([0, 5, 17, 400]), n_days=3, slots=2)
    for c, channel in enumerate(("eta", "enrolment")):
        for t in range(3):
            for i, (key, first) in enumerate(zip(keys.tolist(), (0, 5, 17, 400), strict=True)):
                for j in range(2):
                    assert u[c, t, i, j] == _splitmix_reference(key, first + t, CHANNELS[channel], j)
