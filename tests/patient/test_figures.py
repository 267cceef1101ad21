"""Calibration figures: files are written, are real PNGs, and the band helper is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adaptrx.patient.calibration import run_suite
from adaptrx.patient.calibration_arms import ArmOutcome
from adaptrx.patient.figures import calibration_figures, trajectory_band

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED = {
    "pain_trajectories_knee_oa.png",
    "intensity_and_abrupt_knee_oa.png",
    "conditions.png",
    "dropout_curves.png",
}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, ArmOutcome]:
    _, out = run_suite(n=200, progress=False)
    return out


def _assert_pngs(paths: list[Path], out_dir: Path) -> None:
    assert {p.name for p in paths} == EXPECTED
    for p in paths:
        assert p.parent == out_dir
        assert p.is_file(), p
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC, p
        assert len(data) > 10_000, (p, len(data))


def test_calibration_figures_written(outcomes: dict[str, ArmOutcome], tmp_path: Path) -> None:
    paths = calibration_figures(outcomes, tmp_path)
    _assert_pngs(paths, tmp_path)


def test_missing_arms_are_skipped(outcomes: dict[str, ArmOutcome], tmp_path: Path) -> None:
    drop = {"knee_oa/glad_2x", "knee_oa/home_16w", "fibromyalgia/none", "fibromyalgia/exercise_2x"}
    partial = {k: v for k, v in outcomes.items() if k not in drop}
    paths = calibration_figures(partial, tmp_path / "partial")
    _assert_pngs(paths, tmp_path / "partial")


def test_trajectory_band_known_array() -> None:
    values = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [2.0, 4.0, 6.0, 8.0]])
    mean, lo, hi = trajectory_band(values)
    np.testing.assert_allclose(mean, [2.5, 0.0, 5.0], atol=1e-12)
    assert np.all(lo <= mean) and np.all(mean <= hi)
    # SD (ddof=1) of [1, 2, 3, 4] is sqrt(5/3); of [2, 4, 6, 8] twice that; n = 4
    se = np.array([np.sqrt(5.0 / 3.0) / 2.0, 0.0, 2.0 * np.sqrt(5.0 / 3.0) / 2.0])
    np.testing.assert_allclose(hi - lo, 2.0 * 1.96 * se, rtol=0, atol=1e-9)
    np.testing.assert_allclose(hi - mean, 1.96 * se, rtol=0, atol=1e-9)
    np.testing.assert_allclose(mean - lo, 1.96 * se, rtol=0, atol=1e-9)


def test_trajectory_band_single_patient_has_zero_width() -> None:
    mean, lo, hi = trajectory_band(np.array([[3.0], [4.0]]))
    np.testing.assert_array_equal(mean, [3.0, 4.0])
    np.testing.assert_array_equal(lo, mean)
    np.testing.assert_array_equal(hi, mean)
