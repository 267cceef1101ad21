"""The quick demo (``make demo``): a paired two-arm virtual trial printed as a table."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from adaptrx import demo


def _row(out: str, label: str) -> list[str]:
    """Cells of the table row that starts with ``label`` (label excluded)."""
    for line in out.splitlines():
        if line.startswith(label):
            return line[len(label):].split()
    raise AssertionError(f"no row {label!r} in:\n{out}")


def test_demo_prints_both_arms_and_exercise_lowers_week12_pain(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--n", "300", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = lines[next(i for i, ln in enumerate(lines) if ln.startswith("---")) - 1]
    assert demo.ARM_LABELS["none"] in header and demo.ARM_LABELS["exercise_2x"] in header
    control, exercise, diff = map(float, _row(out, "pain, week 12"))
    assert exercise < control
    assert diff == pytest.approx(exercise - control, abs=0.011)
    baseline = _row(out, "pain at baseline (NRS 0-10)")
    assert baseline[0] == baseline[1]  # same patients in both arms
    match = re.search(r"week-12 pain .*: ([+-][\d.]+) NRS, 95% bootstrap CI \[([+-][\d.]+), ([+-][\d.]+)\]", out)
    assert match, out
    mean, low, high = map(float, match.groups())
    assert low <= mean <= high < 0


def test_demo_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    demo.main(["--n", "50", "--seed", "4"])
    first = capsys.readouterr().out
    demo.main(["--n", "50", "--seed", "4"])
    assert capsys.readouterr().out == first


def test_paired_bootstrap_covers_the_mean_and_is_reproducible() -> None:
    diff = np.random.default_rng(0).normal(-1.0, 1.0, 400)
    a = demo.paired_bootstrap(diff, np.random.default_rng(7))
    b = demo.paired_bootstrap(diff, np.random.default_rng(7))
    assert a == b
    assert a.low < a.mean < a.high
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert a.high - a.low == pytest.approx(2 * 1.96 * se, rel=0.15)

    # large cohorts are resampled in chunks (bounded memory)
    big = demo.paired_bootstrap(np.random.default_rng(1).normal(-1.0, 1.0, 25_000), np.random.default_rng(2))
    assert big.resamples == demo.RESAMPLES and big.low < big.mean < big.high


@pytest.mark.parametrize("args", [["--n", "0"], ["--n", "many"], ["--condition", "gout"], ["--seed", "-1"]])
def test_bad_arguments_exit_2_without_traceback(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "adaptrx.demo", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: argument" in proc.stderr
    assert proc.stdout == ""
