"""Observation model: what a clinic sees is discrete, bounded, missing where it should be, noisy but informative."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from adaptrx.patient import HOME_ALONE, SUPERVISED, PatientSimulator, WeekObservation, WeekResult, make_cohort
from adaptrx.patient.constants import ModelConstants
from adaptrx.patient.observation import nrs

N = 2000
WEEKS = 12


@pytest.fixture(scope="module")
def weeks() -> list[WeekResult]:
    """12 weeks of mixed prescriptions (some patients never prescribed anything) for 2000 patients."""
    cohort = make_cohort("knee_oa", N, seed=21)
    sim = PatientSimulator(cohort, seed=2)
    rng = np.random.default_rng(3)
    untreated = np.arange(N) < N // 10
    out = []
    for _ in range(WEEKS):
        load = rng.uniform(0.0, 1.2, N)
        sessions = np.where(untreated, 0, rng.integers(0, 6, N))
        out.append(sim.step_week(load, sessions, rng.integers(0, 3, N)))
    return out


def _is_integer(x: np.ndarray) -> bool:
    x = x[~np.isnan(x)]
    return bool(np.all(x == np.round(x)))


def test_nrs_reports_are_integers_0_to_10(weeks: list[WeekResult]) -> None:
    for r in weeks:
        o = r.observation
        for name in ("session_pain_max", "diary_pain", "session_pain_mean", "morning_pain_mean", "rpe_mean"):
            x = getattr(o, name)
            x = x[~np.isnan(x)]
            assert x.size > 0, name
            assert np.all((x >= 0) & (x <= 10)), name
        assert _is_integer(o.session_pain_max)
        # means of integer reports are multiples of 1/count
        att = o.sessions_attended
        ok = att > 0
        assert np.allclose(o.session_pain_mean[ok] * att[ok], np.round(o.session_pain_mean[ok] * att[ok]))
        assert np.all(o.session_pain_mean[ok] <= o.session_pain_max[ok])
        dd = o.diary_days
        ok = dd > 0
        assert np.allclose(o.diary_pain[ok] * dd[ok], np.round(o.diary_pain[ok] * dd[ok]))
        assert np.all((o.morning_change_mean[att > 0] >= -10) & (o.morning_change_mean[att > 0] <= 10))


def test_nrs_helper() -> None:
    k = ModelConstants()
    true = np.linspace(-2.0, 12.0, 1001)
    z = np.random.default_rng(0).standard_normal(true.size) * 3
    out = nrs(true, z, k)
    assert np.all((out >= 0) & (out <= 10))
    assert _is_integer(out)
    np.testing.assert_array_equal(nrs(np.array([0.2, 4.4, 9.6]), np.zeros(3), k), [0.0, 4.0, 10.0])


def test_diary_days_and_counts(weeks: list[WeekResult]) -> None:
    for r in weeks:
        o = r.observation
        assert _is_integer(o.diary_days)
        assert np.all((o.diary_days >= 0) & (o.diary_days <= 7))
        assert np.all(np.isnan(o.diary_pain) == (o.diary_days == 0))
        np.testing.assert_array_equal(o.sessions_attended, r.sessions_attended)
        np.testing.assert_array_equal(o.flare_reported, r.flares > 0)
        np.testing.assert_array_equal(o.dropped_out, r.dropped_out)
    days = np.concatenate([r.observation.diary_days for r in weeks])
    assert 0 < days.mean() < 7  # some days go missing, most are reported
    assert days.mean() > 3.5


def test_missing_where_nothing_happened(weeks: list[WeekResult]) -> None:
    for r in weeks:
        o = r.observation
        none_attended = r.sessions_attended == 0
        for name in ("session_pain_mean", "session_pain_max", "morning_pain_mean", "morning_change_mean", "rpe_mean"):
            x = getattr(o, name)
            assert np.all(np.isnan(x[none_attended])), name
            assert not np.any(np.isnan(x[~none_attended])), name
        none_prescribed = r.sessions_prescribed == 0
        assert np.all(np.isnan(o.attendance[none_prescribed]))
        att = o.attendance[~none_prescribed]
        assert not np.any(np.isnan(att))
        assert np.all((att >= 0) & (att <= 1))
        np.testing.assert_allclose(att, r.sessions_attended[~none_prescribed] / r.sessions_prescribed[~none_prescribed])
    assert any(np.any(r.sessions_attended == 0) for r in weeks)
    assert any(np.any(r.sessions_attended > 0) for r in weeks)


def test_rpe_reflects_relative_load(weeks: list[WeekResult]) -> None:
    rpe = np.concatenate([r.observation.rpe_mean for r in weeks])
    rel = np.concatenate([r.relative_load for r in weeks])
    ok = ~np.isnan(rpe)
    assert np.all((rpe[ok] >= 0) & (rpe[ok] <= 10))
    assert np.corrcoef(rpe[ok], rel[ok])[0, 1] > 0.7


def test_capacity_test_every_fourth_week_only(weeks: list[WeekResult]) -> None:
    every = ModelConstants().capacity_test_every
    assert every == 4
    for w, r in enumerate(weeks, start=1):  # 1-based week number, as trials report
        cap = r.observation.capacity_test
        if w % every == 0:
            assert not np.any(np.isnan(cap)), w
            assert np.all(cap > 0)
            assert not np.array_equal(cap, r.capacity)  # noisy, never the latent value
            cv = np.std(cap / r.capacity - 1.0)
            assert 0.01 < cv < 0.3, cv
            assert np.corrcoef(cap, r.capacity)[0, 1] > 0.3
        else:
            assert np.all(np.isnan(cap)), w


def test_function_score_range_and_noise(weeks: list[WeekResult]) -> None:
    for r in weeks:
        f = r.observation.function
        assert not np.any(np.isnan(f))
        assert np.all((f >= 0) & (f <= 100))
        assert _is_integer(f)
        err = f - r.function
        assert 2.0 < np.std(err) < 12.0  # noisy (design: sd ~5-8), but not wildly so
        assert abs(np.mean(err)) < 1.0
        assert np.corrcoef(f, r.function)[0, 1] > 0.6


def test_diary_pain_tracks_true_pain_but_is_not_identical(weeks: list[WeekResult]) -> None:
    for r in (weeks[0], weeks[5], weeks[-1]):
        diary = r.observation.diary_pain
        ok = ~np.isnan(diary)
        assert ok.mean() > 0.9
        assert np.corrcoef(diary[ok], r.pain[ok])[0, 1] > 0.8
        assert not np.allclose(diary[ok], r.pain[ok])
        assert np.mean(np.abs(diary[ok] - r.pain[ok])) > 0.05
        assert abs(np.mean(diary[ok] - r.pain[ok])) < 0.5  # unbiased on average


def test_session_pain_tracks_true_session_pain(weeks: list[WeekResult]) -> None:
    r = weeks[3]
    ok = r.sessions_attended > 0
    assert np.corrcoef(r.observation.session_pain_max[ok], r.session_pain_max[ok])[0, 1] > 0.8


def test_observation_holds_no_latent_fields() -> None:
    names = {f.name for f in dataclasses.fields(WeekObservation)}
    latent = {"sensitization", "fear", "motivation", "habit", "irritation", "context", "eta", "fatigue", "capacity"}
    assert not names & latent


def test_intake_observation_keys_and_ranges() -> None:
    cohort = make_cohort("knee_oa", N, seed=22)
    sim = PatientSimulator(cohort, seed=1)
    intake = sim.intake
    assert set(intake) >= {"age", "pain", "sensitization_score", "fear_score", "preferred_sessions"}
    assert all(v.shape == (N,) for v in intake.values())
    np.testing.assert_array_equal(intake["age"], cohort["age"].to_numpy())
    np.testing.assert_array_equal(intake["preferred_sessions"], cohort["preferred_sessions"].to_numpy())
    pain = intake["pain"]
    assert _is_integer(pain) and np.all((pain >= 0) & (pain <= 10))
    assert np.corrcoef(pain, sim.state.pain)[0, 1] > 0.8
    s_score, f_score = intake["sensitization_score"], intake["fear_score"]
    assert _is_integer(s_score) and np.all((s_score >= 0) & (s_score <= 100))
    assert _is_integer(f_score) and np.all((f_score >= 11) & (f_score <= 44))
    # questionnaires are noisy proxies of the latent values, informative but not exact
    r_s = np.corrcoef(s_score, cohort["sensitization"])[0, 1]
    r_f = np.corrcoef(f_score, cohort["fear"])[0, 1]
    assert 0.4 < r_s < 0.999
    assert 0.4 < r_f < 0.999
    # deterministic for the same seed, different for another
    again = PatientSimulator(cohort, seed=1).intake
    for name, v in intake.items():
        np.testing.assert_array_equal(v, again[name], err_msg=name)
    other = PatientSimulator(cohort, seed=2).intake
    assert not np.array_equal(other["fear_score"], f_score)


def test_enrolment_on_a_higher_pain_day() -> None:
    """Regression to the mean: the intake NRS is on average above the untreated patient's later diary pain."""
    cohort = make_cohort("knee_oa", N, seed=23)
    sim = PatientSimulator(cohort, seed=0)
    diary = np.stack([sim.step_week(0.0, 0, HOME_ALONE).observation.diary_pain for _ in range(8)])
    diff = sim.intake["pain"] - np.nanmean(diary, axis=0)
    assert diff.mean() / (diff.std() / np.sqrt(N)) > 2.5  # paired t statistic


def test_observation_crn_matches_between_arms() -> None:
    """Report noise is common across policies: untreated patients report identically in both arms."""
    cohort = make_cohort("knee_oa", 400, seed=24)
    a, b = PatientSimulator(cohort, seed=3), PatientSimulator(cohort, seed=3)
    untreated = np.arange(400) % 3 == 0
    for _ in range(4):
        ra = a.step_week(0.4, np.where(untreated, 0, 2), SUPERVISED)
        rb = b.step_week(0.9, np.where(untreated, 0, 4), HOME_ALONE)
        for f in dataclasses.fields(WeekObservation):
            np.testing.assert_array_equal(
                getattr(ra.observation, f.name)[untreated], getattr(rb.observation, f.name)[untreated], err_msg=f.name
            )


def test_cohort_frame_not_mutated() -> None:
    cohort = make_cohort("knee_oa", 50, seed=0)
    before = cohort.copy()
    sim = PatientSimulator(cohort, seed=0)
    sim.step_week(0.5, 3, SUPERVISED)
    pd.testing.assert_frame_equal(cohort, before)


def test_nrs_formula() -> None:
    """The kernel's report function: rint(true + (sd + severity * true) * z) clipped to 0-10, broadcast."""
    k = ModelConstants()
    rng = np.random.default_rng(5)
    true = rng.uniform(-1.0, 11.0, (40, 50))
    z = rng.standard_normal((40, 50)) * 2
    expected = np.clip(np.rint(true + (k.nrs_sd + k.nrs_sd_severity * true) * z), 0.0, 10.0)
    np.testing.assert_array_equal(nrs(true, z, k), expected)
    np.testing.assert_array_equal(nrs(true, 0.0, k), np.clip(np.rint(true), 0.0, 10.0))
    np.testing.assert_array_equal(nrs(4.5, 0.0, k), 4.0)  # half to even, as numpy's rint


def test_draw_channels_are_the_documented_streams() -> None:
    """Intake, enrolment and weekly report draws are the documented NoiseStreams channels and days."""
    from adaptrx.patient import NoiseStreams

    k = ModelConstants()
    cohort = make_cohort("knee_oa", 300, seed=25)
    sim = PatientSimulator(cohort, seed=4)
    ns = NoiseStreams(sim.noise.keys)
    z_intake = ns.normal(["obs_intake"], 0, slots=3)[0, 0]
    np.testing.assert_array_equal(sim.intake["pain"], nrs(sim.state.pain, z_intake[:, 0], k))
    np.testing.assert_array_equal(
        sim.intake["sensitization_score"],
        np.clip(np.rint(25.0 + 22.0 * cohort["sensitization"].to_numpy() + 7.0 * z_intake[:, 1]), 0, 100))
    z_enrol = ns.normal(["enrolment"], 0)[0, 0, :, 0]
    np.testing.assert_array_equal(sim.state.eta, cohort["fluctuation_sd"].to_numpy() * (k.rtm_shift + z_enrol))
    for week in range(8):
        day0 = 1 + 7 * week
        r = sim.step_week(0.5, 2, SUPERVISED)
        z_fn = ns.normal(["obs_function"], day0)[0, 0, :, 0]
        np.testing.assert_array_equal(r.observation.function,
                                      np.clip(np.rint(r.function + k.function_sd * z_fn), 0, 100))
        if (week + 1) % k.capacity_test_every == 0:
            z_cap = ns.normal(["obs_capacity"], day0)[0, 0, :, 0]
            np.testing.assert_array_equal(r.observation.capacity_test, r.capacity * (1.0 + k.capacity_test_cv * z_cap))
        # diary days reported: the diary_missing uniforms against the end-of-week motivation
        u_miss = ns.uniform(["diary_missing"], day0, n_days=7)[0, :, :, 0]
        reported = u_miss >= k.diary_missing + k.diary_missing_motivation * (1.0 - sim.state.motivation)
        np.testing.assert_array_equal(r.observation.diary_days, reported.sum(axis=0))
