"""Flares are patient-plausible (DESIGN section 3, 2026-12): a flare is an episode of days, a weekly record
holds at most one onset, and repeated flares on an unchanged programme make most patients quit."""

from __future__ import annotations

import numpy as np
import pytest

from adaptrx.envs import CohortEpisodes
from adaptrx.patient import make_cohort
from adaptrx.protocols import get

WEEKS = 26


@pytest.fixture(scope="module")
def runs():
    cohort = make_cohort("knee_oa", 1000, 0, "val")
    episodes = CohortEpisodes(cohort, seed=0, condition="knee_oa", split="val", weeks=WEEKS)
    names = ("none", "population_best", "start_high", "graded_activity", "aggressive")
    return {n: episodes.run(get(n, condition="knee_oa") if n == "population_best" else get(n)) for n in names}


def test_a_week_records_at_most_one_flare_onset(runs) -> None:
    for name, out in runs.items():
        assert set(np.unique(out.flares)) <= {0.0, 1.0}, name


def test_flares_never_outnumber_the_weeks_in_care(runs) -> None:
    for name, out in runs.items():
        in_care = (out.flares * out.in_programme).sum(axis=0)
        assert (in_care <= out.in_programme.sum(axis=0)).all(), name
        assert out.flares.sum(axis=0).max() <= WEEKS, name
        # a flare every other week or more often, for 26 weeks, on any protocol: almost nobody
        assert (out.flares.sum(axis=0) > 13).mean() <= 0.01, name


@pytest.mark.parametrize("name", ["population_best", "start_high", "graded_activity"])
def test_repeated_flares_on_a_programme_that_never_backs_off_end_in_dropout(runs, name: str) -> None:
    """Fixed programmes (no regression after a flare): most patients with 6 or more flares in 26 weeks quit."""
    out = runs[name]
    many = out.flares.sum(axis=0) >= 6
    assert many.sum() >= 30, name  # enough such patients to judge
    assert (out.dropout_week[many] > 0).mean() > 0.6, name


def test_repeated_flares_raise_the_dropout_hazard(runs) -> None:
    """Within one programme, the weekly dropout rate after a second flare in 8 weeks exceeds the rate after a
    first flare (the hazard grows with the flare memory, not only with this week's flare)."""
    out = runs["population_best"]
    flare, active = out.flares > 0, out.in_programme
    recent = np.zeros_like(flare, dtype=int)
    for w in range(WEEKS):
        recent[w] = flare[max(0, w - 7) : w].sum(axis=0)  # flares in the 7 weeks before week w
    drop = np.zeros_like(flare)
    weeks = out.dropout_week
    drop[weeks[weeks > 0] - 1, np.flatnonzero(weeks > 0)] = True
    first = flare & active & (recent == 0)
    repeat = flare & active & (recent >= 1)
    assert first.sum() >= 100 and repeat.sum() >= 100
    assert drop[repeat].mean() > 1.5 * drop[first].mean()
