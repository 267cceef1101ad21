"""The calibration suite (DESIGN.md 2.5): every target T1-T13 in its accepted range, ~2000 patients per arm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cross_machine import MEAN_REL

from adaptrx.patient.calibration import CALIBRATION_SEED, Target, format_table, run_suite

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def suite() -> dict[str, Target]:
    targets, _ = run_suite(n=2000, seed=CALIBRATION_SEED, progress=False)
    return {t.id: t for t in targets}


EXPECTED_IDS = [
    "T1", "T1b", "T2", "T3", "T3b", "T4", "T4b", "T5", "T5b", "T6", "T6b", "T6c", "T6d", "T7", "T7b", "T7c",
    "T8", "T9", "T9b", "T10", "T11", "T12", "T13", "T13b", "T13c", "T13d", "T13db", "T13dc",
]


def test_every_design_row_is_covered(suite: dict[str, Target]) -> None:
    assert sorted(suite) == sorted(EXPECTED_IDS)
    rows = {tid.rstrip("bcd") for tid in suite}
    assert rows == {f"T{i}" for i in range(1, 14)}


@pytest.mark.parametrize("target_id", EXPECTED_IDS)
def test_target_in_accepted_range(suite: dict[str, Target], target_id: str) -> None:
    t = suite[target_id]
    assert t.low <= t.simulated <= t.high, (
        f"{t.id} {t.scenario}: simulated {t.simulated:.3f} not in [{t.low}, {t.high}]"
    )


def test_committed_report_matches_the_model(suite: dict[str, Target]) -> None:
    """envs/calibration/targets.json (shown in MODEL_CARD.md) must be regenerated when the model changes.

    Compared at MEAN_REL (1e-6 relative): the committed file was written on another machine. The suite is
    numpy/numba only and has reproduced bit for bit across the machines compared so far; the tolerance admits
    the last-bit differences another CPU's vectorized math could bring, and still fails on one simulated
    patient's changed event (about 1e-4 relative on a 2000-patient arm)."""
    committed = json.loads((ROOT / "envs" / "calibration" / "targets.json").read_text())
    assert {row["id"] for row in committed} == set(suite)
    for row in committed:
        assert row["simulated"] == pytest.approx(suite[row["id"]].simulated, rel=MEAN_REL, abs=1e-9), (
            f"{row['id']}: committed {row['simulated']} vs simulated {suite[row['id']].simulated}; "
            "run `make calibrate` and update envs/MODEL_CARD.md"
        )


def test_model_card_shows_the_current_table(suite: dict[str, Target]) -> None:
    card = (ROOT / "envs" / "MODEL_CARD.md").read_text()
    assert format_table(list(suite.values())) in card, "run `make calibrate` to refresh envs/MODEL_CARD.md"
