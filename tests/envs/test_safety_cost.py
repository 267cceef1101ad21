"""The safety cost counts dropout (DESIGN section 3, 2026-12): ending an episode never lowers it."""

from __future__ import annotations

import numpy as np
import pytest

from adaptrx.envs import CohortEpisodes
from adaptrx.envs.reward import DROPOUT_COST_PER_WEEK, DROPOUT_EVENT_COST, dropout_cost
from adaptrx.patient import make_cohort
from adaptrx.protocols import get

WEEKS = 26


class Overload:
    """Drives patients out early: +50 % load a week, 5 unsupervised sessions (home alone)."""

    name = "overload"

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return np.tile(np.array([1.0, 1.0, -1.0], dtype=np.float32), (len(obs), 1)), state


@pytest.fixture(scope="module")
def runs():
    cohort = make_cohort("knee_oa", 1000, 0, "val")
    episodes = CohortEpisodes(cohort, seed=0, condition="knee_oa", split="val", weeks=WEEKS)
    return {name: episodes.run(policy, name=name) for name, policy in
            (("none", get("none")), ("overload", Overload()), ("aggressive", get("aggressive")),
             ("pain_monitoring", get("pain_monitoring")))}


def test_dropout_cost_is_the_event_and_every_remaining_week() -> None:
    assert DROPOUT_EVENT_COST > 0  # even a dropout in the last week costs
    expected = DROPOUT_EVENT_COST + DROPOUT_COST_PER_WEEK * np.array([0, 3, 25, 0])
    np.testing.assert_array_equal(dropout_cost(np.array([0, 3, 25, -1])), expected)


def test_an_episode_that_ends_early_costs_at_least_its_lost_weeks(runs) -> None:
    for name, out in runs.items():
        dropped = out.dropout_week > 0
        lost = WEEKS - out.dropout_week[dropped]
        in_care = (out.flares * out.in_programme).sum(axis=0)[dropped]  # flare weeks in care are unsafe weeks
        assert (out.cost[dropped] >= DROPOUT_EVENT_COST + lost + in_care - 1e-9).all(), name
        # never more than one unsafe week per week, plus the dropout event
        assert (out.cost <= WEEKS + DROPOUT_EVENT_COST * dropped + 1e-9).all(), name


def test_driving_patients_out_early_costs_more_than_doing_nothing(runs) -> None:
    out = runs["overload"]
    early = (out.dropout_week > 0) & (out.dropout_week <= 3)
    assert early.sum() >= 30  # the policy does make patients quit in weeks 1-3
    # paired, on the same patients: those it drove out early cost far more than the same patients untreated
    assert out.cost[early].mean() > runs["none"].cost[early].mean() + 15.0
    assert out.cost.mean() > runs["none"].cost.mean() + 5.0


def test_the_most_harmful_protocol_is_not_the_safest(runs) -> None:
    """aggressive loses most of its patients; with dropouts counted it costs more than pain monitoring."""
    assert (runs["aggressive"].dropout_week > 0).mean() > 0.6
    assert runs["aggressive"].cost.mean() > runs["pain_monitoring"].cost.mean()
