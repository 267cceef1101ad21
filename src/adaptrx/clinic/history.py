"""A real patient's history: intake and session log, parsed and validated (``DESIGN.md`` section 8).

Two input formats carry the same fields:

* a JSON document ``{"patient": {...intake...}, "sessions": [{...}, ...]}``;
* a sessions CSV (one row per prescribed session, a header row with the session columns) whose intake
  fields come from ``# field: value`` comment lines before the header or from the caller (CLI options,
  web form fields).

Intake (``patient``):

==========================  ==========  ==========================================================
field                       required    meaning
==========================  ==========  ==========================================================
``condition``               yes         ``knee_oa``, ``chronic_low_back_pain``, ``fibromyalgia``,
                                        ``lumbar_spinal_stenosis``; any case, and the aliases of
                                        :data:`CONDITION_ALIASES` (``clbp``, ``lbp``, ``lss``, ``fm``,
                                        ``fibro``, ``knee oa``, ...)
``age``                     yes         years, 18-100
``baseline_pain``           yes         NRS 0-10 at intake (a single rating)
``sex``                     no          ``F`` or ``M``
``sensitization_score``     no          CSI-like central sensitization questionnaire, 0-100
``fear_score``              no          TSK-11-like fear of movement questionnaire, 11-44
``preferred_sessions``      no          sessions/week the patient says they would do, 1-5
``function``                no          function questionnaire at intake, 0-100 (higher is better)
``modality``                no          ``resistance`` (default), ``aerobic``, ``mind_body``, ``mixed``
``intake_date``             no          ``YYYY-MM-DD`` (years 1900-2199); week 1 starts the day after
                                        (default: the first session's date starts week 1)
``patient_id``              no          free text (at most 64 characters), echoed back
==========================  ==========  ==========================================================

Sessions (one per prescribed session, attended or not, in date order):

=====================  ==========  =====================================================================
field                  required    meaning
=====================  ==========  =====================================================================
``date``               yes         ``YYYY-MM-DD`` (years 1900-2199), strictly increasing (one per day)
``load``               yes         prescribed load, baseline-capacity units 0-1.5 (1.0 = the heaviest
                                   session the patient tolerated at intake)
``attended``           yes         ``true``/``false`` (CSV also ``yes``/``no``/``1``/``0``)
``pain_during``        no          in-session pain, NRS 0-10 (empty when not attended)
``pain_next_morning``  no          next-morning pain, NRS 0-10 (empty when not attended)
``rpe``                no          rating of perceived exertion, 0-10 (empty when not attended)
``pain_before``        no          pain just before the session, NRS 0-10 (gives the next-morning change)
``delivery``           no          ``supervised`` (default), ``remote`` or ``home``
``flare``              no          the patient reported a flare since the previous session
=====================  ==========  =====================================================================

Weeks are counted from the intake date (or the first session): week 1 is its first 7 days. The log is
taken to be complete up to the end of its last week (a week without rows had no sessions prescribed);
the recommendation is for the week after. At most 5 sessions per week (the model's range).

Every problem is a :class:`HistoryError` listing :class:`FieldError` s, each naming the field and, for
sessions, the 1-based row (the CSV's data row, or the position in the JSON ``sessions`` list). Nothing in
the input is ever evaluated: JSON is parsed by :func:`json.loads` (duplicate keys and ``NaN`` rejected) and
CSV by :mod:`csv`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adaptrx.common import strict_json
from adaptrx.common.validation import as_flag, as_number
from adaptrx.patient import MODALITIES, conditions

#: Largest accepted history document (bytes).
MAX_BYTES = 1_000_000
#: Most session rows in one history.
MAX_SESSIONS = 2000
#: Most sessions in one week (the simulator's range).
MAX_SESSIONS_PER_WEEK = 5
#: Longest history (weeks from intake to the last session).
MAX_WEEKS = 104
#: Largest prescribed load (baseline-capacity units); the model's range.
LOAD_LIMIT = 1.5
#: At most this many problems are listed in one error.
MAX_ERRORS = 20
#: Dates accepted (intake and sessions): far from the ends of ``datetime.date``'s range.
MIN_DATE, MAX_DATE = dt.date(1900, 1, 1), dt.date(2199, 12, 31)

DELIVERIES: tuple[str, ...] = ("home", "remote", "supervised")
SESSION_COLUMNS: tuple[str, ...] = ("date", "load", "attended", "pain_during", "pain_next_morning", "rpe",
                                    "pain_before", "delivery", "flare")
REQUIRED_SESSION_COLUMNS: tuple[str, ...] = ("date", "load", "attended")
#: Other names clinicians write for a condition (matched case-insensitively, spaces, dots and hyphens as
#: underscores) -> the prior's name.
CONDITION_ALIASES: dict[str, str] = {
    "knee": "knee_oa", "knee_osteoarthritis": "knee_oa", "koa": "knee_oa", "oa_knee": "knee_oa",
    "gonarthrosis": "knee_oa",
    "clbp": "chronic_low_back_pain", "lbp": "chronic_low_back_pain", "low_back_pain": "chronic_low_back_pain",
    "chronic_lbp": "chronic_low_back_pain", "back_pain": "chronic_low_back_pain",
    "fm": "fibromyalgia", "fms": "fibromyalgia", "fibro": "fibromyalgia",
    "lss": "lumbar_spinal_stenosis", "spinal_stenosis": "lumbar_spinal_stenosis", "stenosis": "lumbar_spinal_stenosis",
}


def canonical_condition(name: object) -> str | None:
    """The prior's name for a condition as a clinician may write it (``"CLBP"``, ``"knee OA"``, ``"Fibro"``, ...):
    case-insensitive, spaces, dots and hyphens read as underscores, :data:`CONDITION_ALIASES` resolved; ``None``
    if it names no shipped condition."""
    if not isinstance(name, str):
        return None
    key = re.sub(r"[\s.\-]+", "_", name.strip().lower()).strip("_")
    key = CONDITION_ALIASES.get(key, key)
    return key if key in conditions() else None


INTAKE_FIELDS: tuple[str, ...] = ("condition", "age", "baseline_pain", "sex", "sensitization_score", "fear_score",
                                  "preferred_sessions", "function", "modality", "intake_date", "patient_id")
REQUIRED_INTAKE_FIELDS: tuple[str, ...] = ("condition", "age", "baseline_pain")
#: Numeric intake fields and their ranges (inclusive).
_INTAKE_RANGES: dict[str, tuple[float, float]] = {
    "age": (18.0, 100.0),
    "baseline_pain": (0.0, 10.0),
    "sensitization_score": (0.0, 100.0),
    "fear_score": (11.0, 44.0),
    "preferred_sessions": (1.0, 5.0),
    "function": (0.0, 100.0),
}
#: Numeric session fields (besides ``load``) and their ranges.
_SESSION_RANGES: dict[str, tuple[float, float]] = {
    "pain_during": (0.0, 10.0),
    "pain_next_morning": (0.0, 10.0),
    "rpe": (0.0, 10.0),
    "pain_before": (0.0, 10.0),
}
_REPORTS = ("pain_during", "pain_next_morning", "rpe", "pain_before")
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _printable(text: str) -> str:
    """``text`` on one line: line breaks, other control characters and lone surrogates escaped."""
    return text if text.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


@dataclass(frozen=True)
class FieldError:
    """One problem: the field (``patient.age``, ``sessions.pain_during``, ``history``), the 1-based session row
    (``None`` outside the session log) and what is wrong."""

    field: str
    message: str
    row: int | None = None

    def __post_init__(self) -> None:  # names and values come from the input: keep each problem one safe line
        object.__setattr__(self, "field", _printable(str(self.field)))
        object.__setattr__(self, "message", _printable(str(self.message)))

    def __str__(self) -> str:
        where = f"{self.field} (row {self.row})" if self.row is not None else self.field
        return f"{where}: {self.message}"


class HistoryError(ValueError):
    """The history cannot be used; :attr:`errors` lists every problem found (at most :data:`MAX_ERRORS`)."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors[:MAX_ERRORS]
        more = len(self.errors) - 1
        super().__init__(str(self.errors[0]) + (f" (and {more} more problem(s))" if more > 0 else ""))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready error body: ``{"error": message, "detail": [{"field", "row", "message"}, ...]}``."""
        return {"error": str(self), "detail": [asdict(e) for e in self.errors]}


@dataclass(frozen=True)
class Intake:
    """The intake visit (units and ranges as in the module table; ``None`` where not recorded)."""

    condition: str
    age: float
    baseline_pain: float
    sex: str | None = None
    sensitization_score: float | None = None
    fear_score: float | None = None
    preferred_sessions: float | None = None
    function: float | None = None
    modality: str = "resistance"
    intake_date: dt.date | None = None
    patient_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["intake_date"] = self.intake_date.isoformat() if self.intake_date else None
        return out


@dataclass
class History:
    """A validated history.

    Attributes:
        intake: the intake visit.
        sessions: one row per prescribed session, columns :data:`SESSION_COLUMNS` plus ``week`` (0-based week
            of the programme); ``date`` is ``datetime64``, reports are float with ``NaN`` where not recorded,
            ``attended``/``flare`` bool, ``delivery`` a name of :data:`DELIVERIES`.
        start: the day before week 1 (the intake date, or the day before the first session).
    """

    intake: Intake
    sessions: pd.DataFrame
    start: dt.date
    notes: list[str] = field(default_factory=list)

    @property
    def n_weeks(self) -> int:
        """Weeks of history (the last session's week, 1-based); the next week is week ``n_weeks + 1``."""
        return int(self.sessions["week"].max()) + 1 if len(self.sessions) else 0

    def weeks(self) -> pd.DataFrame:
        """The log by week, one row per week ``0 .. n_weeks-1`` (weeks without sessions included).

        Columns: ``week`` (0-based), ``start`` (first day), ``sessions`` (prescribed), ``attended``, ``load``
        (mean prescribed load per session; the previous week's where none was prescribed, ``NaN`` before the
        first), ``delivery`` (code 0 home, 1 remote, 2 supervised: the most frequent), ``session_pain_mean`` /
        ``session_pain_max`` (over attended sessions), ``morning_pain_mean``, ``morning_change_mean`` (next
        morning minus before, where both were recorded), ``rpe_mean``, ``flare`` (any reported). Report means
        are ``NaN`` where nothing was recorded.
        """
        s = self.sessions
        n = self.n_weeks
        table = pd.DataFrame({"week": np.arange(n)})
        table["start"] = [self.start + dt.timedelta(days=7 * w + 1) for w in range(n)]
        grouped = s.groupby("week")
        table["sessions"] = grouped.size().reindex(table["week"], fill_value=0).to_numpy()
        table["attended"] = grouped["attended"].sum().reindex(table["week"], fill_value=0).to_numpy().astype(int)
        table["load"] = grouped["load"].mean().reindex(table["week"]).ffill().to_numpy()
        code = s["delivery"].map({name: i for i, name in enumerate(DELIVERIES)})
        mode = code.groupby(s["week"]).agg(lambda c: int(c.mode().max()))
        table["delivery"] = mode.reindex(table["week"]).ffill().fillna(2).astype(int).to_numpy()
        done = s[s["attended"]]
        by = done.groupby("week")
        change = (done["pain_next_morning"] - done["pain_before"]).groupby(done["week"])
        for name, values in (("session_pain_mean", by["pain_during"].mean()),
                             ("session_pain_max", by["pain_during"].max()),
                             ("morning_pain_mean", by["pain_next_morning"].mean()),
                             ("morning_change_mean", change.mean()),
                             ("rpe_mean", by["rpe"].mean())):
            table[name] = values.reindex(table["week"]).to_numpy(dtype=float)
        table["flare"] = s.groupby("week")["flare"].any().reindex(table["week"], fill_value=False).to_numpy(bool)
        return table

    def to_dict(self) -> dict[str, Any]:
        """The history as the JSON document it could have been given as."""
        rows = []
        for record in self.sessions.drop(columns="week").to_dict(orient="records"):
            row: dict[str, Any] = {}
            for key, value in record.items():
                if key == "date":
                    row[key] = pd.Timestamp(value).date().isoformat()
                elif isinstance(value, float) and math.isnan(value):
                    continue
                elif isinstance(value, np.bool_ | bool):
                    row[key] = bool(value)
                else:
                    row[key] = value
            rows.append(row)
        patient = {k: v for k, v in self.intake.to_dict().items() if v is not None}
        return {"patient": patient, "sessions": rows}


# ----------------------------------------------------------------------------------------------- parsing
class _Collector:
    """Accumulates :class:`FieldError` s; :meth:`check` raises them all at once."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field_name: str, message: str, row: int | None = None) -> None:
        self.errors.append(FieldError(field_name, message, row))

    def full(self) -> bool:
        return len(self.errors) >= MAX_ERRORS

    def check(self) -> None:
        if self.errors:
            raise HistoryError(self.errors)


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        if len(data.encode("utf-8", errors="replace")) > MAX_BYTES:
            raise HistoryError([FieldError("history", f"larger than the {MAX_BYTES:,}-byte limit")])
        return data
    if len(data) > MAX_BYTES:
        raise HistoryError([FieldError("history", f"{len(data):,} bytes, larger than the {MAX_BYTES:,}-byte limit")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HistoryError([FieldError("history", "not UTF-8 text; expected a JSON document or a sessions CSV")]) \
            from None
    if "\x00" in text:
        raise HistoryError([FieldError("history", "binary data; expected a JSON document or a sessions CSV")])
    return text


def parse_history(data: bytes | str | Mapping[str, Any], fmt: str | None = None,
                  intake: Mapping[str, Any] | None = None) -> History:
    """Parse and validate a history.

    Args:
        data: the raw document (bytes or text, JSON or CSV) or an already-decoded JSON mapping.
        fmt: ``"json"``, ``"csv"`` or ``None`` to tell by the content (a JSON document starts with ``{``).
        intake: intake fields that complete or override the document's (CLI options, form fields); values
            may be strings (as typed) or numbers.

    Raises:
        HistoryError: every problem found, each naming its field and row.
    """
    if fmt not in (None, "json", "csv"):
        raise ValueError(f"fmt: must be 'json', 'csv' or None, got {fmt!r}")
    if isinstance(data, Mapping):
        return _from_document(dict(data), intake)
    if not isinstance(data, bytes | bytearray | str):
        raise HistoryError([FieldError("history", f"expected a JSON document or CSV text, got {type(data).__name__}")])
    text = _decode(bytes(data) if isinstance(data, bytearray) else data)
    if not text.strip():
        raise HistoryError([FieldError("history", "empty; expected a JSON document or a sessions CSV")])
    if fmt is None:
        fmt = "json" if text.lstrip().startswith(("{", "[")) else "csv"
    if fmt == "json":
        try:
            document = strict_json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise HistoryError([FieldError("history", f"not valid JSON: {exc}")]) from None
        if not isinstance(document, dict):
            raise HistoryError([FieldError("history", "a JSON document must be an object with 'patient' and "
                                                      "'sessions'")])
        return _from_document(document, intake)
    return _from_csv(text, intake)


def load_history(path: str | Path, intake: Mapping[str, Any] | None = None) -> History:
    """Read and validate a history file (``.json`` or ``.csv``; other names are told apart by content).

    Raises ``HistoryError`` (field ``history``) for a missing, unreadable or oversized file.
    """
    p = Path(path)
    if not p.is_file():
        raise HistoryError([FieldError("history", f"{p}: no such file")])
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise HistoryError([FieldError("history", f"{p}: {size:,} bytes, larger than the {MAX_BYTES:,}-byte limit")])
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise HistoryError([FieldError("history", f"{p}: cannot be read ({exc.strerror})")]) from None
    suffix = p.suffix.lower()
    fmt = "json" if suffix == ".json" else "csv" if suffix == ".csv" else None
    return parse_history(data, fmt, intake)


def _from_document(document: dict[str, Any], extra: Mapping[str, Any] | None) -> History:
    errors = _Collector()
    unknown = sorted(set(document) - {"patient", "sessions"})
    if unknown:
        errors.add("history", f"unknown field(s) {unknown}; expected 'patient' and 'sessions'")
    patient = document.get("patient", {})
    if not isinstance(patient, dict):
        errors.add("patient", f"must be an object of intake fields, got {type(patient).__name__}")
        patient = {}
    sessions = document.get("sessions")
    if sessions is None:
        errors.add("sessions", "missing; expected a list of sessions")
        sessions = []
    elif not isinstance(sessions, list):
        errors.add("sessions", f"must be a list of sessions, got {type(sessions).__name__}")
        sessions = []
    elif not all(isinstance(s, dict) for s in sessions):
        bad = next(i for i, s in enumerate(sessions) if not isinstance(s, dict))
        errors.add("sessions", f"each session must be an object, got {type(sessions[bad]).__name__}", bad + 1)
        sessions = []
    errors.check()
    merged = dict(patient)
    merged.update(dict(extra or {}))
    return _build(merged, sessions, errors, typed=True)


def _from_csv(text: str, extra: Mapping[str, Any] | None) -> History:
    errors = _Collector()
    lines = text.splitlines()
    intake: dict[str, Any] = {}
    body_start = 0
    for i, line in enumerate(lines):  # leading "# field: value" comments carry the intake
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            body_start = i
            break
        key, sep, value = stripped[1:].partition(":")
        if sep and key.strip():
            intake[key.strip()] = value.strip()
    else:
        body_start = len(lines)
    try:
        reader = csv.reader(io.StringIO("\n".join(lines[body_start:])), strict=True)
        table = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise HistoryError([FieldError("history", f"not a valid CSV: {exc}")]) from None
    if not table:
        raise HistoryError([FieldError("sessions", "empty; expected a header row and one row per session")])
    header = [h.strip().lower() for h in table[0]]
    missing = [c for c in REQUIRED_SESSION_COLUMNS if c not in header]
    if missing:
        hint = "" if any(h in SESSION_COLUMNS for h in header) else " (is this a sessions CSV?)"
        raise HistoryError([FieldError(f"sessions.{c}", f"missing column{hint}") for c in missing])
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise HistoryError([FieldError(f"sessions.{h}", "column appears more than once") for h in duplicated])
    unknown = [h for h in header if h not in SESSION_COLUMNS]
    if unknown:
        raise HistoryError([FieldError(f"sessions.{h}", f"unknown column; known: {', '.join(SESSION_COLUMNS)}")
                            for h in unknown])
    rows = []
    for i, cells in enumerate(table[1:], start=1):
        if len(cells) != len(header):
            errors.add("sessions", f"{len(cells)} cells, the header has {len(header)}", i)
            continue
        rows.append({h: c.strip() for h, c in zip(header, cells, strict=True) if c.strip() != ""})
    errors.check()
    intake.update(dict(extra or {}))
    return _build(intake, rows, errors, typed=False)


# --------------------------------------------------------------------------------------------- validation
def _date(value: Any) -> dt.date | None:
    """``value`` as a date if it is a ``YYYY-MM-DD`` text in :data:`MIN_DATE` - :data:`MAX_DATE`."""
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):  # fromisoformat also takes 2026-W01-1
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    return day if MIN_DATE <= day <= MAX_DATE else None


def _intake(raw: dict[str, Any], errors: _Collector, typed: bool) -> Intake | None:
    unknown = sorted(set(raw) - set(INTAKE_FIELDS))
    for name in unknown:
        errors.add(f"patient.{name}", f"unknown field; known: {', '.join(INTAKE_FIELDS)}")
    for name in REQUIRED_INTAKE_FIELDS:
        if raw.get(name) in (None, ""):
            errors.add(f"patient.{name}", "missing (required)")
    values: dict[str, Any] = {}
    condition = raw.get("condition")
    if condition not in (None, ""):
        canonical = canonical_condition(condition)
        if canonical is None:
            errors.add("patient.condition", f"unknown condition {condition!r}; known: {', '.join(conditions())} "
                       f"(or {', '.join(sorted(CONDITION_ALIASES))}; any case)")
        else:
            values["condition"] = canonical
    for name, (low, high) in _INTAKE_RANGES.items():
        value = raw.get(name)
        if value in (None, ""):
            continue
        number = as_number(value, text=not typed)
        if number is None:
            errors.add(f"patient.{name}", f"must be a number in {low:g}-{high:g}, got {value!r}")
        elif not low <= number <= high:
            errors.add(f"patient.{name}", f"must be in {low:g}-{high:g}, got {number:g}")
        else:
            values[name] = number
    sex = raw.get("sex")
    if sex not in (None, ""):
        if sex not in ("F", "M"):
            errors.add("patient.sex", f"must be 'F' or 'M', got {sex!r}")
        else:
            values["sex"] = sex
    modality = raw.get("modality")
    if modality not in (None, ""):
        if not isinstance(modality, str) or modality not in MODALITIES:
            errors.add("patient.modality", f"must be one of {', '.join(sorted(MODALITIES))}, got {modality!r}")
        else:
            values["modality"] = modality
    intake_date = raw.get("intake_date")
    if intake_date not in (None, ""):
        day = _date(intake_date)
        if day is None:
            errors.add("patient.intake_date", f"must be a date YYYY-MM-DD in {MIN_DATE.year}-{MAX_DATE.year}, "
                                              f"got {intake_date!r}")
        else:
            values["intake_date"] = day
    pid = raw.get("patient_id")
    if pid not in (None, ""):
        if not isinstance(pid, str | int) or isinstance(pid, bool) or len(str(pid)) > 64:
            errors.add("patient.patient_id", "must be a text of at most 64 characters")
        else:
            values["patient_id"] = str(pid)
    if errors.errors or not {"condition", "age", "baseline_pain"} <= set(values):
        return None
    return Intake(**values)


def _build(raw_intake: dict[str, Any], rows: list[dict[str, Any]], errors: _Collector, typed: bool) -> History:
    intake = _intake(raw_intake, errors, typed)
    if not rows:
        errors.add("sessions", "empty log; at least one session is needed")
    if len(rows) > MAX_SESSIONS:
        errors.add("sessions", f"{len(rows)} sessions, more than the limit of {MAX_SESSIONS}")
        errors.check()
    parsed: dict[str, list[Any]] = {name: [] for name in SESSION_COLUMNS}
    for i, row in enumerate(rows, start=1):
        if errors.full():
            break
        for name in sorted(set(row) - set(SESSION_COLUMNS)):
            errors.add(f"sessions.{name}", f"unknown field; known: {', '.join(SESSION_COLUMNS)}", i)
        for name in REQUIRED_SESSION_COLUMNS:
            if row.get(name) in (None, ""):
                errors.add(f"sessions.{name}", "missing (required)", i)
        day = _date(row.get("date"))
        if row.get("date") not in (None, "") and day is None:
            errors.add("sessions.date", f"must be a date YYYY-MM-DD in {MIN_DATE.year}-{MAX_DATE.year}, got "
                                        f"{row.get('date')!r}", i)
        parsed["date"].append(day)
        load = as_number(row.get("load"), text=not typed) if row.get("load") not in (None, "") else None
        if row.get("load") not in (None, ""):
            if load is None:
                errors.add("sessions.load", f"must be a number in 0-{LOAD_LIMIT:g}, got {row.get('load')!r}", i)
            elif not 0.0 <= load <= LOAD_LIMIT:
                errors.add("sessions.load", f"must be in 0-{LOAD_LIMIT:g} baseline-capacity units (1.0 = the heaviest "
                                            f"session tolerated at intake), got {load:g}", i)
        parsed["load"].append(load)
        attended = as_flag(row.get("attended"), text=not typed) if row.get("attended") not in (None, "") else None
        if row.get("attended") not in (None, "") and attended is None:
            errors.add("sessions.attended", f"must be true or false, got {row.get('attended')!r}", i)
        parsed["attended"].append(attended)
        for name, (low, high) in _SESSION_RANGES.items():
            value = row.get(name)
            if value in (None, ""):
                parsed[name].append(math.nan)
                continue
            number = as_number(value, text=not typed)
            if number is None:
                errors.add(f"sessions.{name}", f"must be a number in {low:g}-{high:g}, got {value!r}", i)
            elif not low <= number <= high:
                errors.add(f"sessions.{name}", f"must be in {low:g}-{high:g}, got {number:g}", i)
            elif attended is False and name != "pain_before":
                errors.add(f"sessions.{name}", "must be empty for a session that was not attended", i)
            parsed[name].append(math.nan if number is None else number)
        delivery = "supervised" if row.get("delivery") in (None, "") else row.get("delivery")
        if delivery not in DELIVERIES:
            errors.add("sessions.delivery", f"must be one of {', '.join(DELIVERIES)}, got {delivery!r}", i)
        parsed["delivery"].append(delivery)
        flare = False if row.get("flare") in (None, "") else as_flag(row.get("flare"), text=not typed)
        if flare is None:
            errors.add("sessions.flare", f"must be true or false, got {row.get('flare')!r}", i)
        parsed["flare"].append(bool(flare))
    errors.check()
    assert intake is not None
    dates: list[dt.date] = parsed["date"]
    for i in range(1, len(dates)):
        if dates[i] <= dates[i - 1]:
            what = "duplicated (one session per day)" if dates[i] == dates[i - 1] else "out of order"
            errors.add("sessions.date", f"{dates[i].isoformat()} is {what}: the previous session is on "
                                        f"{dates[i - 1].isoformat()}", i + 1)
    start = intake.intake_date if intake.intake_date is not None else dates[0] - dt.timedelta(days=1)
    if dates[0] <= start:
        errors.add("sessions.date", f"{dates[0].isoformat()} is not after the intake date {start.isoformat()}", 1)
    errors.check()
    week = np.array([(d - start).days - 1 for d in dates]) // 7
    if week[-1] >= MAX_WEEKS:
        errors.add("sessions.date", f"{dates[-1].isoformat()} is in week {week[-1] + 1}; histories longer than "
                                    f"{MAX_WEEKS} weeks are not supported", len(dates))
    counts = np.zeros(int(week[-1]) + 1, dtype=int)
    for i, w in enumerate(week, start=1):
        counts[w] += 1
        if counts[w] == MAX_SESSIONS_PER_WEEK + 1:
            errors.add("sessions.date", f"more than {MAX_SESSIONS_PER_WEEK} sessions in week {w + 1} (from "
                                        f"{(start + dt.timedelta(days=7 * int(w) + 1)).isoformat()}); the model "
                                        f"prescribes at most {MAX_SESSIONS_PER_WEEK} a week", i)
    errors.check()
    frame = pd.DataFrame({
        "date": pd.to_datetime([d.isoformat() for d in dates]),
        "load": np.array(parsed["load"], dtype=float),
        "attended": np.array(parsed["attended"], dtype=bool),
        **{name: np.array(parsed[name], dtype=float) for name in _REPORTS},
        "delivery": pd.Series(parsed["delivery"], dtype=object),
        "flare": np.array(parsed["flare"], dtype=bool),
        "week": week.astype(np.int64),
    })
    return History(intake=intake, sessions=frame[[*SESSION_COLUMNS, "week"]], start=start)


#: JSON Schema of the history document (what ``POST /api/recommend`` takes); validation itself is
#: :func:`parse_history`, which also checks what a schema cannot (date order, sessions per week).
HISTORY_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["patient", "sessions"],
    "additionalProperties": False,
    "properties": {
        "patient": {
            "type": "object",
            "required": list(REQUIRED_INTAKE_FIELDS),
            "additionalProperties": False,
            "properties": {
                "condition": {"type": "string", "description": "knee_oa, chronic_low_back_pain, fibromyalgia, "
                              "lumbar_spinal_stenosis, or an alias (any case): "
                              + ", ".join(sorted(CONDITION_ALIASES))},
                **{name: {"type": "number", "minimum": low, "maximum": high}
                   for name, (low, high) in _INTAKE_RANGES.items()},
                "sex": {"type": "string", "enum": ["F", "M"]},
                "modality": {"type": "string", "enum": ["resistance", "aerobic", "mind_body", "mixed"]},
                "intake_date": {"type": "string", "format": "date"},
                "patient_id": {"type": "string", "maxLength": 64},
            },
        },
        "sessions": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_SESSIONS,
            "items": {
                "type": "object",
                "required": list(REQUIRED_SESSION_COLUMNS),
                "additionalProperties": False,
                "properties": {
                    "date": {"type": "string", "format": "date"},
                    "load": {"type": "number", "minimum": 0, "maximum": LOAD_LIMIT},
                    "attended": {"type": "boolean"},
                    **{name: {"type": ["number", "null"], "minimum": low, "maximum": high}
                       for name, (low, high) in _SESSION_RANGES.items()},
                    "delivery": {"type": "string", "enum": list(DELIVERIES)},
                    "flare": {"type": "boolean"},
                },
            },
        },
    },
}
