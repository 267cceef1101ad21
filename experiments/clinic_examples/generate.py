"""Regenerate the sample clinic histories and their recommendations (``make clinic-examples``).

Three virtual patients (knee OA, ``test`` split) are treated in the simulator and written down as a clinic
would have logged them (:func:`adaptrx.clinic.synthetic.simulate_history`); two logs are then edited to
tell a story:

* ``doing_well``: 10 weeks of the pain-monitoring model, supervised; written as a sessions CSV with the
  intake in ``# field: value`` lines (the CSV format);
* ``after_flare``: 8 weeks of linear progression; in the last week the patient reported a flare, in-session
  pain 7 and next-morning pain 8 (2-3 points above the pre-session level);
* ``missed_two_weeks``: 9 weeks of the pain-monitoring model at home; the sessions of weeks 8 and 9 were
  prescribed but not attended.

For each: ``<name>.json``/``.csv`` (the history), ``<name>.recommendation.json`` and ``.txt`` (what
``adaptrx recommend`` prints, default policy, seed 0) and ``<name>.png`` (the forecast plot of the web page).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adaptrx import protocols
from adaptrx.clinic.history import SESSION_COLUMNS, parse_history
from adaptrx.clinic.plot import figure_png
from adaptrx.clinic.recommend import recommend
from adaptrx.clinic.synthetic import simulate_history
from adaptrx.patient import make_cohort

HERE = Path(__file__).resolve().parent


def _csv(document: dict[str, Any]) -> str:
    lines = [f"# {k}: {v}" for k, v in document["patient"].items()]
    lines.append(",".join(SESSION_COLUMNS))
    for s in document["sessions"]:
        cells = []
        for c in SESSION_COLUMNS:
            value = s.get(c, "")
            cells.append(str(value).lower() if isinstance(value, bool) else str(value))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def _complete(cohort: Any, start: int, policy: Any, weeks: int, seed: int) -> tuple[int, dict[str, Any]]:
    """The first patient from row ``start`` on who is still in the programme after ``weeks`` weeks."""
    for i in range(start, len(cohort)):
        document, batch = simulate_history(cohort.iloc[i].to_dict(), policy, weeks, seed=seed)
        if not bool(batch.sim.state.dropped_out[0]) and document["sessions"][-1]["date"] >= _week_start(weeks):
            return i, document
    raise RuntimeError("no patient completed the history")


def _week_start(week: int) -> str:
    """First day of programme week ``week`` (1-based) for the intake date of the sample histories."""
    import datetime as dt

    return (dt.date(2026, 1, 5) + dt.timedelta(days=7 * (week - 1) + 1)).isoformat()


def histories() -> dict[str, tuple[dict[str, Any], str]]:
    """The three sample histories: name -> (document, file format)."""
    cohort = make_cohort("knee_oa", 40, seed=2026, split="test")
    i, well = _complete(cohort, 0, protocols.get("pain_monitoring", delivery="supervised"), 10, seed=1)
    j, flare = _complete(cohort, i + 1, protocols.get("linear", delivery="supervised"), 8, seed=2)
    last_week = [s for s in flare["sessions"] if s["date"] >= _week_start(8)]
    for s in last_week:
        if s["attended"]:
            s.update(pain_before=5.0, pain_during=7.0, pain_next_morning=8.0, rpe=8.0)
    last_week[0]["flare"] = True
    _, missed = _complete(cohort, j + 1, protocols.get("pain_monitoring", delivery="home"), 9, seed=3)
    for s in missed["sessions"]:
        if s["date"] >= _week_start(8):  # weeks 8 and 9: prescribed, not attended
            for key in ("pain_during", "pain_next_morning", "rpe", "pain_before", "flare"):
                s.pop(key, None)
            s["attended"] = False
    return {"doing_well": (well, "csv"), "after_flare": (flare, "json"), "missed_two_weeks": (missed, "json")}


def main() -> None:
    for name, (document, fmt) in histories().items():
        text = _csv(document) if fmt == "csv" else json.dumps(document, indent=1) + "\n"
        (HERE / f"{name}.{fmt}").write_text(text)
        rec = recommend(parse_history(text, fmt), seed=0)
        d = rec.to_dict()
        (HERE / f"{name}.recommendation.json").write_text(json.dumps(d, indent=1) + "\n")
        (HERE / f"{name}.recommendation.txt").write_text(rec.to_text() + "\n")
        (HERE / f"{name}.png").write_bytes(figure_png(d))
        print(f"{name}: {rec.prescription}; bound by {list(rec.bound_by)}")


if __name__ == "__main__":
    main()
