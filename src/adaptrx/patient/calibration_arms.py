"""Scripted trial arms and a batched runner for calibration virtual trials.

These arms are deliberately simple, fixed schedules that mirror the arms of the trials behind the
calibration targets (no exercise, attention control, GLA:D-like supervised programme, ...). They are not
the clinical protocol library (``adaptrx.protocols``); they exist so the patient model can be calibrated
without depending on anything above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from adaptrx.patient.constants import HOME_ALONE, SUPERVISED, ModelConstants
from adaptrx.patient.simulator import PatientSimulator, WeekResult

#: (week index, simulator) -> (load per session, sessions, delivery), each broadcastable to (n,)
Schedule = Callable[[int, PatientSimulator], tuple[np.ndarray | float, np.ndarray | int, np.ndarray | int]]

#: T7 dropout targets by week 16 (Vancampfort 2024): arm key -> (target, accepted low, accepted high).
DROPOUT_TARGETS: dict[str, tuple[float, float, float]] = {
    "knee_oa/supervised_16w": (0.13, 0.09, 0.17),
    "knee_oa/home_16w": (0.21, 0.16, 0.26),
    "fibromyalgia/exercise_2x": (0.19, 0.14, 0.24),
}


@dataclass(frozen=True)
class Arm:
    """A scripted trial arm."""

    name: str
    schedule: Schedule
    modality: str = "resistance"
    description: str = ""


def _progressive(start: float, step: float, cap: float) -> Callable[[int], float]:
    return lambda w: min(cap, start + step * w)


def programme(
    name: str,
    sessions: int,
    delivery: int,
    weeks: int,
    load: Callable[[int, PatientSimulator], np.ndarray | float],
    modality: str = "resistance",
    description: str = "",
) -> Arm:
    """An arm that prescribes ``sessions``/week with ``delivery`` for ``weeks`` weeks, then nothing."""

    def schedule(w: int, sim: PatientSimulator) -> tuple[np.ndarray | float, int, int]:
        if w >= weeks:
            return 0.0, 0, HOME_ALONE
        return load(w, sim), sessions, delivery

    return Arm(name, schedule, modality, description)


def no_exercise() -> Arm:
    """Untreated control: no sessions, no contact."""
    return Arm("none", lambda w, sim: (0.0, 0, HOME_ALONE), description="no exercise, no care contact")


def attention_control(weeks: int = 12, contacts: int = 2) -> Arm:
    """In care, no loading: supervised contacts at zero load (education/sham), matched for contact time
    with a 2x/week programme as attention-control arms are."""
    return programme("attention_control", contacts, SUPERVISED, weeks, lambda w, sim: 0.0,
                     description=f"{contacts} supervised contacts/week without loading")


def gradual_load(w: int, sim: PatientSimulator) -> float:
    """GLA:D-like progression: 0.40 of baseline capacity, +0.02 per week, to at most 0.65."""
    return _progressive(0.40, 0.02, 0.65)(w)


def relative_load(fraction: float, ramp_weeks: int = 3) -> Callable[[int, PatientSimulator], np.ndarray]:
    """A fixed fraction of current capacity (as a capacity test would show), reached over ``ramp_weeks``."""

    def load(w: int, sim: PatientSimulator) -> np.ndarray:
        ramp = min(1.0, (w + 1) / (ramp_weeks + 1)) if ramp_weeks else 1.0
        start = min(fraction, 0.4)
        return (start + (fraction - start) * ramp) * sim.state.capacity

    return load


def abrupt_load(level: float) -> Callable[[int, PatientSimulator], float]:
    """High load from week 1."""
    return lambda w, sim: level


def geometric_load(start: float, factor: float, cap: float) -> Callable[[int, PatientSimulator], float]:
    """``start`` x ``factor`` ** week, capped (e.g. +50 %/week)."""
    return lambda w, sim: min(cap, start * factor**w)


@dataclass
class ArmOutcome:
    """Per-week true outcomes of an arm, arrays of shape ``(weeks, n)``, plus intake values."""

    arm: str
    baseline_pain: np.ndarray  # true pain on the enrolment day (n,)
    pain: np.ndarray
    function: np.ndarray
    capacity: np.ndarray
    flares: np.ndarray
    attended: np.ndarray
    prescribed: np.ndarray
    dropped_out: np.ndarray
    baseline_function: np.ndarray
    sensitization: np.ndarray  # S0 of each patient (n,), for subgroup targets

    def week(self, w: int) -> np.ndarray:
        """Mean true pain of week ``w`` (1-based, as trials report), per patient."""
        return self.pain[w - 1]

    def responders(self, w: int) -> np.ndarray:
        """Farrar 2001: >= 30 % or >= 2 NRS lower than baseline at week ``w``."""
        change = self.baseline_pain - self.week(w)
        return (change >= 2.0) | (change >= 0.3 * self.baseline_pain)

    def summary(self, w: int) -> dict[str, float]:
        return {
            "arm": self.arm,
            "pain_baseline": float(self.baseline_pain.mean()),
            f"pain_w{w}": float(self.week(w).mean()),
            "pain_change": float((self.week(w) - self.baseline_pain).mean()),
            "responders": float(self.responders(w).mean()),
            "flares_per_patient": float(self.flares[:w].sum(axis=0).mean()),
            "dropout": float(self.dropped_out[w - 1].mean()),
            "capacity_change": float(self.capacity[w - 1].mean() - 1.0),
            "function_change": float((self.function[w - 1] - self.baseline_function).mean()),
            "attendance": float(self.attended[:w].sum() / max(1, self.prescribed[:w].sum())),
        }


def run_arm(
    cohort: pd.DataFrame,
    arm: Arm,
    weeks: int,
    seed: int = 0,
    constants: ModelConstants | None = None,
    keys: np.ndarray | None = None,
    progress: bool = False,
) -> ArmOutcome:
    """Run one arm on a cohort for ``weeks`` weeks (batched; same noise for the same patients and seed): the one
    fixed-schedule loop of the patient layer (the calibration suite and the personalization study).

    ``keys``: the patients' noise keys (``uint64``, one per row) instead of those of their ids and ``seed``, e.g.
    to give copies of one patient the same noise; ``progress`` shows a bar over the weeks."""
    sim = PatientSimulator(cohort, seed=seed, modality=arm.modality, constants=constants, keys=keys)
    baseline = sim.state.pain.copy()
    base_fn = sim.baseline_function()
    rows: list[WeekResult] = []
    for w in tqdm(range(weeks), desc=arm.name, disable=not progress):
        load, sessions, delivery = arm.schedule(w, sim)
        rows.append(sim.step_week(load, sessions, delivery))
    return ArmOutcome(
        arm=arm.name,
        baseline_pain=baseline,
        pain=np.stack([r.pain for r in rows]),
        function=np.stack([r.function for r in rows]),
        capacity=np.stack([r.capacity for r in rows]),
        flares=np.stack([r.flares for r in rows]),
        attended=np.stack([r.sessions_attended for r in rows]),
        prescribed=np.stack([r.sessions_prescribed for r in rows]),
        dropped_out=np.stack([r.dropped_out for r in rows]),
        baseline_function=base_fn,
        sensitization=sim.p.s0.copy(),
    )
