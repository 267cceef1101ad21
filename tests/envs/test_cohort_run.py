"""The paired-trial runner: common random numbers, intention-to-treat after dropout, env-identical returns."""

from __future__ import annotations

import numpy as np
import pytest

from adaptrx.envs import compiled_step as engine
from adaptrx.envs.actions import encode_continuous
from adaptrx.envs.episode_engine import EpisodeBatch, env_config
from adaptrx.envs.episodes import CohortEpisodes
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
        batch.E[engine.E_DONE] = 0.0
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
        batch.E[engine.E_DONE] = 0.0
    np.testing.assert_allclose(out.returns, returns, rtol=0, atol=1e-12)
    assert out.sessions_attended.sum() > 0 and len(set(out.sessions_prescribed[:, 0].tolist())) > 2
