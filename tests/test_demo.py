"""The quick demo (``adaptrx-demo``): a paired two-arm virtual trial (none vs glad) through the shared comparison
path, printed as a table."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from adaptrx import demo
from adaptrx.experiments.trial.analysis import METRICS


def _row(out: str, metric: str) -> list[str]:
    """Cells of the table row of ``metric`` (its label excluded)."""
    label = METRICS[metric][0]
    for line in out.splitlines():
        if line.startswith(f"| {label} |"):
            return [c.strip() for c in line.strip().strip("|").split("|")][1:]
    raise AssertionError(f"no row {label!r} in:\n{out}")


def _number(cell: str) -> float:
    return float(re.match(r"[+-]?[\d.]+", cell).group())


def test_demo_prints_both_arms_and_glad_lowers_week12_pain(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--n", "300", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| outcome |"))
    assert f"| {demo.CONTROL} | {demo.PROGRAMME} |" in header
    control, programme, diff, p_holm, clinical = _row(out, "pain_w12")
    assert _number(programme) < _number(control)
    assert _number(diff) == pytest.approx(_number(programme) - _number(control), abs=0.011)
    assert p_holm == "<0.001" and clinical.startswith("better")
    # the demo's table is the shared comparison's: the same patients in both arms, paired differences vs none
    trial = demo.run_demo("knee_oa", 300, 1)
    assert (trial.outcomes["none"].baseline_pain == trial.outcomes["glad"].baseline_pain).all()
    diffs = demo.differences(trial, 1).set_index("metric")
    assert diffs.loc["pain_w12", "reference"] == "none" and diffs.loc["pain_w12", "policy"] == "glad"
    assert diff.startswith(f"{diffs.loc['pain_w12', 'diff']:+.2f}")
    match = re.search(r"pain change to week 12 .*: ([+-][\d.]+) NRS, 95% bootstrap CI \[([+-][\d.]+), ([+-][\d.]+)\]",
                      out)
    assert match, out
    mean, low, high = map(float, match.groups())
    assert low <= mean <= high < 0


def test_demo_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    demo.main(["--n", "50", "--seed", "4"])
    first = capsys.readouterr().out
    demo.main(["--n", "50", "--seed", "4"])
    assert capsys.readouterr().out == first


def test_demo_ci_matches_the_paired_differences() -> None:
    """The printed difference is the mean of the per-patient differences, inside its bootstrap CI, about
    +-1.96 standard errors wide."""
    trial = demo.run_demo("knee_oa", 400, 0)
    row = demo.differences(trial, 0).set_index("metric").loc["pain_change_w12"]
    results = trial.results.set_index(["policy", "patient_id"])["pain_change_w12"]
    d = (results.loc["glad"] - results.loc["none"]).to_numpy()
    assert row["diff"] == pytest.approx(d.mean(), abs=1e-12)
    assert row["low"] < row["diff"] < row["high"]
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert row["high"] - row["low"] == pytest.approx(2 * 1.96 * se, rel=0.15)


@pytest.mark.parametrize("args", [["--n", "0"], ["--n", "many"], ["--condition", "gout"], ["--seed", "-1"],
                                  ["--n", str(demo.MAX_PATIENTS + 1)]])
def test_bad_arguments_exit_2_without_traceback(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "adaptrx.demo", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: argument" in proc.stderr
    assert proc.stdout == ""
