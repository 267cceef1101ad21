"""The observation of the progression environments: what a clinic can see, as a flat float32 vector.

Every feature is a clinical record divided by a fixed scale so that it lies in ``[0, 1]`` (``morning_change``
in ``[-1, 1]``); :data:`FEATURES` lists name, scale and bounds, and :func:`to_units` turns an observation back
into clinical units (NRS points, sessions, fraction of baseline capacity, ...), which is how rule-based
protocols read it. Nothing here is a latent variable of the patient model.

========================  =======  ===============================================================
feature                   scale    meaning (clinical units)
========================  =======  ===============================================================
intake_age                100      age (years)
intake_pain               10       single NRS at intake
intake_sensitization      100      CSI-like sensitization questionnaire (0-100)
intake_fear               44       TSK-11-like fear of movement (11-44)
intake_preferred_sessions 5        sessions/week the patient says they would do
intake_function           100      function questionnaire at intake (0-100, higher is better)
progress                  1        weeks elapsed / episode length
load                      1.5      last prescribed load (x baseline capacity)
sessions                  5        sessions prescribed last week
supervised, remote        1        last week's delivery (both 0: home alone)
session_pain_mean/max     10       in-session NRS last week (0 without sessions)
morning_change            10       next-morning NRS minus pre-session NRS (0 without sessions)
diary_pain                10       mean diary NRS (last reported week carried forward)
diary_days                7        diary days reported last week
rpe                       10       mean session RPE (0 without sessions)
attendance                1        fraction of prescribed sessions attended (0 if none prescribed)
sessions_attended         5        sessions attended last week
flare_reported            1        the patient reported a flare last week
function                  100      latest weekly function score (intake score until the first week)
capacity_test             2        latest capacity test (x baseline capacity; 1 at intake)
<x>_lag<k>                as <x>   ``diary_pain``, ``session_pain_max``, ``attendance``, ``load``,
                                   ``flare_reported`` of week t-k, k = 2..4 (0 before the first week)
========================  =======  ===============================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adaptrx.patient.kernel import In

_BASE: tuple[tuple[str, float, float, float], ...] = (
    ("intake_age", 100.0, 0.0, 1.0),
    ("intake_pain", 10.0, 0.0, 1.0),
    ("intake_sensitization", 100.0, 0.0, 1.0),
    ("intake_fear", 44.0, 0.0, 1.0),
    ("intake_preferred_sessions", 5.0, 0.0, 1.0),
    ("intake_function", 100.0, 0.0, 1.0),
    ("progress", 1.0, 0.0, 1.0),
    ("load", 1.5, 0.0, 1.0),
    ("sessions", 5.0, 0.0, 1.0),
    ("supervised", 1.0, 0.0, 1.0),
    ("remote", 1.0, 0.0, 1.0),
    ("session_pain_mean", 10.0, 0.0, 1.0),
    ("session_pain_max", 10.0, 0.0, 1.0),
    ("morning_change", 10.0, -1.0, 1.0),
    ("diary_pain", 10.0, 0.0, 1.0),
    ("diary_days", 7.0, 0.0, 1.0),
    ("rpe", 10.0, 0.0, 1.0),
    ("attendance", 1.0, 0.0, 1.0),
    ("sessions_attended", 5.0, 0.0, 1.0),
    ("flare_reported", 1.0, 0.0, 1.0),
    ("function", 100.0, 0.0, 1.0),
    ("capacity_test", 2.0, 0.0, 1.0),
)
#: Weekly records kept in the history window, and the lags (weeks before the last one) it holds.
HISTORY_FEATURES: tuple[str, ...] = ("diary_pain", "session_pain_max", "attendance", "load", "flare_reported")
HISTORY_LAGS: tuple[int, ...] = (2, 3, 4)

_SCALE_OF = {name: scale for name, scale, _, _ in _BASE}
#: ``(name, scale, low, high)`` of every feature, in observation order (bounds in scaled units).
FEATURES: tuple[tuple[str, float, float, float], ...] = _BASE + tuple(
    (f"{name}_lag{lag}", _SCALE_OF[name], 0.0, 1.0) for lag in HISTORY_LAGS for name in HISTORY_FEATURES
)
FEATURE_NAMES: tuple[str, ...] = tuple(f[0] for f in FEATURES)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
SCALES = np.array([f[1] for f in FEATURES])
LOW = np.array([f[2] for f in FEATURES], dtype=np.float32)
HIGH = np.array([f[3] for f in FEATURES], dtype=np.float32)

#: Intake records (rows of the simulator's intake matrix) behind the first six features, in order.
_INTAKE_RECORDS = ("age", "pain", "sensitization_score", "fear_score", "preferred_sessions", "function")
if tuple(m.name for m in In)[: len(_INTAKE_RECORDS)] != _INTAKE_RECORDS:  # pragma: no cover - layout guard
    raise ImportError("adaptrx.envs.features: the intake rows of adaptrx.patient.kernel.In changed")
#: ``(feature row, intake row)`` of every feature an episode starts from its intake record: the six intake
#: features, and diary pain and function, carried until first reported. At the start of an episode ``load``
#: is the env's initial load, ``capacity_test`` is 1 and the other features are 0
#: (:func:`adaptrx.envs.compiled_step.start_features`).
INTAKE_SOURCES: tuple[tuple[int, int], ...] = (
    *((row, row) for row in range(len(_INTAKE_RECORDS))),
    (FEATURE_INDEX["diary_pain"], int(In.pain)),
    (FEATURE_INDEX["function"], int(In.function)),
)


def to_units(obs: np.ndarray) -> dict[str, np.ndarray]:
    """Observation(s) of shape ``(..., n_features)`` as a dict of clinical-unit arrays keyed by feature name."""
    x = np.asarray(obs, dtype=np.float64)
    if x.shape[-1] != len(FEATURES):
        raise ValueError(f"obs: expected {len(FEATURES)} features in the last axis, got {x.shape[-1]}")
    units = x * SCALES
    return {name: units[..., i] for i, name in enumerate(FEATURE_NAMES)}


class FeatureBuffer:
    """Per-patient observation state of a batch: the intake block, carried-forward records and history.

    ``values`` is float64 ``(n_features, n)`` in clinical units, one column per patient; the compiled env
    step (:func:`adaptrx.envs.compiled_step.env_step`) updates it each week and writes the scaled observation,
    and :func:`~adaptrx.envs.compiled_step.start_features` starts episodes; :meth:`observation` gives the same
    scaling.
    """

    def __init__(self, n: int) -> None:
        self.values = np.zeros((len(FEATURES), n))  # clinical units, one column per patient

    @staticmethod
    def _scaled(values: np.ndarray) -> np.ndarray:
        """Scaled, clipped float32 observations ``(m, n_features)`` of feature columns ``(n_features, m)``."""
        return np.minimum(np.maximum(values.T / SCALES, LOW), HIGH).astype(np.float32)  # np.clip, minus its overhead

    def observation(self, index: np.ndarray | None = None) -> np.ndarray:
        """Scaled float32 observations, shape ``(n, n_features)`` (or of patients ``index``), clipped to the
        documented bounds."""
        return self._scaled(self.values if index is None else self.values[:, index])

    def state(self) -> dict[str, Any]:
        return {"values": self.values.copy()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.values = np.array(state["values"], dtype=np.float64, copy=True)
