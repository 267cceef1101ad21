"""The one paired-comparison path (experiments/trial/comparison.py): planner arms split over worker processes give
the outcomes of one unsplit run, patient by patient, and chunks of different runs are refused."""

from __future__ import annotations

import numpy as np
import pytest

from adaptrx.envs.episodes import EpisodeOutcomes
from adaptrx.experiments.trial.comparison import planner_arm, protocol_arm, run_arms
from adaptrx.patient import make_cohort


@pytest.mark.slow
def test_planner_chunks_in_workers_equal_one_run() -> None:
    cohort = make_cohort("knee_oa", 7, 11, "test")
    env = {"condition": "knee_oa", "split": "test", "weeks": 12}
    arms = [planner_arm("oracle", replicates=1, horizon=4), protocol_arm("pain_monitoring", "knee_oa")]
    one = run_arms(cohort, 4, arms, env, n_jobs=1)
    three = run_arms(cohort, 4, arms, env, n_jobs=3)
    for name in ("oracle", "pain_monitoring"):
        for f in ("patient_id", "returns", "pain", "load", "in_programme", "dropout_week"):
            np.testing.assert_array_equal(getattr(one[name], f), getattr(three[name], f))
    assert three["oracle"].n == 7 and three["oracle"].policy == "oracle"
    with pytest.raises(ValueError, match="parts"):
        EpisodeOutcomes.concat([])
    other = run_arms(cohort.iloc[:2], 5, arms[:1], env)["oracle"]
    with pytest.raises(ValueError, match="different runs"):
        EpisodeOutcomes.concat([one["oracle"], other])
