"""History parsing and validation: every bad input is named by field and row."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from adaptrx.clinic.history import CONDITION_ALIASES, MAX_BYTES, MAX_SESSIONS, HistoryError, load_history, parse_history

CSV = """# condition: knee_oa
# age: 61
# baseline_pain: 6
date,load,attended,pain_during,pain_next_morning,rpe
2026-01-06,0.3,true,4,5,5
2026-01-08,0.3,yes,3,4,5
2026-01-13,0.33,no,,,
2026-01-15,0.33,1,3,3,6
"""


def _error(data: Any, **kwargs: Any) -> HistoryError:
    with pytest.raises(HistoryError) as info:
        parse_history(data, **kwargs)
    return info.value


def test_json_round_trip(document: dict[str, Any]) -> None:
    h = parse_history(json.dumps(document))
    assert h.intake.condition == "knee_oa"
    assert len(h.sessions) == len(document["sessions"])
    again = parse_history(h.to_dict())
    assert again.to_dict() == h.to_dict()
    weeks = h.weeks()
    assert list(weeks["week"]) == list(range(h.n_weeks))
    assert (weeks["attended"] <= weeks["sessions"]).all()


def test_csv_with_intake_comments() -> None:
    h = parse_history(CSV)
    assert h.intake.age == 61 and h.intake.baseline_pain == 6
    assert h.sessions["attended"].tolist() == [True, True, False, True]
    assert np.isnan(h.sessions["pain_during"].iloc[2])
    weeks = h.weeks()
    assert weeks["sessions"].tolist() == [2, 2] and weeks["attended"].tolist() == [2, 1]
    assert weeks["session_pain_mean"].tolist() == [3.5, 3.0]
    assert h.start.isoformat() == "2026-01-05"  # the day before the first session


def test_csv_intake_from_caller_overrides() -> None:
    body = CSV.split("\n", 3)[3]  # no intake comment lines
    with pytest.raises(HistoryError, match=r"patient\.condition"):
        parse_history(body)
    h = parse_history(body, intake={"condition": "chronic_low_back_pain", "age": 50, "baseline_pain": 5})
    assert h.intake.condition == "chronic_low_back_pain"


@pytest.mark.parametrize(("written", "condition"), [
    ("CLBP", "chronic_low_back_pain"), ("clbp", "chronic_low_back_pain"), ("LBP", "chronic_low_back_pain"),
    ("knee OA", "knee_oa"), ("Knee-OA", "knee_oa"), ("KNEE_OA", "knee_oa"), ("fibro", "fibromyalgia"),
    ("FM", "fibromyalgia"), ("lss", "lumbar_spinal_stenosis"), ("Lumbar spinal stenosis", "lumbar_spinal_stenosis"),
])
def test_condition_aliases_any_case(written: str, condition: str) -> None:
    body = CSV.split("\n", 3)[3]
    h = parse_history(body, intake={"condition": written, "age": 50, "baseline_pain": 5})
    assert h.intake.condition == condition


def test_unknown_condition_lists_names_and_aliases() -> None:
    body = CSV.split("\n", 3)[3]
    with pytest.raises(HistoryError, match=r"patient\.condition.*'hip'.*knee_oa.*clbp.*fibro.*lss") as info:
        parse_history(body, intake={"condition": "hip", "age": 50, "baseline_pain": 5})
    assert all(alias in str(info.value) for alias in CONDITION_ALIASES)


def test_weeks_without_sessions_are_kept(document: dict[str, Any]) -> None:
    document["sessions"] = [s for s in document["sessions"] if not "2026-01-13" <= s["date"] <= "2026-01-26"]
    h = parse_history(document)
    weeks = h.weeks()
    assert weeks["sessions"].tolist()[1:3] == [0, 0]
    assert weeks["load"].iloc[1] == weeks["load"].iloc[0]  # carried forward


@pytest.mark.parametrize(("mutate", "field", "row"), [
    (lambda d: d["sessions"][2].update(pain_during=11), "sessions.pain_during", 3),
    (lambda d: d["sessions"][0].update(pain_next_morning=-1), "sessions.pain_next_morning", 1),
    (lambda d: d["sessions"][4].update(load=-0.2), "sessions.load", 5),
    (lambda d: d["sessions"][4].update(load=40), "sessions.load", 5),
    (lambda d: d["sessions"][1].update(load="heavy"), "sessions.load", 2),
    (lambda d: d["sessions"][1].update(attended="maybe"), "sessions.attended", 2),
    (lambda d: d["sessions"][1].pop("date"), "sessions.date", 2),
    (lambda d: d["sessions"][1].update(date="2026-13-01"), "sessions.date", 2),
    (lambda d: d["sessions"][3].update(date=d["sessions"][1]["date"]), "sessions.date", 4),
    (lambda d: d["sessions"][2].update(date=d["sessions"][2]["date"][:-2] + "01"), "sessions.date", 3),
    (lambda d: d["sessions"][2].update(rpe=True), "sessions.rpe", 3),
    (lambda d: d["sessions"][2].update(shoe_size=44), "sessions.shoe_size", 3),
    (lambda d: d["sessions"][2].update(delivery="teleport"), "sessions.delivery", 3),
    (lambda d: d["patient"].update(condition="tennis_elbow"), "patient.condition", None),
    (lambda d: d["patient"].update(age="old"), "patient.age", None),
    (lambda d: d["patient"].update(age=12), "patient.age", None),
    (lambda d: d["patient"].pop("baseline_pain"), "patient.baseline_pain", None),
    (lambda d: d["patient"].update(fear_score=60), "patient.fear_score", None),
    (lambda d: d.update(sessions=[]), "sessions", None),
    (lambda d: d.update(sessions="none"), "sessions", None),
    (lambda d: d.pop("sessions"), "sessions", None),
    (lambda d: d.update(extra=1), "history", None),
])
def test_bad_json_fields_are_named(document: dict[str, Any], mutate: Any, field: str, row: int | None) -> None:
    mutate(document)
    err = _error(json.dumps(document))
    assert any(e.field == field and e.row == row for e in err.errors), err.errors
    body = err.to_dict()
    assert body["error"] and body["detail"][0]["field"]
    json.dumps(body)  # JSON-ready


def test_unattended_session_with_reports_is_flagged(document: dict[str, Any]) -> None:
    document["sessions"][0].update(attended=False)
    err = _error(document)
    assert {e.field for e in err.errors} & {"sessions.pain_during", "sessions.rpe", "sessions.pain_next_morning"}
    assert all(e.row == 1 for e in err.errors)


def test_more_than_five_sessions_a_week(document: dict[str, Any]) -> None:
    start = "2026-01-%02d"
    document["sessions"] = [{"date": start % d, "load": 0.3, "attended": True} for d in range(6, 13)]
    err = _error(document)
    assert err.errors[0].field == "sessions.date" and err.errors[0].row == 6
    assert "at most 5" in str(err)


@pytest.mark.parametrize(("data", "needle"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "history"),
    (b"\xff\xfe\xfa", "UTF-8"),
    ("", "empty"),
    ("{not json", "not valid JSON"),
    ('{"patient": {}, "patient": {}}', "duplicate key"),
    ('{"patient": {"age": NaN}}', "not valid JSON"),
    ("[1, 2, 3]", "object"),
    ("just some words\nand more words\n", "missing column"),
    ("date,load\n2026-01-01,0.3\n", "sessions.attended"),
    ("date,load,attended,load\n", "more than once"),
    ("date,load,attended\n2026-01-06,0.3\n", "cells"),
])
def test_not_a_history(data: Any, needle: str) -> None:
    err = _error(data)
    assert needle in str(err)


def test_size_limits(tmp_path: Any, document: dict[str, Any]) -> None:
    big = " " * (MAX_BYTES + 1)
    assert "limit" in str(_error(big))
    path = tmp_path / "big.json"
    path.write_text(json.dumps(document) + " " * MAX_BYTES)
    with pytest.raises(HistoryError, match="limit"):
        load_history(path)
    many = {"patient": document["patient"],
            "sessions": [{"date": "2026-01-06", "load": 0.3, "attended": True}] * (MAX_SESSIONS + 1)}
    assert f"limit of {MAX_SESSIONS}" in str(_error(many))


def test_load_history_files(tmp_path: Any, document: dict[str, Any]) -> None:
    (tmp_path / "h.json").write_text(json.dumps(document))
    (tmp_path / "h.csv").write_text(CSV)
    assert load_history(tmp_path / "h.json").n_weeks == 8
    assert load_history(tmp_path / "h.csv").n_weeks == 2
    with pytest.raises(HistoryError, match="no such file"):
        load_history(tmp_path / "missing.csv")


def test_errors_are_listed_together(document: dict[str, Any]) -> None:
    document["sessions"][0]["pain_during"] = 12
    document["sessions"][5]["rpe"] = -3
    document["patient"]["age"] = 5
    err = _error(document)
    assert {(e.field, e.row) for e in err.errors} == {("patient.age", None), ("sessions.pain_during", 1),
                                                      ("sessions.rpe", 6)}
    assert "and 2 more" in str(err)
