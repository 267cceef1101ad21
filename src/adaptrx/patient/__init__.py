"""The virtual patient: parameters, batched daily dynamics, observation model and cohorts.

This package knows nothing of Gymnasium; :mod:`adaptrx.envs` adapts it.
"""

from adaptrx.patient.cohort import SPLITS, conditions, load_cohort, load_prior, make_cohort, save_cohort
from adaptrx.patient.constants import HOME_ALONE, MODALITIES, REMOTE, SUPERVISED, ModelConstants
from adaptrx.patient.noise import NoiseStreams
from adaptrx.patient.observation import WeekObservation
from adaptrx.patient.simulator import PatientSimulator, PatientState, WeekResult, stream_keys

__all__ = [
    "HOME_ALONE",
    "MODALITIES",
    "REMOTE",
    "SPLITS",
    "SUPERVISED",
    "ModelConstants",
    "NoiseStreams",
    "PatientSimulator",
    "PatientState",
    "WeekObservation",
    "WeekResult",
    "conditions",
    "load_cohort",
    "load_prior",
    "make_cohort",
    "save_cohort",
    "stream_keys",
]
