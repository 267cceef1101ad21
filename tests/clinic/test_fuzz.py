"""Fuzzing the clinic's inputs: hypothesis over the structure of JSON and CSV histories, through
:func:`parse_history`, the ``adaptrx recommend`` command line and the HTTP API.

The properties (from the issue): every malformed input yields a :class:`HistoryError` whose problems each name a
field (``parse_history``), exit code 2 with one message per problem naming its field and no traceback (CLI), or a
4xx JSON error body (HTTP) - never another exception, a traceback or a 5xx - and the server keeps serving
afterwards. Inputs that happen to be valid must give a usable :class:`History`.

Valid requests run a patient fit and a forecast (slow), so the CLI and HTTP fuzzing sends malformed inputs only
(a drawn input that ``parse_history`` accepts is filtered out, or, over HTTP, allowed a 200 that is then checked).

Every test counts the cases it executed in :data:`COUNTS`, asserts a minimum and prints one summary line
(``pytest -s``). The example budgets are the ``N_*`` constants below; all runs are derandomized.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import datetime as dt
import io
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from adaptrx.clinic.cli import main
from adaptrx.clinic.history import (
    INTAKE_FIELDS,
    MAX_BYTES,
    MAX_ERRORS,
    MAX_SESSIONS,
    MAX_SESSIONS_PER_WEEK,
    MAX_WEEKS,
    SESSION_COLUMNS,
    History,
    HistoryError,
    load_history,
    parse_history,
)

pytestmark = pytest.mark.slow  # seconds each: a browser, a server or thousands of generated inputs

#: Examples per fuzz test (explicit ``@example`` cases come on top).
N_JSON_MUTATED = 400
N_JSON_ARBITRARY = 250
N_RAW = 250
N_CSV = 400
N_CLI = 60
N_CLI_OPTIONS = 40
N_HTTP = 200

#: Cases each fuzz test executed (filled as the tests run; ``pytest -s`` prints them).
COUNTS: dict[str, int] = {}



def fuzz(n: int) -> settings:
    """Deterministic hypothesis settings running ``n`` examples."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


_FIELD = re.compile(r"(history|patient|sessions)(\.|$)")
_HTTP_FIELD = re.compile(r"(history|patient|sessions|query|horizon|plot|content-type|content-length)(\.|$)")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NUMERIC_INTAKE = {"age": (18, 100), "baseline_pain": (0, 10), "sensitization_score": (0, 100),
                   "fear_score": (11, 44), "preferred_sessions": (1, 5), "function": (0, 100)}
_NUMERIC_SESSION = {"load": (0, 1.5), "pain_during": (0, 10), "pain_next_morning": (0, 10), "rpe": (0, 10),
                    "pain_before": (0, 10)}

#: A small valid history using every field (week 1 starts 2026-01-06).
BASE_DOC: dict[str, Any] = {
    "patient": {"condition": "knee_oa", "age": 61, "baseline_pain": 6, "sex": "F", "sensitization_score": 40,
                "fear_score": 22, "preferred_sessions": 3, "function": 55, "modality": "resistance",
                "intake_date": "2026-01-05", "patient_id": "P-001"},
    "sessions": [
        {"date": "2026-01-06", "load": 0.3, "attended": True, "pain_during": 4, "pain_next_morning": 5, "rpe": 5,
         "pain_before": 4, "delivery": "supervised", "flare": False},
        {"date": "2026-01-08", "load": 0.3, "attended": True, "pain_during": 3.5, "pain_next_morning": 4, "rpe": 5,
         "delivery": "remote"},
        {"date": "2026-01-13", "load": 0.33, "attended": False, "pain_before": 4},
        {"date": "2026-01-15", "load": 0.33, "attended": True, "pain_during": 3, "pain_next_morning": 3, "rpe": 6,
         "pain_before": 3.5, "delivery": "home", "flare": True},
    ],
}


def _csv_table(doc: dict[str, Any]) -> list[list[str]]:
    """The sessions of ``doc`` as CSV rows (header first), every column present."""
    def cell(value: Any) -> str:
        return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return [list(SESSION_COLUMNS)] + [[cell(s.get(c)) for c in SESSION_COLUMNS] for s in doc["sessions"]]


BASE_INTAKE_LINES = [f"# {k}: {v}" for k, v in BASE_DOC["patient"].items()]
BASE_TABLE = _csv_table(BASE_DOC)
BASE_CSV = "\n".join(BASE_INTAKE_LINES + [",".join(r) for r in BASE_TABLE]) + "\n"


def _count(name: str, n: int, minimum: int, extra: str = "") -> None:
    COUNTS[name] = n
    print(f"\n[fuzz] {name}: {n} cases{' (' + extra + ')' if extra else ''}")
    assert n >= minimum, f"{name}: only {n} cases ran, expected at least {minimum}"


# ---------------------------------------------------------------------------------------------- strategies
NAN_LIKE = ["NaN", "nan", "inf", "-inf", "Infinity", "-Infinity", "1e999", "-1e999", "", " ", "null", "None",
            "true", "false", "0x10", "1_000", "٣", "²", "５", "5", "5.0", " 5 ", "1e-400", "+5", "--5", "5,5"]
DATE_LIKE = ["0001-01-01", "0001-01-02", "9999-12-31", "9999-12-25", "2026-02-30", "2026-W01-1", "2026W011",
             "20260106", "2026-1-6", "2026-01-06T00:00", "2026-01-06 ", " 2026-01-06", "２０２６-01-06",
             "2026-13-01", "1899-12-31", "2026-01-06\n", "2026-001", "06/01/2026", "2026-01-0６", "+2026-01-06"]
ENUM_LIKE = ["knee_oa", "KNEE_OA", "knee oa", "gout", "F", "M", "f", "X", "resistance", "Resistance", "aerobic",
             "mind_body", "mixed", "supervised", "remote", "home", "teleport", "yes", "no", "y", "n", "1", "0",
             "true", "TRUE", "false", "maybe"]
HUGE = [10**400, -(10**400), 10**20, 2**63, -(2**63), 1e308, -1e308, 5e-324, -0.0, 1e-310]

scalars = (st.none() | st.booleans() | st.integers() | st.sampled_from(HUGE)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
           | st.sampled_from(NAN_LIKE + DATE_LIKE + ENUM_LIKE))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
keys = st.sampled_from([*INTAKE_FIELDS, *SESSION_COLUMNS, "patient", "sessions", "", " date", "Date", "__proto__",
                        "\x00", "\ud800", "a\nb", "é"]) | st.text(max_size=12)


def _near(low: float, high: float) -> st.SearchStrategy[Any]:
    """Numbers on, just inside and just outside ``[low, high]``, as numbers or (sometimes) text."""
    edges = [low, high, low - 1e-9, high + 1e-9, low - 1, high + 1, (low + high) / 2, int(high) + 1, -low - 1]
    number = st.sampled_from(edges) | st.floats(min_value=low - 5, max_value=high + 5) | st.integers(-5, 200)
    return number | number.map(str)


def _dicts_in(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The objects of a (possibly already mangled) document that can be mutated: (kind, object)."""
    out: list[tuple[str, dict[str, Any]]] = [("doc", doc)]
    if isinstance(doc.get("patient"), dict):
        out.append(("patient", doc["patient"]))
    if isinstance(doc.get("sessions"), list):
        out += [("session", s) for s in doc["sessions"] if isinstance(s, dict)]
    return out


def _fields_of(kind: str) -> list[str]:
    return {"doc": ["patient", "sessions"], "patient": list(INTAKE_FIELDS), "session": list(SESSION_COLUMNS)}[kind]


def _op_drop(draw: Any, doc: dict[str, Any]) -> None:
    _, target = draw(st.sampled_from(_dicts_in(doc)))
    if target:
        target.pop(draw(st.sampled_from(sorted(target))))


def _op_unknown_key(draw: Any, doc: dict[str, Any]) -> None:
    _, target = draw(st.sampled_from(_dicts_in(doc)))
    target[draw(keys)] = draw(json_values)


def _op_wrong_type(draw: Any, doc: dict[str, Any]) -> None:
    kind, target = draw(st.sampled_from(_dicts_in(doc)))
    target[draw(st.sampled_from(_fields_of(kind)))] = draw(json_values)


def _op_out_of_range(draw: Any, doc: dict[str, Any]) -> None:
    kind, target = draw(st.sampled_from(_dicts_in(doc)))
    ranges = _NUMERIC_INTAKE if kind == "patient" else _NUMERIC_SESSION if kind == "session" else None
    if ranges:
        name = draw(st.sampled_from(sorted(ranges)))
        target[name] = draw(_near(*ranges[name]))


def _op_date(draw: Any, doc: dict[str, Any]) -> None:
    kind, target = draw(st.sampled_from(_dicts_in(doc)))
    if kind in ("patient", "session"):
        day = st.dates().map(dt.date.isoformat) | st.sampled_from(DATE_LIKE)
        target["intake_date" if kind == "patient" else "date"] = draw(day)


def _op_sessions(draw: Any, doc: dict[str, Any]) -> None:
    """Reorder, duplicate, collide, empty, bloat or spread out the session list."""
    sessions = doc.get("sessions")
    if not isinstance(sessions, list) or not sessions:
        doc["sessions"] = draw(st.sampled_from([[], [{}], None, [None], "sessions", {"0": {}}]))
        return
    how = draw(st.sampled_from(["shuffle", "duplicate", "same_date", "empty", "too_many", "crowded_week",
                                "too_long", "reverse", "not_objects"]))
    first = sessions[0] if isinstance(sessions[0], dict) else {}
    if how == "shuffle":
        doc["sessions"] = draw(st.permutations(sessions))
    elif how == "duplicate":
        i = draw(st.integers(0, len(sessions) - 1))
        sessions.insert(draw(st.integers(0, len(sessions))), copy.deepcopy(sessions[i]))
    elif how == "same_date" and len(sessions) > 1 and all(isinstance(s, dict) for s in sessions):
        i, j = draw(st.integers(0, len(sessions) - 1)), draw(st.integers(0, len(sessions) - 1))
        sessions[i]["date"] = sessions[j].get("date")
    elif how == "empty":
        doc["sessions"] = []
    elif how == "too_many":
        doc["sessions"] = [copy.deepcopy(first) for _ in range(MAX_SESSIONS + draw(st.integers(1, 3)))]
    elif how == "crowded_week":
        doc["sessions"] = [{**first, "date": f"2026-01-{d:02d}"} for d in range(6, 6 + MAX_SESSIONS_PER_WEEK + 1)]
    elif how == "too_long":
        last = dt.date(2026, 1, 5) + dt.timedelta(days=7 * draw(st.integers(MAX_WEEKS - 1, 60_000)) + 1)
        doc["sessions"] = [first, {**first, "date": min(last, dt.date.max).isoformat()}]
    elif how == "reverse":
        sessions.reverse()
    elif how == "not_objects":
        sessions[draw(st.integers(0, len(sessions) - 1))] = draw(json_values)


def _op_section(draw: Any, doc: dict[str, Any]) -> None:
    doc[draw(st.sampled_from(["patient", "sessions"]))] = draw(json_values)


def _op_deep(draw: Any, doc: dict[str, Any]) -> None:
    kind, target = draw(st.sampled_from(_dicts_in(doc)))
    value: Any = draw(scalars)
    for _ in range(draw(st.integers(1, 200))):
        value = [value] if draw(st.booleans()) else {"k": value}
    target[draw(st.sampled_from(_fields_of(kind)))] = value


OPS: list[Callable[[Any, dict[str, Any]], None]] = [_op_drop, _op_unknown_key, _op_wrong_type, _op_out_of_range,
                                                    _op_date, _op_sessions, _op_section, _op_deep]


@st.composite
def mutated_documents(draw: Any) -> dict[str, Any]:
    """The valid :data:`BASE_DOC` after 1-4 structural mutations."""
    doc = copy.deepcopy(BASE_DOC)
    for _ in range(draw(st.integers(1, 4))):
        draw(st.sampled_from(OPS))(draw, doc)
    return doc


@st.composite
def mutated_csvs(draw: Any) -> tuple[bytes, dict[str, str] | None]:
    """The valid :data:`BASE_CSV` after 1-4 mutations of its columns, cells, rows and intake lines, written with
    a drawn line ending, quoting and encoding, then perhaps damaged at the byte level; plus caller intake."""
    intake = list(BASE_INTAKE_LINES)
    table = [list(r) for r in BASE_TABLE]
    garbage = (st.sampled_from(NAN_LIKE + DATE_LIKE + ENUM_LIKE + ['"', '""', 'a,b', "x\ny", "\x00", "'", "\r",
                                                                   "9" * 5000, "\ufeff", "a\"b", "#"])
               | st.text(max_size=15) | _near(0, 10).map(str))
    for _ in range(draw(st.integers(1, 4))):
        width = len(table[0]) if table else 0
        how = draw(st.sampled_from(["drop_col", "rename_col", "dup_col", "permute_cols", "cell", "ragged",
                                    "rows", "intake", "intake_after_header"]))
        if how in ("drop_col", "rename_col", "dup_col") and width:
            j = draw(st.integers(0, width - 1))
            if how == "drop_col":
                table = [r[:j] + r[j + 1:] for r in table]
            elif how == "rename_col":
                names = [*(c.upper() for c in SESSION_COLUMNS), f" {table[0][j]} ", "", "unknown", "date", "load",
                         "attended", "pain during"]
                table[0][j] = draw(st.sampled_from(names) | st.text(max_size=8))
            else:
                table = [[*r, r[j] if j < len(r) else ""] for r in table]
        elif how == "permute_cols" and width:
            order = draw(st.permutations(range(width)))
            table = [[r[k] if k < len(r) else "" for k in order] for r in table]
        elif how == "cell" and width:
            i, j = draw(st.integers(0, len(table) - 1)), draw(st.integers(0, width - 1))
            if j < len(table[i]):
                table[i][j] = draw(garbage)
        elif how == "ragged" and len(table) > 1:
            i = draw(st.integers(1, len(table) - 1))
            table[i] = table[i][:-1] if draw(st.booleans()) else [*table[i], draw(garbage)]
        elif how == "rows" and len(table) > 1:
            rows = table[1:]
            what = draw(st.sampled_from(["delete", "duplicate", "shuffle", "none", "many"]))
            if what == "delete":
                rows.pop(draw(st.integers(0, len(rows) - 1)))
            elif what == "duplicate":
                rows.insert(draw(st.integers(0, len(rows))), list(draw(st.sampled_from(rows))))
            elif what == "shuffle":
                rows = draw(st.permutations(rows))
            elif what == "none":
                rows = []
            else:
                rows = [list(rows[0]) for _ in range(MAX_SESSIONS + 1)]
            table = [table[0], *rows]
        elif how == "intake":
            line = draw(st.sampled_from(["# age", "#: 5", "# age: abc", "# nonsense: 1", "# age: 61: 62", "#",
                                         "## age: 5", "# AGE: 5", "# condition:", "# condition: gout",
                                         "# baseline_pain: 11", "# intake_date: 2026-02-30", "# sex: x",
                                         "# modality: [1]", "# patient_id: " + "x" * 65, "# age: 1e999",
                                         "# intake_date: 0001-01-01", "# intake_date: 9999-12-31"])
                        | st.text(max_size=20).map(lambda t: "# " + t))
            if intake and draw(st.booleans()):
                intake[draw(st.integers(0, len(intake) - 1))] = line
            elif intake and draw(st.booleans()):
                intake.pop(draw(st.integers(0, len(intake) - 1)))
            else:
                intake.insert(draw(st.integers(0, len(intake))), line)
        elif how == "intake_after_header" and intake:
            table.insert(draw(st.integers(1, len(table))) if table else 0, [intake.pop()])
    if draw(st.booleans()):
        lines = [",".join(r) for r in table]  # naive join: garbage cells break the quoting on purpose
    else:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(table)
        lines = out.getvalue().split("\n")
    eol = draw(st.sampled_from(["\n", "\r\n", "\r", "\n\n"]))
    text = eol.join(intake + lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    data = text.encode(encoding, errors="replace")
    damage = draw(st.sampled_from(["none", "none", "junk", "truncate", "long_line", "nul", "bom"]))
    if damage == "junk":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=40)) + data[at:]
    elif damage == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif damage == "long_line":
        data += b"\n" + draw(st.sampled_from([b"a" * 200_000, b"," * 50_000, b'"' + b"x" * 140_000 + b'"',
                                              b"2026-01-20," + b"9" * 100_000 + b",true"]))
    elif damage == "nul":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + b"\x00" + data[at:]
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    caller = draw(st.none() | st.dictionaries(st.sampled_from(INTAKE_FIELDS), garbage, max_size=3))
    return data, caller


# ---------------------------------------------------------------------------------------------- checks
def _check_error(exc: HistoryError) -> None:
    """A :class:`HistoryError` as the CLI and the web app show it: problems naming a field, one line each."""
    assert 1 <= len(exc.errors) <= MAX_ERRORS
    for e in exc.errors:
        assert isinstance(e.field, str) and _FIELD.match(e.field), e
        assert isinstance(e.message, str) and e.message.strip(), e
        assert e.row is None or (isinstance(e.row, int) and e.row >= 1), e
        assert "\n" not in str(e) and "\r" not in str(e), f"not one line: {str(e)!r}"
    assert str(exc)
    json.dumps(exc.to_dict(), ensure_ascii=False).encode("utf-8")  # what the web app sends, UTF-8 encodable


def _check_history(h: History, doc: Any = None) -> None:
    """An accepted history is consistent: weeks within limits, and it round-trips through its document."""
    assert isinstance(h, History)
    assert 1 <= len(h.sessions) <= MAX_SESSIONS and 1 <= h.n_weeks <= MAX_WEEKS
    weeks = h.weeks()
    assert (weeks["sessions"] <= MAX_SESSIONS_PER_WEEK).all() and (weeks["attended"] <= weeks["sessions"]).all()
    again = parse_history(h.to_dict())
    assert again.to_dict() == h.to_dict()
    if isinstance(doc, dict):  # documented as YYYY-MM-DD: nothing looser may be accepted
        assert all(_DAY.fullmatch(s["date"]) for s in doc["sessions"]), doc["sessions"]
        day = doc["patient"].get("intake_date")
        assert day in (None, "") or _DAY.fullmatch(day), day


def _outcome(data: Any, fmt: str | None = None, intake: dict[str, Any] | None = None,
             doc: Any = None) -> History | HistoryError:
    """``parse_history``'s answer (``doc``: the document ``data`` encodes); any exception other than
    :class:`HistoryError` propagates (a bug)."""
    try:
        h = parse_history(data, fmt, intake)
    except HistoryError as exc:
        _check_error(exc)
        return exc
    _check_history(h, data if isinstance(data, dict) else doc)
    return h


# ---------------------------------------------------------------------------------------------- parse_history
def test_base_inputs_are_valid() -> None:
    """The fuzzers start from valid inputs (else they would only fuzz one error path)."""
    assert isinstance(_outcome(copy.deepcopy(BASE_DOC)), History)
    assert isinstance(_outcome(json.dumps(BASE_DOC).encode()), History)
    h = _outcome(BASE_CSV.encode(), "csv")
    assert isinstance(h, History) and h.to_dict() == parse_history(BASE_DOC).to_dict()


def test_fuzz_json_mutations() -> None:
    seen = {"cases": 0, "accepted": 0}

    @fuzz(N_JSON_MUTATED)
    @given(doc=mutated_documents(), how=st.sampled_from(["text", "bytes", "mapping", "bom"]),
           fmt=st.sampled_from([None, "json"]))
    @example(doc={**BASE_DOC, "patient": {**BASE_DOC["patient"], "age": 10**400}}, how="text", fmt=None)
    @example(doc={**BASE_DOC, "patient": {**BASE_DOC["patient"], "modality": ["resistance"]}}, how="text", fmt=None)
    @example(doc={**BASE_DOC, "patient": {**BASE_DOC["patient"], "intake_date": None},
                  "sessions": [{"date": "0001-01-01", "load": 0.3, "attended": False}]}, how="text", fmt=None)
    @example(doc={**BASE_DOC, "patient": {**BASE_DOC["patient"], "\ud800": 1}}, how="text", fmt=None)
    @example(doc={**BASE_DOC, "sessions": [{**BASE_DOC["sessions"][0], "date": "2026-W02-2"}]}, how="text", fmt=None)
    def run(doc: dict[str, Any], how: str, fmt: str | None) -> None:
        seen["cases"] += 1
        text = json.dumps(doc)
        data: Any = {"text": text, "bytes": text.encode(), "mapping": doc, "bom": b"\xef\xbb\xbf" + text.encode()}[how]
        if isinstance(_outcome(data, fmt, doc=doc), History):
            seen["accepted"] += 1

    run()
    _count("json_mutations", seen["cases"], N_JSON_MUTATED, f"{seen['accepted']} accepted")
    assert seen["accepted"] < seen["cases"] // 2  # the mutations do break the document


@st.composite
def arbitrary_documents(draw: Any) -> Any:
    """Any JSON value, or an object shaped like a history with arbitrary contents."""
    shaped = st.fixed_dictionaries(
        {"patient": st.dictionaries(st.sampled_from(INTAKE_FIELDS) | keys, json_values, max_size=6),
         "sessions": st.lists(st.dictionaries(st.sampled_from(SESSION_COLUMNS) | keys, json_values, max_size=6),
                              max_size=6)},
        optional={"extra": json_values})
    return draw(json_values | shaped)


def test_fuzz_arbitrary_json() -> None:
    seen = {"cases": 0}

    @fuzz(N_JSON_ARBITRARY)
    @given(value=arbitrary_documents(), allow_nan=st.booleans())
    def run(value: Any, allow_nan: bool) -> None:
        seen["cases"] += 1
        text = json.dumps(value, allow_nan=allow_nan) if allow_nan else json.dumps(value)
        _outcome(text, doc=value)
        _outcome(text.encode(), "json", doc=value)
        if isinstance(value, dict):
            _outcome(value)

    run()
    _count("arbitrary_json", seen["cases"], N_JSON_ARBITRARY)


def _nested(depth: int, doc: bool = True) -> str:
    inner = "[" * depth + "]" * depth
    return '{"patient": {"condition": "knee_oa", "age": ' + inner + '}, "sessions": []}' if doc else inner


def test_fuzz_raw_bytes_and_text() -> None:
    seen = {"cases": 0}
    prefixes = st.sampled_from(["", "{", "[", '{"patient":', "date,load,attended\n", "\ufeff", " \n", "# age: 5\n"])

    @fuzz(N_RAW)
    @given(data=st.binary(max_size=2000) | st.text(max_size=500) | st.tuples(prefixes, st.text(max_size=300)).map(
        "".join), fmt=st.sampled_from([None, "json", "csv"]), intake=st.none() | st.dictionaries(keys, json_values))
    @example(data=_nested(100_000), fmt=None, intake=None)
    @example(data=_nested(100_000, doc=False), fmt="json", intake=None)
    @example(data=_nested(900), fmt=None, intake=None)
    @example(data=" " * (MAX_BYTES + 1), fmt=None, intake=None)
    @example(data=b"{" * (MAX_BYTES + 1), fmt="json", intake=None)
    @example(data="é" * (MAX_BYTES // 2 + 1), fmt="csv", intake=None)
    @example(data=b"\xff\xfe" + "date,load,attended".encode("utf-16-le"), fmt=None, intake=None)
    @example(data='{"patient": {"age": 1' + "0" * 5000 + "}}", fmt=None, intake=None)
    def run(data: bytes | str, fmt: str | None, intake: dict[str, Any] | None) -> None:
        seen["cases"] += 1
        _outcome(data, fmt, intake)

    run()
    _count("raw_bytes_and_text", seen["cases"], N_RAW)


def test_fuzz_csv_mutations() -> None:
    seen = {"cases": 0, "accepted": 0}

    @fuzz(N_CSV)
    @given(case=mutated_csvs(), fmt=st.sampled_from(["csv", None]), as_text=st.booleans())
    @example(case=(BASE_CSV.replace("# modality: resistance", "# intake_date: 0001-01-01").replace(
        "2026-01-06", "0001-01-02").encode(), None), fmt="csv", as_text=False)
    @example(case=(BASE_CSV.replace("date,load", '"da\nte",load').encode(), None), fmt="csv", as_text=False)
    def run(case: tuple[bytes, dict[str, str] | None], fmt: str | None, as_text: bool) -> None:
        data, intake = case
        seen["cases"] += 1
        if as_text:
            data = data.decode("utf-8", errors="surrogateescape")  # type: ignore[assignment]
        if isinstance(_outcome(data, fmt, intake), History):
            seen["accepted"] += 1

    run()
    _count("csv_mutations", seen["cases"], N_CSV, f"{seen['accepted']} accepted")
    assert seen["accepted"] < seen["cases"] // 2


# ---------------------------------------------------------------------------------------------- CLI
def _cli(args: list[str]) -> tuple[int, str, str]:
    """``adaptrx`` in process: (exit code, stdout, stderr); argparse's own exit is caught."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def _cli_inputs() -> st.SearchStrategy[tuple[bytes, str]]:
    json_files = mutated_documents().map(lambda d: json.dumps(d).encode())
    csv_files = mutated_csvs().map(lambda c: c[0])
    return st.tuples(json_files | csv_files | st.binary(max_size=300), st.sampled_from([".json", ".csv", ".txt", ""]))


def test_fuzz_cli_malformed_history(tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("cli-fuzz")
    seen = {"cases": 0}

    @fuzz(N_CLI)
    @given(case=_cli_inputs())
    def run(case: tuple[bytes, str]) -> None:
        data, suffix = case
        path = folder / f"history{suffix}"
        path.write_bytes(data)
        try:
            load_history(path)
        except HistoryError as exc:
            expected = [f"adaptrx recommend: error: {e}" for e in exc.errors]
        else:
            assume(False)  # valid: would run a fit
        seen["cases"] += 1
        code, out, err = _cli(["recommend", "--history", str(path), "--particles", "100", "--horizon", "4"])
        assert code == 2, (code, err)
        assert out == "" and "Traceback" not in err
        assert err.splitlines() == expected  # one line per problem, each naming its field

    run()
    _count("cli_malformed_history", seen["cases"], N_CLI)


def test_fuzz_cli_intake_options(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Garbage intake options with a CSV lacking intake lines (no --condition, so never a valid history)."""
    path = tmp_path_factory.mktemp("cli-options") / "log.csv"
    path.write_text("\n".join(",".join(r) for r in BASE_TABLE) + "\n")
    options = {"--age": "patient.age", "--baseline-pain": "patient.baseline_pain", "--sex": "patient.sex",
               "--fear-score": "patient.fear_score", "--modality": "patient.modality",
               "--intake-date": "patient.intake_date", "--function": "patient.function"}
    seen = {"cases": 0}
    values = st.sampled_from(NAN_LIKE + DATE_LIKE + ENUM_LIKE + ["-5", "1e400", "9" * 400, "--", "-", "=", "é"]) | \
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)

    @fuzz(N_CLI_OPTIONS)
    @given(picked=st.dictionaries(st.sampled_from(sorted(options)), values, min_size=1, max_size=3))
    def run(picked: dict[str, str]) -> None:
        seen["cases"] += 1
        args = ["recommend", "--history", str(path), *(f"{k}={v}" for k, v in picked.items())]
        code, out, err = _cli(args)
        assert code == 2, (code, err)
        assert out == "" and "Traceback" not in err and err.strip()
        lines = err.strip().splitlines()
        if lines[-1].startswith("adaptrx recommend: error: argument "):  # argparse: names the option
            assert any(k in lines[-1] for k in picked), err
        else:
            assert all(line.startswith("adaptrx recommend: error: patient.") for line in lines), err
            assert "patient.condition: missing (required)" in err

    run()
    _count("cli_intake_options", seen["cases"], N_CLI_OPTIONS)


@pytest.mark.parametrize(("name", "content", "field"), [
    ("huge.json", json.dumps({**BASE_DOC, "patient": {**BASE_DOC["patient"], "age": 10**400}}), "patient.age"),
    ("modality.json", json.dumps({**BASE_DOC, "patient": {**BASE_DOC["patient"], "modality": {"a": 1}}}),
     "patient.modality"),
    ("header.csv", BASE_CSV.replace("date,load", '"da\nte",load'), "sessions.da"),
])
def test_cli_subprocess_malformed_exits_2(tmp_path: Path, name: str, content: str, field: str) -> None:
    """The installed console script, as a user runs it."""
    path = tmp_path / name
    path.write_text(content)
    exe = Path(sys.executable).with_name("adaptrx")
    done = subprocess.run([str(exe), "recommend", "--history", str(path), "--particles", "100"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert f"adaptrx recommend: error: {field}" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


# ---------------------------------------------------------------------------------------------- HTTP
CONTENT_TYPES = ["application/json", "text/csv", "application/csv", "application/json; charset=utf-8",
                 "text/csv; charset=UTF-8", 'text/csv; charset="utf-8"', "text/csv; charset=latin-1",
                 "application/json; charset=utf-16", "text/plain", "", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "APPLICATION/JSON", "application/json;", ";;;", "text/csv;;x",
                 "application/json; charset", "*/*"]
QUERY_VALUES = [*NAN_LIKE, "4", "12", "3", "13", " 4 ", "4.0", "-4", "²", "١٢", "9" * 5000, "true", "false", "maybe",
                "knee_oa", "61", "6", "2026-01-05"]


@st.composite
def bad_requests(draw: Any) -> tuple[bytes, str | None, list[tuple[str, str]]]:
    """(body, Content-Type or None, query items): a body ``parse_history`` rejects, or a wrong content type or
    query, or several of these."""
    kind = draw(st.sampled_from(["json", "json", "csv", "csv", "raw"]))
    if kind == "json":
        body = json.dumps(draw(mutated_documents() | arbitrary_documents())).encode()
        fitting = ["application/json", "application/json; charset=utf-8"]
    elif kind == "csv":
        body = draw(mutated_csvs())[0]
        fitting = ["text/csv", "application/csv", "text/csv; charset=utf-8"]
    else:
        body = draw(st.binary(max_size=500) | st.text(max_size=200).map(str.encode))
        fitting = CONTENT_TYPES[:3]
    wrong = draw(st.integers(0, 9))  # mostly the body's own content type, so that the body is what gets refused
    ctype: str | None = draw(st.sampled_from(fitting)) if wrong < 7 else draw(st.sampled_from(CONTENT_TYPES)) \
        if wrong < 9 else draw(st.none() | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30))
    names = st.sampled_from(["horizon", "plot", *INTAKE_FIELDS]) | st.text(
        st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=8)
    query = draw(st.lists(st.tuples(names, st.sampled_from(QUERY_VALUES) | st.text(max_size=10)), max_size=3))
    return body, ctype, query


def _valid(body: bytes, ctype: str | None, query: list[tuple[str, str]]) -> bool:
    """Whether the request could be a valid one (then a 200 is allowed and checked)."""
    media = (ctype or "").split(";")[0].strip().lower()
    if media not in ("application/json", "text/csv", "application/csv"):
        return False
    params = dict(query)
    if len(params) < len(query) or not set(params) <= {"horizon", "plot", *INTAKE_FIELDS}:
        return False
    if "horizon" in params and not re.fullmatch(r"\s*(0*)([4-9]|1[0-2])\s*", params["horizon"]):
        return False
    if params.get("plot", "true").strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
        return False
    intake = {k: v for k, v in params.items() if k in INTAKE_FIELDS and v.strip()}
    if intake and media == "application/json":
        return False
    try:
        parse_history(body, "json" if media == "application/json" else "csv", intake or None)
    except HistoryError:
        return False
    return True


def _check_error_response(r: Any) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert "Traceback" not in r.text
    body = r.json()
    assert isinstance(body["error"], str) and body["error"].strip()
    assert isinstance(body["detail"], list)
    for item in body["detail"]:
        assert set(item) == {"field", "message", "row"} and item["message"], item
        assert isinstance(item["field"], str) and _HTTP_FIELD.match(item["field"]), item
    return body


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from adaptrx.clinic.web import create_app

    # raise_server_exceptions=False: an unhandled error comes back as the 500 a real client would get
    with TestClient(create_app(n_particles=100, horizon=4), raise_server_exceptions=False) as c:
        yield c


def test_fuzz_http_bad_requests_are_4xx_and_server_keeps_serving(client: Any) -> None:
    seen: dict[str, int] = {"cases": 0, "valid_200": 0}
    statuses: Counter[int] = Counter()

    @fuzz(N_HTTP)
    @given(request=bad_requests())
    @example(request=(json.dumps({**BASE_DOC, "patient": {**BASE_DOC["patient"], "\ud800": 1}}).encode(),
                      "application/json", []))
    @example(request=(json.dumps({**BASE_DOC, "patient": {**BASE_DOC["patient"], "age": 10**400}}).encode(),
                      "application/json", []))
    @example(request=(json.dumps({**BASE_DOC, "patient": {**BASE_DOC["patient"], "intake_date": "9999-12-25"},
                                  "sessions": [{"date": "9999-12-30", "load": 0.3, "attended": True}]}).encode(),
                      "application/json", [("plot", "false")]))
    @example(request=(json.dumps(BASE_DOC).encode(), "application/json", [("horizon", "²")]))
    @example(request=(json.dumps(BASE_DOC).encode(), "application/json", [("horizon", "9" * 5000)]))
    @example(request=(b"{" + b" " * MAX_BYTES + b"}", "application/json", []))
    def run(request: tuple[bytes, str | None, list[tuple[str, str]]]) -> None:
        body, ctype, query = request
        seen["cases"] += 1
        headers = {} if ctype is None else {"Content-Type": ctype}
        r = client.post("/api/recommend", content=body, params=query, headers=headers)
        statuses[r.status_code] += 1
        if r.status_code == 200:
            assert _valid(body, ctype, query), (body[:300], ctype, query)
            seen["valid_200"] += 1
            return
        _check_error_response(r)

    run()

    def stream() -> Iterator[bytes]:  # oversize without Content-Length: counted while streaming
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b" " * 65536

    extra = [client.post("/api/recommend", content=stream(), headers={"Content-Type": "text/csv"}),
             client.post("/api/recommend", content=b"x" * 10, headers={"Content-Type": "text/csv",
                                                                      "Content-Length": b"\xb2"}),
             client.post("/api/recommend", content=b"{}", headers={"Content-Type": "application/json",
                                                                  "Content-Length": "abc"})]
    assert [r.request.headers.get("content-length") for r in extra] == [None, "\xb2", "abc"]
    assert [r.status_code for r in extra] == [413, 400, 400]
    for r in extra:
        _check_error_response(r)
        statuses[r.status_code] += 1
    seen["cases"] += len(extra)
    _count("http_bad_requests", seen["cases"], N_HTTP, ", ".join(f"{n} x {c}" for c, n in sorted(statuses.items())))
    assert len(statuses) >= 3  # not all refused the same way (e.g. all 415)
    assert seen["valid_200"] <= seen["cases"] // 10
    # the server still serves: health and a valid request
    assert client.get("/api/health").json()["status"] == "ok"
    r = client.post("/api/recommend", content=json.dumps(BASE_DOC), params={"plot": "false"},
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert 1 <= r.json()["prescription"]["sessions"] <= 5


ZERO_LOAD_DOC = {"patient": {"condition": "knee_oa", "age": 44, "baseline_pain": 1.5},
                 "sessions": [{"date": "2026-01-06", "load": 0.0, "attended": False}]}


def test_zero_last_week_load_gets_a_recommendation(client: Any, tmp_path: Path) -> None:
    """A valid history (load 0 is in the documented 0-1.5 range) must get a recommendation, over HTTP and CLI
    (found by fuzzing: the forecast started from the raw load, the recommendation from the action minimum)."""
    r = client.post("/api/recommend", content=json.dumps(ZERO_LOAD_DOC), params={"plot": "false"},
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    path = tmp_path / "zero.json"
    path.write_text(json.dumps(ZERO_LOAD_DOC))
    code, out, err = _cli(["recommend", "--history", str(path), "--particles", "100", "--horizon", "4"])
    assert code == 0 and "PRESCRIPTION" in out, err
