"""Observation model: what a clinic can see of a virtual patient (``DESIGN.md`` 2.4).

Pain reports are integer NRS (0-10) with report noise whose sd grows with pain (:func:`nrs`); diary days
go missing more often when motivation is low; a session adds an in-session report, a next-morning report
(compared with that day's diary report) and an RPE (0-10); the function score (0-100) is noisy; a
capacity test happens every ``capacity_test_every`` weeks. True latent values never appear here.
Missing values are ``NaN``.

The observation is computed by the compiled kernel (:func:`adaptrx.patient.kernel.step_week`) in the
same pass as the dynamics, from report-noise channels of the patient's own streams; the intake
observation (single NRS, noisy sensitization and fear questionnaires) by
:func:`adaptrx.patient.kernel.init_patients`. This module defines the record a clinic gets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adaptrx.patient import kernel
from adaptrx.patient.constants import ModelConstants


@dataclass
class WeekObservation:
    """One week as a clinic records it; arrays of shape ``(n,)``, ``NaN`` where nothing was recorded.

    Float fields are row views of the simulator's week output; ``flare_reported`` and ``dropped_out`` are bool.
    """

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
    """Integer 0-10 report of a true pain level (NRS) with severity-dependent noise (standard normals ``z``);
    the kernel's report function, broadcast over arrays."""
    t, zz = np.broadcast_arrays(np.asarray(true, dtype=np.float64), np.asarray(z, dtype=np.float64))
    flat = kernel.nrs_array(np.ascontiguousarray(t).reshape(-1), np.ascontiguousarray(zz).reshape(-1),
                            float(k.nrs_sd), float(k.nrs_sd_severity))
    return flat.reshape(t.shape)
