"""The clinician's door: history parsing and validation, patient fitting, ``recommend()``, CLI and web app.

Data flows in one direction: a session log (:mod:`~adaptrx.clinic.history`) is fitted with the batched
simulator (:mod:`~adaptrx.clinic.fitting`), a trained policy or a protocol proposes next week's prescription
behind the safety rules and the forecast compares it with holding and with the pain-monitoring model
(:mod:`~adaptrx.clinic.recommend`); :mod:`~adaptrx.clinic.cli` and :mod:`~adaptrx.clinic.web` are the doors.
"""

from adaptrx.clinic.fitting import PatientFit, fit_patient
from adaptrx.clinic.history import FieldError, History, HistoryError, Intake, load_history, parse_history
from adaptrx.clinic.recommend import Recommendation, default_policy_dir, recommend

__all__ = [
    "FieldError",
    "History",
    "HistoryError",
    "Intake",
    "PatientFit",
    "Recommendation",
    "default_policy_dir",
    "fit_patient",
    "load_history",
    "parse_history",
    "recommend",
]
