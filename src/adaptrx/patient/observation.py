"""Observation model: what a clinic can see of a virtual patient (``DESIGN.md`` 2.4).

Pain reports are integer NRS (0-10) with report noise whose sd grows with pain; diary days go missing
more often when motivation is low; the function score (0-100) is noisy; RPE is reported per session; a
capacity test happens every ``capacity_test_every`` weeks. True latent values never appear here.
Missing values are ``NaN``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from adaptrx.patient.constants import ModelConstants

if TYPE_CHECKING:  # avoid an import cycle; the simulator imports this module
    from adaptrx.patient.noise import NoiseStreams
    from adaptrx.patient.simulator import PatientParams, PatientState


@dataclass
class WeekObservation:
    """One week as a clinic records it; arrays of shape ``(n,)``, ``NaN`` where nothing was recorded."""

    session_pain_mean: np.ndarray  # mean in-session NRS of attended sessions
    session_pain_max: np.ndarray  # max in-session NRS
    morning_pain_mean: np.ndarray  # mean next-morning NRS after sessions
    morning_change_mean: np.ndarray  # mean (next-morning NRS - pre-session NRS)
    diary_pain: np.ndarray  # mean of the diary days reported (NRS)
    diary_days: np.ndarray  # number of diary days reported (0-7)
    rpe_mean: np.ndarray  # mean session RPE (0-10)
    attendance: np.ndarray  # fraction of prescribed sessions attended (NaN if none prescribed)
    sessions_attended: np.ndarray  # count
    flare_reported: np.ndarray  # bool
    function: np.ndarray  # function score 0-100 (noisy)
    capacity_test: np.ndarray  # x baseline capacity, NaN unless tested this week
    dropped_out: np.ndarray  # bool: the patient told the clinic they stopped


def nrs(true: np.ndarray, z: np.ndarray, k: ModelConstants) -> np.ndarray:
    """Integer 0-10 report of a true pain level with severity-dependent noise."""
    sd = k.nrs_sd + k.nrs_sd_severity * true
    return np.clip(np.rint(true + sd * z), 0.0, 10.0)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    count = mask.sum(axis=0)
    total = np.where(mask, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def observe_week(
    k: ModelConstants,
    noise: NoiseStreams,
    s: PatientState,
    pains: np.ndarray,
    sess_pain: np.ndarray,
    attended: np.ndarray,
    rel_load: np.ndarray,
    sessions: np.ndarray,
    load: np.ndarray,
    delivery: np.ndarray,
    flares: np.ndarray,
    function: np.ndarray,
    u_miss: np.ndarray,
    z_sess: np.ndarray,
    z_morn: np.ndarray,
    z_diary: np.ndarray,
    z_rpe: np.ndarray,
) -> WeekObservation:
    """Turn one simulated week into the clinic's records.

    ``pains`` has shape ``(8, n)``: true pain on the 7 days of the week plus the preceding day in row 0;
    the ``(7, n)`` arrays are per day of the week. Called by the simulator at the end of each week.
    """
    day_pain = pains[1:]
    sess_obs = nrs(np.nan_to_num(sess_pain), z_sess, k)
    morning_obs = nrs(np.vstack([day_pain[1:], day_pain[-1:]]), z_morn, k)
    reported = u_miss >= k.diary_missing + k.diary_missing_motivation * (1.0 - s.motivation)
    diary_obs = nrs(day_pain, z_diary, k)  # also the pre-session report on session days
    rpe_true = np.clip(10.0 * rel_load * (1.0 + 0.3 * s.fatigue), 0.0, 10.0)
    rpe_obs = np.clip(np.rint(rpe_true + k.rpe_sd * z_rpe), 0.0, 10.0)
    n_att = attended.sum(axis=0)
    weekly = noise.normal(["obs_function", "obs_capacity"], s.day, 1)[:, 0, :, 0]
    tested = (s.week + 1) % k.capacity_test_every == 0
    return WeekObservation(
        session_pain_mean=_masked_mean(sess_obs, attended),
        session_pain_max=np.where(n_att > 0, np.where(attended, sess_obs, -1.0).max(axis=0), np.nan),
        morning_pain_mean=_masked_mean(morning_obs, attended),
        morning_change_mean=_masked_mean(morning_obs - diary_obs, attended),
        diary_pain=_masked_mean(diary_obs, reported),
        diary_days=reported.sum(axis=0).astype(np.float64),
        rpe_mean=_masked_mean(rpe_obs, attended),
        attendance=np.where(sessions > 0, n_att / np.maximum(sessions, 1), np.nan),
        sessions_attended=n_att.astype(np.float64),
        flare_reported=flares > 0,
        function=np.clip(np.rint(function + k.function_sd * weekly[0]), 0.0, 100.0),
        capacity_test=np.where(tested, s.capacity * (1.0 + k.capacity_test_cv * weekly[1]), np.nan),
        dropped_out=s.dropped_out.copy(),
    )


def intake_observation(
    p: PatientParams, intake_pain: np.ndarray, noise: NoiseStreams, k: ModelConstants
) -> dict[str, np.ndarray]:
    """Intake covariates: age, single intake NRS, noisy CSI-like sensitization (0-100) and TSK-11-like
    fear (11-44) questionnaire scores, preferred sessions/week and intake capacity test (= 1 by unit)."""
    z = noise.normal(["obs_intake"], 0, 1, slots=3)[0, 0]  # (n, 3)
    return {
        "age": p.age.copy(),
        "pain": nrs(intake_pain, z[:, 0], k),
        "sensitization_score": np.clip(np.rint(25.0 + 22.0 * p.s0 + 7.0 * z[:, 1]), 0.0, 100.0),
        "fear_score": np.clip(np.rint(11.0 + 33.0 * p.phi0 + 3.0 * z[:, 2]), 11.0, 44.0),
        "preferred_sessions": p.preferred_sessions.copy(),
    }
