"""Batched virtual patients, stepped one prescribed week at a time.

:class:`PatientSimulator` is the Python face of the compiled kernel (:mod:`adaptrx.patient.kernel`), the
single implementation of the dynamics: one call of ``kernel.step_week`` advances every patient of a batch
(one or millions) by 7 days, looping over patients and days in machine code, and writes the week's true
outcomes and the clinic's observation into one freshly allocated ``(n_out, n)`` array whose rows become
the fields of :class:`WeekResult` and :class:`WeekObservation`. Parameters (cohort columns plus derived
per-patient constants) live in one ``(n_params, n)`` matrix and the latent state in one ``(n_state, n)``
matrix; :class:`PatientState` and :class:`PatientParams` are views of their rows. There is no Python loop
over patients. Randomness is counter-based (:class:`~adaptrx.patient.noise.NoiseStreams`): a patient's
draws depend only on its own key, the day, the channel and the slot (common random numbers across
policies, batch sizes and batch orders).

A simulator is built from a cohort DataFrame or, without pandas on the hot path, from a mapping of
column arrays; :meth:`PatientSimulator.replace` swaps single patients for new ones on their intake day
(an environment reset) without touching the others, and :meth:`~PatientSimulator.get_state` /
:meth:`~PatientSimulator.set_state` copy the state matrix for what-if rollouts.

Time base: the intake visit is day 0; week ``w`` (0-based) covers days ``7w + 1`` to ``7w + 7``.
Sessions of a week fall on fixed weekdays (:data:`~adaptrx.patient.constants.SESSION_DAYS`).

Mechanisms (``DESIGN.md`` 2.2), in order of the daily update (the kernel's comments use these numbers):

1. attendance of a prescribed session (motivation, habit, fear, pain, flare, burden, delivery, class);
2. acute/chronic load averages, tolerance envelope ``E = envelope * C * (1 - k * F)``; irritation grows
   with the squared relative excess of session load and daily-life demand over ``E`` and with
   acute:chronic spikes; background flares add irritation;
3. fatigue, capacity adaptation to relative load (saturating at the ceiling) and detraining;
4. pain = (1 + S + c Phi) (drive + w D) - X + eta (AR(1)), clipped to 0-10; in-session pain adds a
   load term that is not harm;
5. desensitization by tolerable, regular exposure (frequency and supervision matter more than
   intensity); irritation sensitizes; S relaxes toward S0;
6. fear learning from prediction errors and flares; context analgesia in care; motivation and habit.

At the end of the week: dropout hazard, the observation model (what a clinic sees) and true outcomes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from adaptrx.patient import kernel
from adaptrx.patient.cohort import ADHERENCE_CLASSES
from adaptrx.patient.constants import MODALITIES, ModelConstants
from adaptrx.patient.kernel import In, Out, Pr, St
from adaptrx.patient.noise import NoiseStreams, blake2b_keys
from adaptrx.patient.observation import WeekObservation

#: Cohort column -> row of the parameter matrix, in row order (``adherence_class`` is mapped to its class index).
PARAM_COLUMNS: dict[str, Pr] = {
    "age": Pr.age,
    "baseline_pain": Pr.baseline_pain,
    "sensitization": Pr.s0,
    "capacity": Pr.capacity_norm,
    "activity_demand": Pr.activity_demand,
    "fear": Pr.phi0,
    "motivation": Pr.m0,
    "preferred_sessions": Pr.preferred_sessions,
    "envelope": Pr.envelope,
    "adaptation_gain": Pr.adaptation_gain,
    "capacity_ceiling": Pr.capacity_ceiling,
    "desensitization_gain": Pr.desensitization_gain,
    "sensitization_gain": Pr.sensitization_gain,
    "fear_propensity": Pr.fear_propensity,
    "fluctuation_sd": Pr.fluctuation_sd,
    "flare_hazard": Pr.flare_hazard,
    "context_response": Pr.context_response,
    "detraining_tau": Pr.detraining_tau,
    "function_offset": Pr.function_offset,
}
_CLASS_INDEX = {c: float(i) for i, c in enumerate(ADHERENCE_CLASSES)}
_DEFAULT_CONSTANTS = ModelConstants()
_K_CACHE: dict[tuple[int, str], tuple[ModelConstants, np.ndarray]] = {}
SIMULATOR_ERRORS = {
    1: "load: must not be NaN",
    2: "sessions: must be integers in 0-5",
    3: "delivery: must be 0 (home alone), 1 (remote) or 2 (supervised)",
}


_FEW_KEYS = 4  # stream_keys hashes up to this many ids with hashlib directly
_MAX_PENDING = 64  # PatientSimulator.replace: row replacements held before they are written into the table


def stream_keys(patient_ids: list[str] | np.ndarray | pd.Series, seed: int | np.ndarray) -> np.ndarray:
    """Noise-stream key of each patient for a given seed (stable across runs and platforms).

    The key depends only on ``(patient_id, seed)``, so a patient keeps its noise whatever batch it is in: the
    8-byte BLAKE2b digest of ``str(patient_id)`` (UTF-8) salted with the seed's 8 little-endian bytes, read as
    a little-endian ``uint64``. ``seed``: an integer in ``[0, 2**64)``, or an integer array with one seed per
    patient. All keys are hashed in one compiled call (:func:`~adaptrx.patient.noise.blake2b_keys`).
    """
    if len(patient_ids) <= _FEW_KEYS:  # a single env's reset: hashlib beats the array set-up
        seeds = np.asarray(seed)
        if seeds.ndim:
            if seeds.shape != (len(patient_ids),) or seeds.dtype.kind not in "iu":
                raise ValueError(f"seed: need one integer in [0, 2**64) per patient, got {seeds!r}")
        else:
            seeds = np.full(len(patient_ids), seed, dtype=object)
        if any(int(x) < 0 or int(x) >= 2**64 for x in seeds.tolist()):
            raise ValueError(f"seed: must be integers in [0, 2**64), got {seed}")
        return np.array([_blake2b_key(str(pid), int(x)) for pid, x in zip(patient_ids, seeds.tolist(), strict=True)],
                        dtype=np.uint64)
    text = np.asarray(patient_ids, dtype=np.str_).reshape(-1)
    m = len(text)
    if np.ndim(seed) == 0:
        if int(seed) < 0 or int(seed) >= 2**64:
            raise ValueError(f"seed: must be an integer in [0, 2**64), got {seed}")
        salts = np.full(m, int(seed), dtype=np.uint64)
    else:
        seeds = np.asarray(seed)
        if seeds.shape != (m,) or seeds.dtype.kind not in "iu" or (seeds.dtype.kind == "i" and (seeds < 0).any()):
            raise ValueError(f"seed: need one integer in [0, 2**64) per patient ({m}), got {seeds!r}")
        salts = seeds.astype(np.uint64)
    if m == 0:
        return np.empty(0, dtype=np.uint64)
    unicode = isinstance(patient_ids, np.ndarray) and patient_ids.dtype.kind == "U"  # can hold no trailing NUL
    if not unicode and int(np.strings.str_len(text).sum()) != sum(map(len, map(str, patient_ids))):  # ids ending in NUL
        return np.array([_blake2b_key(str(pid), s) for pid, s in zip(patient_ids, salts.tolist(), strict=True)],
                        dtype=np.uint64)
    try:
        data = text.astype(np.bytes_)  # ASCII ids (the usual case): a plain cast, much faster than encode
    except UnicodeEncodeError:
        data = np.strings.encode(text, "utf-8")
    width = max(data.dtype.itemsize, 1)
    return blake2b_keys(np.frombuffer(data.tobytes(), dtype=np.uint8).reshape(m, width),
                        np.strings.str_len(data).astype(np.int64), salts)


def _blake2b_key(patient_id: str, seed: int) -> int:
    """:func:`stream_keys` of one patient by :mod:`hashlib` (reference; ids that NumPy strings cannot hold)."""
    salt = int(seed).to_bytes(8, "little", signed=False)
    return int.from_bytes(hashlib.blake2b(patient_id.encode(), digest_size=8, salt=salt).digest(), "little")


def padded_matrix(rows: int, n: int) -> np.ndarray:
    """An uninitialised float64 ``(rows, n)`` matrix (a view) whose rows lie an odd number of 64-byte cache
    lines apart (below 64 columns: a plain contiguous matrix). The kernels read and write a patient's column
    across many rows; with rows ``8 n`` bytes apart (``n`` a power of two, e.g. 4096) those all fall into the
    same few cache sets and evict each other (the week kernel is ~20 % slower). Values and results are the
    same for any layout."""
    if n <= 56:  # under 8 cache lines a row (a single env): a plain contiguous matrix, nothing to evict
        return np.empty((rows, n))
    lines = -(-int(n) // 8)
    if lines % 2 == 0:
        lines += 1
    return np.empty((int(rows), lines * 8))[:, : int(n)]


def _padded_copy(matrix: np.ndarray) -> np.ndarray:
    """A copy of a 2-D float64 matrix in a :func:`padded_matrix`."""
    out = padded_matrix(*matrix.shape)
    out[...] = matrix
    return out


def _constants_vector(k: ModelConstants, modality: str) -> np.ndarray:
    """The kernel's (read-only) constants vector, built once per constants object and modality."""
    hit = _K_CACHE.get((id(k), modality))
    if hit is not None and hit[0] is k:
        return hit[1]
    vector = kernel.constants_vector(k, MODALITIES[modality], ADHERENCE_CLASSES)
    vector.flags.writeable = False
    if len(_K_CACHE) >= 64:
        _K_CACHE.clear()
    _K_CACHE[(id(k), modality)] = (k, vector)
    return vector


def _raw_params(cohort: Mapping[str, Any], m: int) -> np.ndarray:
    """Cohort columns as the first ``kernel.N_RAW_PARAMS`` rows of a parameter matrix, shape ``(.., m)``."""
    for name in (*PARAM_COLUMNS, "adherence_class"):
        if name not in cohort:
            raise ValueError(f"cohort: missing column {name!r}")
    raw = np.empty((kernel.N_RAW_PARAMS, m))
    try:  # PARAM_COLUMNS lists the rows in order
        block = np.array([cohort[name] for name in PARAM_COLUMNS], dtype=np.float64)
    except ValueError:  # ragged
        block = None
    if block is None or block.shape != (len(PARAM_COLUMNS), m):
        bad = next(name for name in PARAM_COLUMNS if np.shape(cohort[name]) != (m,))
        raise ValueError(f"cohort: column {bad!r} must have shape ({m},), got {np.shape(cohort[bad])}")
    raw[: len(PARAM_COLUMNS)] = block
    classes = [_CLASS_INDEX.get(c, -1.0) for c in cohort["adherence_class"]]
    if -1.0 in classes or len(classes) != m:
        unknown = {c for c in cohort["adherence_class"] if c not in _CLASS_INDEX}
        raise ValueError(f"cohort.adherence_class: {m} values from {ADHERENCE_CLASSES} needed; "
                         f"unknown class(es) {sorted(map(str, unknown))}")
    raw[Pr.adherence_class] = classes
    return raw


def _as_columns(cohort: pd.DataFrame | Mapping[str, Any]) -> Mapping[str, Any]:
    """A cohort table as a column mapping (numpy arrays for a DataFrame; a mapping is returned as is)."""
    if isinstance(cohort, pd.DataFrame):
        return {name: cohort[name].to_numpy() for name in cohort.columns}
    return cohort


def _action(value: np.ndarray | float, n: int, name: str) -> np.ndarray:
    """An action as a contiguous float64 array of length 1 (broadcast by the kernel) or ``n``."""
    out = np.ascontiguousarray(value, dtype=np.float64)  # scalars become shape (1,)
    if out.ndim != 1 or (out.shape[0] != n and out.shape[0] != 1):
        raise ValueError(f"{name}: expected a scalar or shape ({n},), got shape {np.shape(value)}")
    return out


class _RowViews:
    """Attributes that are row views of a matrix (``_rows``: attribute -> row)."""

    _rows: ClassVar[dict[str, int]] = {}

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def __getattr__(self, name: str) -> np.ndarray:
        row = type(self)._rows.get(name)
        if row is None:
            raise AttributeError(name)
        return self.matrix[row]


class PatientParams(_RowViews):
    """Per-patient parameters, float views of shape ``(n,)`` into the simulator's parameter matrix.

    Attributes are the rows of :class:`~adaptrx.patient.kernel.Pr` (e.g. ``s0``, ``phi0``, ``envelope``,
    ``demand`` in baseline-capacity units, ``drive``); ``adherence_class`` is an int index into
    ``ADHERENCE_CLASSES``. Units as in the cohort YAML.
    """

    _rows: ClassVar[dict[str, int]] = {m.name: int(m) for m in Pr}

    @property
    def adherence_class(self) -> np.ndarray:
        return self.matrix[Pr.adherence_class].astype(np.int64)


@dataclass(frozen=True)
class PatientState:
    """Latent state, arrays of shape ``(n,)``. Loads in baseline-capacity units, pain in NRS.

    The simulator's ``state`` holds float64 row views of its state matrix (write through them to change
    the state; ``in_flare``/``dropped_out`` are 0/1 and ``day``/``week`` whole numbers there).
    :meth:`PatientSimulator.get_state` returns copies with the dtypes noted below.
    """

    capacity: np.ndarray  # C, x baseline capacity (1.0 at intake)
    fatigue: np.ndarray  # F, acute fatigue (>= 0)
    acute_load: np.ndarray  # AL, 7-day EWMA of daily session load
    chronic_load: np.ndarray  # CL, 28-day EWMA of daily session load
    session_rate: np.ndarray  # sessions/week, 7-day EWMA
    irritation: np.ndarray  # D from exercise spikes and background flares (>= 0)
    demand_irritation: np.ndarray  # D from daily-life demand above the envelope (>= 0)
    in_flare: np.ndarray  # bool, exercise/background irritation above the flare threshold
    sensitization: np.ndarray  # S (>= 0)
    fear: np.ndarray  # Phi (0-1)
    expected_increase: np.ndarray  # expected in-session pain increase (NRS)
    motivation: np.ndarray  # M (0-1)
    habit: np.ndarray  # H (0-1)
    context: np.ndarray  # X, contextual analgesia (NRS)
    eta: np.ndarray  # AR(1) pain fluctuation (NRS)
    pain: np.ndarray  # today's true pain (NRS 0-10)
    pain_recent: np.ndarray  # 28-day EWMA of true pain (perceived trend)
    dropped_out: np.ndarray  # bool
    day: np.ndarray  # int64, next day to simulate
    week: np.ndarray  # int64, weeks simulated since intake
    flare_memory: np.ndarray  # flare weeks, each fading with flare_memory_tau (weeks)

    @classmethod
    def of(cls, matrix: np.ndarray) -> PatientState:
        """Row views of a ``(len(St), n)`` state matrix."""
        return cls(**{m.name: matrix[m] for m in St})

    def copy(self) -> PatientState:
        """Detached copies (float64, as stored)."""
        return PatientState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def as_dict(self) -> dict[str, np.ndarray]:
        """Copies of every latent variable, keyed by field name, with the dtypes of the field comments."""
        return _state_dict(np.stack([getattr(self, m.name) for m in St]))


_STATE_FIELDS = tuple(m.name for m in St)  # state matrix row order
_STATE_NAMES = frozenset(_STATE_FIELDS)


def _state_dict(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """A state matrix (owned by the caller) as a dict of row views, bool/int fields converted."""
    out = dict(zip(_STATE_FIELDS, matrix, strict=True))
    out["in_flare"] = matrix[int(St.in_flare)] != 0.0
    out["dropped_out"] = matrix[int(St.dropped_out)] != 0.0
    out["day"] = matrix[int(St.day)].astype(np.int64)
    out["week"] = matrix[int(St.week)].astype(np.int64)
    return out


@dataclass
class WeekResult:
    """True outcomes of one simulated week (arrays of shape ``(n,)``) plus what a clinic observed.

    Float fields are row views of the week's output array (one allocation per week); ``flares``,
    ``sessions_*`` are int64 and ``dropped_out``/``new_dropout`` bool copies.
    """

    pain: np.ndarray  # mean true daily pain (NRS)
    pain_max: np.ndarray  # max true daily pain
    session_pain_max: np.ndarray  # max true in-session pain (NaN without sessions)
    function: np.ndarray  # true function score (0-100)
    capacity: np.ndarray  # C at the end of the week
    flares: np.ndarray  # int, flare onsets this week
    sessions_prescribed: np.ndarray  # int
    sessions_attended: np.ndarray  # int
    relative_load: np.ndarray  # mean load / capacity of attended sessions (0 if none)
    dropped_out: np.ndarray  # bool, out of the programme at the end of this week
    new_dropout: np.ndarray  # bool, dropped out during this week
    observation: WeekObservation

    @property
    def flare(self) -> np.ndarray:
        return self.flares > 0


def week_result(out: np.ndarray) -> WeekResult:
    """A :class:`WeekResult` of views into a week's output matrix (rows named by :class:`kernel.Out`)."""
    counts = out[Out.flares : Out.sessions_attended + 1].astype(np.int64)
    flags = out[Out.dropped_out : Out.obs_dropped_out + 1] != 0.0
    observation = WeekObservation(
        session_pain_mean=out[Out.session_pain_mean],
        session_pain_max=out[Out.obs_session_pain_max],
        morning_pain_mean=out[Out.morning_pain_mean],
        morning_change_mean=out[Out.morning_change_mean],
        diary_pain=out[Out.diary_pain],
        diary_days=out[Out.diary_days],
        rpe_mean=out[Out.rpe_mean],
        attendance=out[Out.attendance],
        sessions_attended=out[Out.sessions_attended],
        flare_reported=flags[Out.flare_reported - Out.dropped_out],
        function=out[Out.obs_function],
        capacity_test=out[Out.capacity_test],
        dropped_out=flags[Out.obs_dropped_out - Out.dropped_out],
    )
    return WeekResult(
        pain=out[Out.pain],
        pain_max=out[Out.pain_max],
        session_pain_max=out[Out.session_pain_max],
        function=out[Out.function],
        capacity=out[Out.capacity],
        flares=counts[0],
        sessions_prescribed=counts[1],
        sessions_attended=counts[2],
        relative_load=out[Out.relative_load],
        dropped_out=flags[0],
        new_dropout=flags[1],
        observation=observation,
    )


def _column(values: Any) -> np.ndarray:
    """A cohort column as an owned 1-D array: float64 for numbers, object otherwise."""
    array = np.asarray(values)
    return array.astype(np.float64) if array.dtype.kind in "biuf" else array.astype(object)


class PatientSimulator:
    """Batched virtual patients.

    Args:
        cohort: one row per patient: a DataFrame (:func:`adaptrx.patient.make_cohort` or a loaded cohort
            file), or a mapping of column name -> 1-D array-like with the same columns (``patient_id`` and
            ``adherence_class`` as strings). A mapping is the fast path (no DataFrame is built); its
            arrays are copied.
        seed: noise seed; with the patient ids it fixes every random draw (common random numbers).
        modality: programme modality (``resistance``, ``aerobic``, ``mind_body``, ``mixed``).
        constants: population-level shape constants (defaults are the calibrated ones).
        keys: explicit noise-stream keys (overrides ``seed``), shape ``(n,)`` ``uint64``.

    Attributes:
        n: number of patients.
        p: :class:`PatientParams` (row views of the parameter matrix).
        state: :class:`PatientState` (row views of the state matrix; always current).
        intake: intake observation, name -> ``(n,)`` float array (row views, updated by :meth:`replace`).
        noise: the patients' :class:`NoiseStreams`.
    """

    def __init__(
        self,
        cohort: pd.DataFrame | Mapping[str, Any],
        seed: int = 0,
        modality: str = "resistance",
        constants: ModelConstants | None = None,
        keys: np.ndarray | None = None,
    ) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality: must be one of {sorted(MODALITIES)}, got {modality!r}")
        self.k = constants if constants is not None else _DEFAULT_CONSTANTS
        self.modality = MODALITIES[modality]
        self.modality_name = modality
        self._K = _constants_vector(self.k, modality)
        if isinstance(cohort, pd.DataFrame):
            self._frame: pd.DataFrame | None = cohort.reset_index(drop=True)
            self._columns: dict[str, np.ndarray] | None = None
            n = len(self._frame)
            source = _as_columns(self._frame)
        else:
            self._frame = None
            self._columns = {name: _column(values) for name, values in cohort.items()}
            if "adherence_class" not in self._columns:
                raise ValueError("cohort: missing column 'adherence_class'")
            n = len(self._columns["adherence_class"])
            source = self._columns
        self.n = n
        self._pending: list[tuple[np.ndarray, dict[str, Any]]] = []  # rows replaced since .cohort was built
        if keys is None:
            if "patient_id" not in source:
                raise ValueError("cohort: missing column 'patient_id' (or pass keys)")
            keys = stream_keys(source["patient_id"], seed)
        self.noise = NoiseStreams(np.array(keys, dtype=np.uint64))  # owned copy: replace() writes into it
        if self.noise.keys.shape != (n,):
            raise ValueError("keys: need one stream key per patient")
        self._P = padded_matrix(len(Pr), n)  # row strides: see padded_matrix
        self._P[: kernel.N_RAW_PARAMS] = _raw_params(source, n)
        self._S = padded_matrix(len(St), n)
        self._intake = np.empty((len(In), n))
        kernel.init_patients(self._P, self._S, self._K, self.noise.keys, np.arange(n), self._intake)
        self._bind_views()

    def _bind_views(self) -> None:
        """The row-view attributes ``p``, ``state`` and ``intake`` of the matrices."""
        self.p = PatientParams(self._P)
        self.state = PatientState.of(self._S)
        self.intake: dict[str, np.ndarray] = {m.name: self._intake[m] for m in In}

    def __getstate__(self) -> dict[str, Any]:  # pickle / deepcopy: views are rebuilt, not copied
        return {name: value for name, value in self.__dict__.items() if name not in ("p", "state", "intake")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._P, self._S = _padded_copy(self._P), _padded_copy(self._S)  # pickle stores them contiguous
        self._bind_views()

    # ------------------------------------------------------------------ cohort
    @property
    def cohort(self) -> pd.DataFrame:
        """The current patients as a table (built on first use after construction from a mapping or after
        :meth:`replace`; columns of the constructor's cohort)."""
        if self._frame is None:
            columns = self._current_columns()
            self._frame = pd.DataFrame({name: values.copy() for name, values in columns.items()})
        return self._frame

    def _current_columns(self) -> dict[str, np.ndarray]:
        """The current cohort columns (the constructor's columns with the rows replaced since applied)."""
        if self._columns is None:
            assert self._frame is not None
            return {name: _column(self._frame[name]) for name in self._frame.columns}
        pending, self._pending = self._pending, []
        if not pending:
            return self._columns
        # all waiting replacements at once: each position takes its last replacement's row (missing columns as
        # NaN / None), one gather and one scatter per column
        positions = np.concatenate([index for index, _ in pending])
        last = len(positions) - 1 - np.unique(positions[::-1], return_index=True)[1]  # each position's latest row
        for name, values in self._columns.items():
            missing = np.nan if values.dtype.kind == "f" else None
            column = np.concatenate([np.asarray(rows[name], dtype=values.dtype) if name in rows
                                     else np.full(len(index), missing, dtype=values.dtype)
                                     for index, rows in pending])
            values[positions[last]] = column[last]
        return self._columns

    def replace(self, index: np.ndarray, cohort: pd.DataFrame | Mapping[str, Any], keys: np.ndarray,
                owned: bool = False) -> None:
        """Swap the patients at positions ``index`` for new ones, on their intake day.

        Args:
            index: distinct integer positions in ``0 .. n-1``, shape ``(m,)``.
            cohort: the new patients' rows (DataFrame or column mapping, as for the constructor), ``m`` rows.
            keys: their noise-stream keys, ``uint64`` shape ``(m,)``.
            owned: the mapping's arrays are handed over (nobody changes them later), so the cohort table
                keeps them instead of copies (the vector env's resets).

        The new patients get their parameters, derived constants, the intake-day state of a fresh
        simulator, their intake observation (in :attr:`intake`) and keys; from here they evolve bit for bit
        as in ``PatientSimulator(cohort, keys=keys)``. Other patients are untouched.
        """
        index = np.asarray(index, dtype=np.int64)
        m = len(index)
        if index.shape != (m,) or (m and (index.min() < 0 or index.max() >= self.n)):
            raise ValueError(f"index: must be distinct positions in 0..{self.n - 1}")
        ascending = m < 2 or bool((index[1:] > index[:-1]).all())  # the env-reset case: distinct, no sort
        if not ascending and len(np.unique(index)) != m:
            raise ValueError(f"index: must be distinct positions in 0..{self.n - 1}")
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.shape != (m,):
            raise ValueError(f"keys: need one stream key per replaced patient ({m})")
        cohort = _as_columns(cohort)
        raw = _raw_params(cohort, m)  # validates before anything changes
        if self._columns is None:
            assert self._frame is not None
            self._columns = {name: _column(self._frame[name]) for name in self._frame.columns}
        self._P[: kernel.N_RAW_PARAMS, index] = raw
        self.noise.keys[index] = keys
        kernel.init_patients(self._P, self._S, self._K, self.noise.keys, index, self._intake)
        # the table's rows are written when .cohort is next read (replace is on the env-reset hot path), or once
        # _MAX_PENDING replacements wait (a vector env that never reads .cohort would otherwise pile them up)
        copy = not owned and any(isinstance(v, np.ndarray) for v in cohort.values())
        if m == self.n:  # everyone replaced (a single env's reset): the rows still waiting are overwritten
            self._pending.clear()
        self._pending.append((index.copy(), {name: np.array(cohort[name]) if copy else cohort[name]
                                             for name in self._columns if name in cohort}))
        if len(self._pending) >= _MAX_PENDING:
            self._current_columns()
        self._frame = None

    def take(self, index: np.ndarray, keys: np.ndarray | None = None) -> PatientSimulator:
        """A new, independent simulator of copies of patients ``index`` in their current state.

        Args:
            index: positions in ``0 .. n-1`` (repeats allowed), shape ``(m,)``.
            keys: the copies' noise-stream keys, ``uint64`` shape ``(m,)`` (default: the patients' own keys).

        The copies have the patients' parameters, latent state (day, week, ...), intake observation and
        cohort rows. With their own keys they evolve bit for bit as the originals would; with other keys they
        meet other noise from now on (what-if rollouts, planning). This simulator is left unchanged.
        """
        index = np.asarray(index, dtype=np.int64)
        m = len(index) if index.ndim == 1 else -1
        if index.shape != (m,) or (m and (index.min() < 0 or index.max() >= self.n)):
            raise ValueError(f"index: must be a 1-D array of positions in 0..{self.n - 1}")
        keys = self.noise.keys[index] if keys is None else np.asarray(keys, dtype=np.uint64)
        if keys.shape != (m,):
            raise ValueError(f"keys: need one stream key per copied patient ({m})")
        new = object.__new__(PatientSimulator)
        new.k, new.modality, new.modality_name, new._K = self.k, self.modality, self.modality_name, self._K
        new._frame = None
        new._columns = {name: values[index] for name, values in self._current_columns().items()}
        new._pending = []
        new.n = m
        new.noise = NoiseStreams(keys.copy())
        new._P = _padded_copy(self._P[:, index])
        new._S = _padded_copy(self._S[:, index])
        new._intake = np.ascontiguousarray(self._intake[:, index])
        new._bind_views()
        return new

    # ------------------------------------------------------------------ state
    def initial_state(self) -> PatientState:
        """The state on the intake day (day 0) of the current patients (a detached copy)."""
        state, intake = np.empty_like(self._S), np.empty_like(self._intake)
        kernel.init_patients(self._P.copy(), state, self._K, self.noise.keys, np.arange(self.n), intake)
        return PatientState.of(state)

    def function_score(self, pain: np.ndarray, capacity: np.ndarray | None = None) -> np.ndarray:
        """True function (0-100, higher is better) at weekly mean ``pain`` (NRS) and ``capacity`` (x baseline;
        default: current). Arrays broadcast against the patients' ``(n,)``."""
        capacity = self._S[St.capacity] if capacity is None else capacity
        arrays = np.broadcast_arrays(self._P[Pr.function_offset], self._P[Pr.demand],
                                     np.asarray(pain, dtype=np.float64), np.asarray(capacity, dtype=np.float64))
        flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
        return kernel.function_array(*flat, self._K).reshape(arrays[0].shape)

    def baseline_function(self) -> np.ndarray:
        """True function at intake: typical baseline pain and baseline capacity."""
        return self.function_score(self._P[Pr.baseline_pain], np.ones(self.n))

    def intake_matrix(self) -> np.ndarray:
        """The live intake observation, shape ``(len(In), n)``, rows named by :class:`kernel.In` (the same
        arrays as :attr:`intake`; read-only by convention)."""
        return self._intake

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(P, S, K, keys)``: the live matrices of the compiled kernel (layouts in :mod:`adaptrx.patient.kernel`).

        For compiled adapters that call :func:`adaptrx.patient.kernel.step_week` inside their own kernel
        (:mod:`adaptrx.envs.compiled_step`); they must not resize or reorder them.
        """
        return self._P, self._S, self._K, self.noise.keys

    def get_state(self) -> dict[str, np.ndarray]:
        """A copy of the full latent state (for what-if rollouts); dtypes as documented by :class:`PatientState`."""
        return _state_dict(self._S.copy())

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a state from :meth:`get_state` (values are copied; each of shape ``(n,)``)."""
        if state.keys() != _STATE_NAMES:
            raise ValueError(f"state: expected keys {sorted(_STATE_NAMES)}")
        matrix = np.empty_like(self._S)
        for row, name in enumerate(_STATE_FIELDS):
            value = state[name]
            if np.shape(value) != (self.n,):
                raise ValueError(f"state: {name} must have shape ({self.n},), got {np.shape(value)}")
            matrix[row] = value
        self._S[...] = matrix

    # ------------------------------------------------------------------- step
    def step_week(
        self,
        load: np.ndarray | float,
        sessions: np.ndarray | int,
        delivery: np.ndarray | int,
    ) -> WeekResult:
        """Simulate one week of a prescription for every patient.

        Args:
            load: load per session in baseline-capacity units, clipped to [0, 1.5]; shape ``(n,)`` or scalar.
                A load of 0 with sessions > 0 is an attention-control contact (care, no loading).
            sessions: sessions prescribed this week, integers 0-5.
            delivery: 0 home alone, 1 home with remote monitoring, 2 supervised.

        Returns:
            :class:`WeekResult` with true outcomes and the clinic's observation of the week.

        Raises:
            ValueError: a NaN load, sessions or delivery out of range or not integers (nothing is simulated).
        """
        n = self.n
        out = padded_matrix(len(Out), n)
        status = kernel.step_week(self._P, self._S, self._K, self.noise.keys, _action(load, n, "load"),
                                  _action(sessions, n, "sessions"), _action(delivery, n, "delivery"), out)
        if status:
            raise ValueError(SIMULATOR_ERRORS[status])
        return week_result(out)
