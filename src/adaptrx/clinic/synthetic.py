"""Session logs of virtual patients, in the clinic's history format.

For testing the fit against known truth, for the sample histories of ``experiments/clinic_examples/`` and
for benchmarks: a virtual patient (a cohort row) is treated by a policy in the progression env's engine
and what the clinic would have recorded is written as a history document (:mod:`adaptrx.clinic.history`).

The simulator reports each week's *means* (in-session pain, next-morning pain and change, RPE), so every
attended session of a week carries the week's means (rounded to 0.1) and the first rows of a week are the
attended ones; ``pain_before`` is set so that the next-morning change averages to the simulated one. A
flare reported that week is put on the week's first row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np

from adaptrx.clinic.history import DELIVERIES
from adaptrx.envs.episode_engine import EnvConfig, EpisodeBatch
from adaptrx.envs.episodes import rollout
from adaptrx.patient.constants import SESSION_DAYS

# what the log is written from: the week's prescription and the simulator's observation records
_LOGGED = ("load", "sessions", "delivery", "sessions_attended", "session_pain_mean", "morning_pain_mean",
           "morning_change_mean", "rpe_mean", "flare_reported")


def _round(x: float) -> float | None:
    return None if np.isnan(x) else round(float(min(max(x, 0.0), 10.0)), 1)


def simulate_history(patient: Mapping[str, Any], policy: Any, weeks: int, seed: int = 0,
                     start: dt.date = dt.date(2026, 1, 5), intake_fields: tuple[str, ...] = (
                         "sensitization_score", "fear_score", "function", "preferred_sessions"),
                     ) -> tuple[dict[str, Any], EpisodeBatch]:
    """Treat one virtual patient for ``weeks`` weeks under ``policy`` and write the clinic's log.

    Args:
        patient: a cohort row (:func:`adaptrx.patient.make_cohort` columns).
        policy: anything with SB3's ``predict`` in the ``Progression-v0`` action space (a protocol, a loaded
            policy); it sees the env's observation each week.
        weeks: weeks of history (1-104).
        seed: the episode's noise seed.
        start: the intake date (week 1 starts the next day).
        intake_fields: optional intake records to include (from the simulated intake observation).

    Returns:
        ``(document, batch)``: the history document (``{"patient", "sessions"}``) and the one-patient
        episode batch in its state after the last week (the truth the fit can be compared with). If the
        patient drops out, the log ends with the week they left.
    """
    config = EnvConfig(condition=str(patient["condition"]), weeks=max(int(weeks), 26), split="test")
    batch = EpisodeBatch(1, config)
    obs = batch.reset(np.array([0]), [dict(patient)], np.array([int(seed)], dtype=np.uint64))
    intake = batch.sim.intake
    doc_patient: dict[str, Any] = {
        "condition": str(patient["condition"]),
        "age": round(float(intake["age"][0]), 0),
        "baseline_pain": float(intake["pain"][0]),
        "sex": str(patient["sex"]),
        "intake_date": start.isoformat(),
        "patient_id": str(patient["patient_id"])[:64],
    }
    records = {"sensitization_score": "sensitization_score", "fear_score": "fear_score", "function": "function",
               "preferred_sessions": "preferred_sessions"}
    for name in intake_fields:
        value = float(intake[records[name]][0])
        doc_patient[name] = float(np.clip(np.rint(value), 1, 5)) if name == "preferred_sessions" else value
    r = rollout(batch, policy, int(weeks), obs=obs, itt=False, record=_LOGGED)  # the log ends at a dropout
    week = {name: r[name][:, 0].tolist() for name in _LOGGED}
    rows: list[dict[str, Any]] = []
    for w in range(r.weeks):
        load, sessions, delivery = week["load"][w], int(week["sessions"][w]), int(week["delivery"][w])
        attended = int(week["sessions_attended"][w])
        morning, change = week["morning_pain_mean"][w], week["morning_change_mean"][w]
        for j, day in enumerate(SESSION_DAYS[sessions]):
            row: dict[str, Any] = {
                "date": (start + dt.timedelta(days=7 * w + 1 + day)).isoformat(),
                "load": round(load, 3),
                "attended": j < attended,
                "delivery": DELIVERIES[delivery],
            }
            if j < attended:
                for name, value in (("pain_during", week["session_pain_mean"][w]), ("pain_next_morning", morning),
                                    ("rpe", week["rpe_mean"][w]), ("pain_before", morning - change)):
                    if _round(value) is not None:
                        row[name] = _round(value)
            if j == 0 and week["flare_reported"][w] != 0.0:
                row["flare"] = True
            rows.append(row)
    return {"patient": doc_patient, "sessions": rows}, batch
