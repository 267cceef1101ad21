"""The episode loop (:func:`rollout`) and the paired-trial runner on it: common random numbers, intention-to-treat
after dropout, env-identical returns, horizons, shield counts, the discrete session plan."""

from __future__ import annotations

import numpy as np
import pytest

from adaptrx.envs.actions import MOVE_NAMES, MOVE_REST, MOVE_SESSIONS_DELTA, encode_continuous
from adaptrx.envs.episode_engine import EpisodeBatch, env_config
from adaptrx.envs.episodes import CohortEpisodes, rollout
from adaptrx.patient import make_cohort


class Fixed:
    """The same Box action every week."""

    def __init__(self, action: np.ndarray) -> None:
        self.action = action

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.tile(self.action, (len(obs), 1)), state


HARSH = encode_continuous(1.5, 5, 0)  # +50 %/week, 5 home sessions: many dropouts
WEEKS = 16


@pytest.fixture(scope="module")
def cohort():
    return make_cohort("knee_oa", 300, 5, "val")


def test_same_policy_same_outcomes_and_paired_patients(cohort) -> None:
    episodes = CohortEpisodes(cohort, seed=2, weeks=WEEKS, split="val")
    a = episodes.run(Fixed(HARSH), name="harsh")
    b = episodes.run(Fixed(HARSH), name="harsh")
    assert np.array_equal(a.pain, b.pain) and np.array_equal(a.returns, b.returns)
    rest = episodes.run(Fixed(encode_continuous(1.0, 0, 0)), name="rest")
    assert np.array_equal(rest.baseline_pain, a.baseline_pain)  # same patients, same intake day
    assert rest.sessions_attended.sum() == 0
    other_seed = CohortEpisodes(cohort, seed=3, weeks=WEEKS).run(Fixed(HARSH))
    assert not np.array_equal(other_seed.pain, a.pain)


def test_returns_and_itt_tail_match_the_env_engine(cohort) -> None:
    """Returns equal the env's rewards summed to the end of each episode, and after a dropout the weekly pain
    is the env's ``pain_after_dropout`` (the no-exercise forward simulation)."""
    out = CohortEpisodes(cohort, seed=2, weeks=WEEKS, split="val").run(Fixed(HARSH))
    dropped = np.flatnonzero(out.dropout_week > 0)
    assert 10 <= len(dropped) < len(cohort)  # the harsh programme drives some patients out, not all

    batch = EpisodeBatch(len(cohort), env_config(weeks=WEEKS, split="val"))
    batch.reset(np.arange(len(cohort)), cohort.to_dict("records"), np.full(len(cohort), 2, dtype=np.uint64))
    returns, active, tails = np.zeros(len(cohort)), np.ones(len(cohort), dtype=bool), {}
    for _ in range(WEEKS):
        batch.reopen()
        step = batch.step_actions(np.tile(HARSH, (len(cohort), 1)), False)
        returns += np.where(active, step.reward, 0.0)
        for i, tail in step.pain_after_dropout.items():
            if active[i]:
                tails[i] = tail
        active &= ~step.terminated
    np.testing.assert_allclose(out.returns, returns, rtol=0, atol=1e-12)
    assert set(tails) == set(dropped.tolist())
    for i in dropped:
        w = out.dropout_week[i]
        np.testing.assert_allclose(out.pain[w:, i], tails[i], rtol=0, atol=1e-12)
        assert out.sessions_attended[w:, i].sum() == 0 and not out.in_programme[w:, i].any()


def test_tidy_table_has_the_design_columns(cohort) -> None:
    frame = CohortEpisodes(cohort.head(40), seed=1, weeks=26, split="val").run(Fixed(HARSH), name="x").to_frame()
    for col in ("policy", "split", "patient_id", "seed", "pain_baseline", "pain_w12", "pain_w26", "responder",
                "flares", "dropped_out", "sessions_attended", "capacity_change", "return", "cost"):
        assert col in frame.columns, col
    assert len(frame) == 40 and (frame["policy"] == "x").all() and (frame["split"] == "val").all()


def test_bad_cohort_is_rejected(cohort) -> None:
    with pytest.raises(ValueError, match="cohort"):
        CohortEpisodes(cohort.iloc[:0])
    with pytest.raises(ValueError, match="patient_id"):
        CohortEpisodes(cohort.iloc[[0, 0]])
    with pytest.raises(ValueError, match="weeks"):
        CohortEpisodes(cohort, weeks=0)


class Moves:
    """A cycle of discrete moves (progress, add a session, supervise, hold...) that differs by week."""

    CYCLE = np.array([5, 7, 9, 3, 6, 0, 8, 4, 1, 10, 2, 11])

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        week = np.rint(obs[:, 6] * WEEKS).astype(np.int64)  # the "progress" feature x episode length
        return self.CYCLE[(week + np.arange(len(obs))) % len(self.CYCLE)], state


def test_discrete_moves_match_the_discrete_env_engine(cohort) -> None:
    """With ``discrete=True`` the runner keeps the session plan as ``ProgressionDiscrete-v0`` does: returns equal
    the discrete engine's, and sessions follow the plan (rest weeks have none)."""
    out = CohortEpisodes(cohort, seed=4, weeks=WEEKS, split="val").run(Moves(), discrete=True)
    batch = EpisodeBatch(len(cohort), env_config(weeks=WEEKS, split="val"))
    obs = batch.reset(np.arange(len(cohort)), cohort.to_dict("records"), np.full(len(cohort), 4, dtype=np.uint64))
    returns, active = np.zeros(len(cohort)), np.ones(len(cohort), dtype=bool)
    for _ in range(WEEKS):
        moves, _ = Moves().predict(obs)
        step = batch.step_actions(moves, True)
        returns += np.where(active, step.reward, 0.0)
        active &= ~step.terminated
        obs = step.obs
        batch.reopen()
    np.testing.assert_allclose(out.returns, returns, rtol=0, atol=1e-12)
    assert out.sessions_attended.sum() > 0 and len(set(out.sessions_prescribed[:, 0].tolist())) > 2


def _started(cohort, seed: int, weeks: int = WEEKS) -> EpisodeBatch:
    batch = EpisodeBatch(len(cohort), env_config(weeks=weeks, split="val"))
    batch.reset(np.arange(len(cohort)), cohort.to_dict("records"), np.full(len(cohort), seed, dtype=np.uint64))
    return batch


def test_rollout_without_itt_ends_at_the_last_dropout(cohort) -> None:
    """``itt=False``: a patient's rollout ends at its dropout and the loop stops once every patient has ended; the
    weeks it did step are those of the ITT rollout (same noise)."""
    full = rollout(_started(cohort, 2), Fixed(HARSH), WEEKS, record=("pain",))
    dropped = np.flatnonzero((full.dropout_week > 0) & (full.dropout_week < WEEKS - 2))
    assert len(dropped) >= 2
    batch = _started(cohort.iloc[dropped], 2)
    short = rollout(batch, Fixed(HARSH), WEEKS, itt=False, record=("pain",))
    last = int(full.dropout_week[dropped].max())
    assert last < WEEKS and short.weeks == last and (batch.week == last).all()
    np.testing.assert_array_equal(short.dropout_week, full.dropout_week[dropped])
    np.testing.assert_array_equal(short["pain"], full["pain"][:last, dropped])
    np.testing.assert_array_equal(short.returns, full.returns[dropped])
    assert (short.in_programme.sum(axis=0) == short.dropout_week).all()


def test_rollout_horizons_count_only_their_weeks(cohort) -> None:
    """Per-patient horizons: a patient's weeks past its horizon are stepped (with its policy) but do not count."""
    full = rollout(_started(cohort, 5), Fixed(HARSH), WEEKS, record=("reward", "load"))
    horizon = np.random.default_rng(0).integers(1, WEEKS + 1, len(cohort))
    part = rollout(_started(cohort, 5), Fixed(HARSH), horizon, record=("reward",))
    assert part.weeks == horizon.max()
    weeks = np.arange(part.weeks)[:, None]
    np.testing.assert_array_equal(part.in_programme, full.in_programme[: part.weeks] & (weeks < horizon))
    np.testing.assert_array_equal(part["reward"], full["reward"][: part.weeks])
    expected = np.where(part.in_programme, full["reward"][: part.weeks], 0.0).sum(axis=0)
    np.testing.assert_allclose(part.returns, expected, rtol=0, atol=1e-9)
    gone = ~full.in_programme  # ITT: no exercise after a dropout
    assert (full["load"][gone] == 0.0).all() and (full["load"][~gone] > 0.0).all()


class Always:
    """A shield whose rule binds every week (and changes nothing)."""

    def constrain(self, obs, actions, discrete):
        return actions, [("always",)] * len(obs)


def test_shield_interventions_count_only_weeks_in_the_programme(cohort) -> None:
    out = CohortEpisodes(cohort, seed=2, weeks=WEEKS, split="val").run(Fixed(HARSH), shield=Always())
    weeks_in = np.where(out.dropout_week > 0, out.dropout_week, WEEKS)
    assert (out.dropout_week > 0).any()
    np.testing.assert_array_equal(out.shield_interventions, weeks_in)
    np.testing.assert_array_equal(out.shield_interventions, out.in_programme.sum(axis=0))


def test_discrete_plan_is_kept_per_patient_and_frozen_at_dropout(cohort) -> None:
    """The discrete env's session plan moves with each patient's moves while in the programme; a rest week has no
    sessions and keeps the plan; after a dropout the plan no longer moves."""
    batch = _started(cohort, 4)
    r = rollout(batch, Moves(), WEEKS, discrete=True, transitions=True, record=("sessions",))
    assert r.transitions is not None and (r.dropout_week > 0).any()
    moves = r.transitions.actions[..., 0].astype(np.int64)
    plan = np.full(len(cohort), 3)  # initial_sessions
    for t in range(WEEKS):
        moved = np.clip(plan + MOVE_SESSIONS_DELTA[moves[t]], 1, 5)
        active = r.in_programme[t]
        expected = np.where(MOVE_REST[moves[t]], 0, moved)
        np.testing.assert_array_equal(r["sessions"][t][active], expected[active])
        assert (r["sessions"][t][~active] == 0).all()
        plan = np.where(active, moved, plan)
    np.testing.assert_array_equal(batch.planned_sessions, plan)
    assert "rest" in MOVE_NAMES


class StateProbe:
    """Records the recurrent state and episode starts it is given; its state counts the weeks."""

    def __init__(self) -> None:
        self.seen: list[tuple[object, object]] = []

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        self.seen.append((state, None if episode_start is None else episode_start.copy()))
        return np.tile(encode_continuous(1.0, 2, 0), (len(obs), 1)), (0 if state is None else state + 1)


def test_rollout_carries_the_policy_state_unless_asked_afresh(cohort) -> None:
    probe = StateProbe()
    rollout(_started(cohort.head(3), 1), probe, 4)
    assert [s for s, _ in probe.seen] == [None, 0, 1, 2]
    assert probe.seen[0][1].all() and not any(e.any() for _, e in probe.seen[1:])
    fresh = StateProbe()
    rollout(_started(cohort.head(3), 1), fresh, 4, fresh_state=True)
    assert fresh.seen == [(None, None)] * 4


def test_rollout_rejects_unknown_records(cohort) -> None:
    with pytest.raises(ValueError, match="record"):
        rollout(_started(cohort.head(2), 1), Fixed(HARSH), 2, record=("pain", "nonsense"))
    with pytest.raises(ValueError, match="weeks"):
        rollout(_started(cohort.head(2), 1), Fixed(HARSH), -1)
