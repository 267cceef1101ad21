"""``adaptrx recommend``: output formats, and exit code 2 with one clear message for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adaptrx.clinic.cli import main

FAST = ["--particles", "500", "--horizon", "4"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    exe = Path(sys.executable).with_name("adaptrx")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def history_file(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "history.json"
    path.write_text(json.dumps(document))
    return path


def test_recommend_json_and_text(history_file: Path, tmp_path: Path) -> None:
    done = _run("recommend", "--history", str(history_file), "--format", "json", *FAST)
    assert done.returncode == 0, done.stderr
    rec = json.loads(done.stdout)
    assert rec["policy"]["id"] == "dagger-knee_oa-v0" and 1 <= rec["prescription"]["sessions"] <= 5
    out = tmp_path / "rec.txt"
    assert main(["recommend", "--history", str(history_file), "--output", str(out), *FAST]) == 0
    text = out.read_text()
    assert "NEXT WEEK'S PRESCRIPTION" in text and "PROPOSAL AND SAFETY RULES" in text and "WARNINGS" in text
    assert "pain_monitoring" in text and "WHY THIS POLICY" in text


def test_csv_with_intake_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.csv"
    path.write_text("date,load,attended,pain_during,pain_next_morning,rpe\n2026-01-06,0.3,true,4,4,5\n"
                    "2026-01-08,0.3,true,3,3,5\n2026-01-13,0.33,false,,,\n2026-01-15,0.33,true,3,3,6\n")
    args = ["recommend", "--history", str(path), "--format", "json", *FAST]
    assert main([*args, "--condition", "knee_oa", "--age", "58", "--baseline-pain", "6"]) == 0
    assert json.loads(capsys.readouterr().out)["patient"]["weeks_of_history"] == 2
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "patient.condition: missing" in err and "patient.age: missing" in err


@pytest.mark.parametrize(("mutate", "needle"), [
    (lambda d: d["sessions"][2].update(pain_during=12), "sessions.pain_during (row 3): must be in 0-10, got 12"),
    (lambda d: d["patient"].update(condition="gout"), "patient.condition: unknown condition 'gout'"),
    (lambda d: d["sessions"][4].update(date="2026-01-01"), "sessions.date (row 5)"),
    (lambda d: d.update(sessions=[]), "sessions: empty log"),
    (lambda d: d["patient"].update(age="sixty"), "patient.age: must be a number"),
])
def test_bad_history_exits_2_without_traceback(tmp_path: Path, document: dict[str, Any], mutate: Any,
                                               needle: str) -> None:
    mutate(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    done = _run("recommend", "--history", str(path), *FAST)
    assert done.returncode == 2
    assert needle in done.stderr and "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(("args", "needle"), [
    (["recommend", "--history", "MISSING.json"], "no such file"),
    (["recommend", "--history", "HISTORY", "--policy", "NOPE"], "--policy"),
    (["recommend", "--history", "HISTORY", "--horizon", "30"], "--horizon: must be an integer in 4-12"),
    (["recommend", "--history", "HISTORY", "--particles", "5"], "--particles: must be an integer in 100-100000"),
    (["recommend", "--history", "HISTORY", "--seed", "-3"], "--seed: must be a non-negative integer"),
    (["recommend", "--history", "HISTORY", "--format", "xml"], "invalid choice"),
    (["recommend"], "--history"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--policy", "NOPE"], "--policy: "),
    (["serve", "--particles", "3"], "--particles: must be an integer in 100-100000"),
])
def test_bad_options_exit_2(tmp_path: Path, history_file: Path, args: list[str], needle: str) -> None:
    args = [str(history_file) if a == "HISTORY" else str(tmp_path / a) if a in ("MISSING.json", "NOPE") else a
            for a in args]
    done = _run(*args)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_bytes(bytes(range(256)) * 10)
    done = _run("recommend", "--history", str(path))
    assert done.returncode == 2 and "history:" in done.stderr and "Traceback" not in done.stderr


def test_plan_option(history_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recommend", "--history", str(history_file), "--plan", "sessions=4,load=0.3", "--format", "json",
                 *FAST]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["forecast"]["clinician_plan"]["requested"]["sessions"] == 4 and "clinician" in rec["forecast"]["plans"]
    assert main(["recommend", "--history", str(history_file), "--plan", "sessions=9", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--plan: plan.sessions" in err and "Traceback" not in err
