"""Room to personalize (DESIGN.md 2.6), on a reduced plan grid so the test stays fast."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from adaptrx.patient.cohort import make_cohort
from adaptrx.patient.constants import HOME_ALONE, SUPERVISED
from adaptrx.patient.personalization import Plan, evaluate_plans, room_to_personalize

PLANS = [
    Plan(s, p, n, d)
    for s, p, n, d in itertools.product((0.3, 0.6), (0.0, 0.08), (1, 2, 4), (HOME_ALONE, SUPERVISED))
]


@pytest.fixture(scope="module")
def result():
    return room_to_personalize(n=300, seed=3, plans=PLANS, selection_seeds=3)


def test_patients_need_different_plans(result) -> None:
    assert result.distinct_plans >= 8
    assert result.top_plan_share < 0.5


def test_personal_plans_beat_population_plan_on_held_out_noise(result) -> None:
    # Chosen on averaged seeds, valued on a held-out seed: a real (if small) gain in the objective.
    assert result.personal["objective"] - result.population["objective"] > 0.05


def test_choosing_on_one_seed_overfits_noise() -> None:
    """Why the design values choices on a second seed: a per-patient argmax on one seed's noise looks better
    in-sample than it is."""
    cohort = make_cohort("knee_oa", 200, 5, "train")
    a = evaluate_plans(cohort, PLANS, seed=11)
    b = evaluate_plans(cohort, PLANS, seed=12)
    cols = np.arange(200)
    own = np.argmax(a["objective"], axis=0)
    optimism = a["objective"][own, cols].mean() - b["objective"][own, cols].mean()
    assert optimism > 0.2


@pytest.fixture(scope="module", params=[0, 1])
def full_grid(request: pytest.FixtureRequest):
    """The full plan grid at the size the model card reports (1000 patients, 4 selection seeds + 1 held-out
    seed), on two cohorts."""
    return room_to_personalize(n=1000, seed=request.param)


@pytest.mark.slow
def test_personal_plans_cut_harm_at_equal_pain(full_grid) -> None:
    """What room there is with patient-plausible flares (at most one flare onset a week, repeated flares end in
    dropout): personal fixed plans cut flares + dropouts by about 18-19 % (measured) at slightly lower pain and
    higher function, with many different plans chosen."""
    r = full_grid
    assert r.harm_reduction >= 0.15
    assert r.pain_gain >= 0.0 and r.function_gain >= 1.0
    assert r.distinct_plans >= 20 and r.top_plan_share < 0.5


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="DESIGN 2.6 margin not met since flares became patient-plausible "
                   "(2026-12): flares + dropouts -17.7 % / -19.4 %, pain -0.09 / -0.08 NRS, function +1.9 / +1.8 "
                   "points on cohorts 0 / 1 (needs >= 30 %, 0.3 NRS or 5 points); see envs/MODEL_CARD.md")
def test_design_margin(full_grid) -> None:
    """DESIGN.md 2.6: personal fixed plans reach a clinically meaningful margin over the population plan."""
    assert full_grid.meets_design_margin
