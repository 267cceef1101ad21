"""Belief features: an online, batched particle filter over each patient's hidden parameters.

A policy on the observation sees records; what decides the right load is hidden (above all the tolerance
envelope, poorly observed: R^2 about 0.05 at intake and 0.3 after weeks of records). :class:`BeliefFilter`
keeps, for each of ``n`` patients, ``particles`` virtual patients drawn from the condition's prior and
conditioned on what the clinic has recorded so far, advanced one week at a time:

1. **Intake** (:meth:`BeliefFilter.start`): a shared pool of prior draws (``train`` stream, cached per
   condition and modality) with their simulated intake records is weighted per patient by the patient's
   intake records (Gaussian kernels, :data:`BANDWIDTHS`) and ``particles`` rows are drawn from it
   (systematic resampling); the particles take the patient's age.
2. **Each week** (:meth:`BeliefFilter.advance`): every particle is simulated through the week the patient
   was prescribed (load, sessions, delivery) by the batched simulator, and its weight is multiplied by the
   likelihood of what the clinic recorded (sessions attended, mean in-session pain, next-morning change, RPE,
   flare reported: :func:`week_loglik`). A particle that drops out while the patient keeps coming is all but
   excluded. When a patient's effective sample size falls below half its particles, its particles are
   resampled (systematic) and their parameters jittered with Liu & West's (2001) shrinkage kernel, which
   keeps the posterior mean and covariance; copies get fresh noise.
3. **Features** (:meth:`BeliefFilter.features`): the posterior mean and sd of :data:`BELIEF_PARAMETERS`,
   divided by fixed scales (:data:`BELIEF_FEATURES`) so they lie in [0, 1].

Everything a patient's beliefs depend on is that patient's own records and noise key: random draws come
from counter-based streams keyed by the patient (:class:`adaptrx.patient.noise.NoiseStreams` channels
``belief_resample`` and ``belief_jitter``), so a patient's features do not depend on the other patients of
the batch. The envs (``belief=True``) and the clinic run this same code.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from adaptrx.envs.features import FEATURE_NAMES
from adaptrx.patient import PatientSimulator
from adaptrx.patient.cohort import load_prior, sample_patients
from adaptrx.patient.noise import NoiseStreams, mix64, patient_keys
from adaptrx.patient.simulator import PARAM_COLUMNS, WeekResult

#: Kernel bandwidths (sd of the Gaussian likelihood kernel), in the record's units (about the report noise of
#: two independent reports).
BANDWIDTHS: dict[str, float] = {
    "age": 4.0,  # years
    "baseline_pain": 1.2,  # NRS
    "sensitization_score": 10.0,  # questionnaire points (report sd 7)
    "fear_score": 4.5,  # questionnaire points (report sd 3)
    "function": 9.0,  # 0-100 (report sd 6)
    "preferred_sessions": 0.75,  # sessions/week
    "attended": 0.6,  # sessions
    "session_pain_mean": 1.0,  # NRS
    "morning_pain_mean": 1.0,  # NRS
    "morning_change_mean": 1.0,  # NRS
    "rpe_mean": 1.3,  # 0-10
}
#: Intake field -> the simulator's intake record behind it.
INTAKE_RECORDS: dict[str, str] = {"age": "age", "baseline_pain": "pain", "sensitization_score": "sensitization_score",
                                  "fear_score": "fear_score", "function": "function",
                                  "preferred_sessions": "preferred_sessions"}
#: Weekly records the filter weighs (the clinic's session log holds them; so does the env's observation).
WEEK_RECORDS: tuple[str, ...] = ("attended", "session_pain_mean", "morning_change_mean", "rpe_mean", "flare")
#: Log-likelihood of a week whose reported flare (or its absence) the particle did not produce.
FLARE_MISMATCH = float(np.log(0.2))
#: Log-likelihood of a particle that dropped out while the patient kept coming.
DROPOUT_LOG_LIKELIHOOD = -30.0
#: Hidden parameters summarised as features: name -> fixed scale (the feature is value / scale, clipped to 1).
BELIEF_PARAMETERS: dict[str, float] = {"envelope": 1.5, "sensitization": 3.0, "flare_hazard": 0.05,
                                       "adaptation_gain": 0.3}
#: Feature names, in order: ``belief_<parameter>_mean`` then ``belief_<parameter>_sd`` per parameter.
BELIEF_FEATURES: tuple[str, ...] = tuple(f"belief_{p}_{s}" for p in BELIEF_PARAMETERS for s in ("mean", "sd"))
def reads_beliefs(feature_names: tuple[str, ...] | list[str]) -> bool:
    """Whether an observation with these feature names (e.g. a loaded policy's) ends with the belief features."""
    return tuple(feature_names[len(FEATURE_NAMES):]) == BELIEF_FEATURES


#: Widths an observation may have: the clinical records alone, or followed by the belief features.
OBSERVATION_WIDTHS: tuple[int, int] = (len(FEATURE_NAMES), len(FEATURE_NAMES) + len(BELIEF_FEATURES))
#: Parameters never jittered: known (age).
_FIXED = frozenset({"age"})
#: Prior draws in the intake pool, and the pool's seed (fixed: the pool is part of the filter, not the patient).
POOL_SIZE = 16384
POOL_SEED = 20261206
_SALT = np.uint64(0xBE11EF)


def kernel_loglik(simulated: np.ndarray, observed: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian log kernel ``-0.5 ((simulated - observed) / bandwidth)^2``, broadcast; 0 where either value
    is missing (NaN: no information)."""
    simulated, observed = np.asarray(simulated, dtype=float), np.asarray(observed, dtype=float)
    out = -0.5 * ((simulated - observed) / bandwidth) ** 2
    return np.where(np.isnan(out), 0.0, out)


def intake_loglik(pool: Mapping[str, np.ndarray], observed: Mapping[str, np.ndarray]) -> np.ndarray:
    """Log kernel weights ``(m, M)`` of ``M`` simulated intake records ``pool`` (simulator record names) given
    ``m`` patients' intake fields ``observed`` (:data:`INTAKE_RECORDS` names, ``(m,)``; NaN or absent: not
    recorded)."""
    first = next(iter(pool.values()))
    m = len(next(iter(observed.values())))
    logw = np.zeros((m, len(first)))
    for name, record in INTAKE_RECORDS.items():
        if name in observed:
            logw += kernel_loglik(pool[record][None, :], np.asarray(observed[name], dtype=float)[:, None],
                                  BANDWIDTHS[name])
    return logw


def particle_records(result: WeekResult, rows: np.ndarray, m: int) -> dict[str, np.ndarray]:
    """The simulated week of particle ``rows`` (``m`` patients x particles, patient-major) as ``(m, particles)``
    arrays: the records :func:`week_loglik` compares (and ``dropped_out``)."""
    o = result.observation
    pick = {"attended": o.sessions_attended, "session_pain_mean": o.session_pain_mean,
            "morning_change_mean": o.morning_change_mean, "rpe_mean": o.rpe_mean, "flare": o.flare_reported,
            "dropped_out": result.dropped_out}
    return {name: np.asarray(values, dtype=float)[rows].reshape(m, -1) for name, values in pick.items()}


def week_loglik(simulated: Mapping[str, np.ndarray], records: Mapping[str, np.ndarray]) -> np.ndarray:
    """Log-likelihood increments ``(m, particles)`` of ``m`` patients' recorded week (``records``:
    :data:`WEEK_RECORDS` -> ``(m,)``; ``flare`` 0/1; means NaN when not recorded) given their particles'
    simulated week (:func:`particle_records`)."""
    attended = np.asarray(records["attended"], dtype=float)[:, None]
    logw = kernel_loglik(simulated["attended"], attended, BANDWIDTHS["attended"])
    came = attended > 0
    for name in ("session_pain_mean", "morning_change_mean", "rpe_mean"):
        value = np.asarray(records[name], dtype=float)[:, None]
        logw += np.where(came, kernel_loglik(simulated[name], value, BANDWIDTHS[name]), 0.0)
    flare = np.asarray(records["flare"], dtype=float)[:, None] > 0.5
    logw += np.where((simulated["flare"] > 0.5) == flare, 0.0, FLARE_MISMATCH)
    logw += np.where(simulated["dropped_out"] != 0, DROPOUT_LOG_LIKELIHOOD, 0.0)
    return logw


@functools.lru_cache(maxsize=8)
def prior_pool(condition: str, modality: str, size: int = POOL_SIZE,
               seed: int = POOL_SEED) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``size`` prior draws of ``condition`` (``train`` stream) as cohort columns, and their simulated intake
    records. Cached (a few per process); callers must not modify what it returns."""
    cohort = sample_patients(condition, size, seed, "train")
    cohort["patient_id"] = np.array([f"particle-{i:07d}" for i in range(size)], dtype=object)
    keys = patient_keys(np.random.default_rng([seed, 0xC11, 1]), size)
    sim = PatientSimulator(cohort, keys=keys, modality=modality)
    intake = {name: values.copy() for name, values in sim.intake.items()}
    columns = {name: np.asarray(values) for name, values in cohort.items()}
    for values in (*columns.values(), *intake.values()):
        values.flags.writeable = False
    return columns, intake


@functools.lru_cache(maxsize=8)
def jitter_transforms(condition: str) -> tuple[tuple[str, bool, float, float, bool], ...]:
    """Per jittered parameter: ``(name, log scale, low, high, integer)`` from the condition's prior."""
    spec = load_prior(condition)["parameters"]
    out = []
    for name in PARAM_COLUMNS:
        if name in _FIXED or name not in spec:
            continue
        entry = spec[name]
        out.append((name, entry["dist"] == "lognormal", float(entry.get("low", -np.inf)),
                    float(entry.get("high", np.inf)), bool(entry.get("round", False))))
    return tuple(out)


def grouped_systematic(weights: np.ndarray, u: np.ndarray, m: int) -> np.ndarray:
    """Systematic resampling per row: ``(k, m)`` column indices drawn in proportion to the rows of normalized
    ``weights`` ``(k, M)``, with one uniform per row ``u`` ``(k,)`` (each column is copied ``floor(m w)`` or
    ``ceil(m w)`` times). One search over the rows' CDFs laid end to end (row ``r`` shifted by ``r``)."""
    k, size = weights.shape
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    offset = np.arange(k, dtype=float)[:, None]
    points = (np.asarray(u, dtype=float)[:, None] + np.arange(m)[None, :]) / m + offset
    flat = np.searchsorted((cdf + offset).ravel(), points.ravel(), side="left").reshape(k, m)
    return np.clip(flat - np.arange(k)[:, None] * size, 0, size - 1)


def _normalized(logw: np.ndarray) -> np.ndarray:
    w = np.exp(logw - logw.max(axis=-1, keepdims=True))
    return w / w.sum(axis=-1, keepdims=True)


class BeliefFilter:
    """Particle filters for ``n`` patients, advanced one week at a time (the module docstring has the algorithm).

    Args:
        n: patients (>= 1).
        condition, modality: the patients' prior and exercise modality.
        particles: particles per patient (16-4096).
        shrink: Liu-West shrinkage ``a`` of the parameter jitter at each resampling (0.8-1; 1: no jitter).
        constants: model constants of the particles' simulator (default: the calibrated ones).
    """

    def __init__(self, n: int, condition: str, modality: str = "resistance", particles: int = 64,
                 shrink: float = 0.95, constants: Any = None) -> None:
        if isinstance(particles, bool) or not isinstance(particles, int | np.integer) or not 16 <= particles <= 4096:
            raise ValueError(f"belief_particles: must be an integer in 16-4096, got {particles!r}")
        if not 0.8 <= float(shrink) <= 1.0:
            raise ValueError(f"shrink: must be in [0.8, 1], got {shrink!r}")
        self.n, self.P, self.condition, self.modality = int(n), int(particles), condition, modality
        self.shrink = float(shrink)
        self.constants = constants
        columns, _ = prior_pool(condition, modality)
        rows = np.zeros(self.n * self.P, dtype=np.int64)  # placeholders until start()
        self.sim = PatientSimulator({k: v[rows] for k, v in columns.items()},
                                    keys=np.arange(len(rows), dtype=np.uint64), modality=modality, constants=constants)
        self.logw = np.zeros((self.n, self.P))
        self.keys = np.zeros(self.n, dtype=np.uint64)  # per patient: the key of its belief streams
        self.step = np.zeros(self.n, dtype=np.int64)  # weeks advanced since start (the streams' counter)
        self._transforms = jitter_transforms(condition)
        self._param_index = {name: int(PARAM_COLUMNS[name]) for name in BELIEF_PARAMETERS}

    def _rows(self, index: np.ndarray) -> np.ndarray:
        """Particle rows of patients ``index``, patient-major ``(len(index) * P,)``."""
        return (np.asarray(index, dtype=np.int64)[:, None] * self.P + np.arange(self.P)[None, :]).ravel()

    def _particle_keys(self, index: np.ndarray, tag: int) -> np.ndarray:
        """Fresh noise keys of the particles of patients ``index`` (a hash of the patient's belief key, its
        step counter, ``tag`` and the particle)."""
        base = mix64(self.keys[index] ^ mix64(self.step[index].astype(np.uint64) + np.uint64(tag) * np.uint64(1 << 32)))
        return mix64(base[:, None] ^ np.arange(1, self.P + 1, dtype=np.uint64)[None, :]).ravel()

    def start(self, index: np.ndarray, intake: Mapping[str, np.ndarray], patient_keys: np.ndarray) -> None:
        """Start the filters of patients ``index`` at intake.

        Args:
            index: patient positions (distinct, in ``0 .. n-1``).
            intake: the patients' intake fields (:data:`INTAKE_RECORDS` names -> ``(len(index),)``; ``age``
                required; NaN or absent fields are not recorded).
            patient_keys: one ``uint64`` key per patient from which its belief streams are derived (the env
                passes the patient's noise key, hashed again here; the clinic its seed).
        """
        index = np.asarray(index, dtype=np.int64)
        self.keys[index] = mix64(np.asarray(patient_keys, dtype=np.uint64) ^ _SALT)
        self.step[index] = 0
        columns, pool_intake = prior_pool(self.condition, self.modality)
        u = NoiseStreams(self.keys[index]).uniform(["belief_resample"], 0)[0, 0, :, 0]
        chosen = np.empty((len(index), self.P), dtype=np.int64)
        for start in range(0, len(index), 128):  # (patients x pool) weights in blocks of 128 patients
            block = slice(start, start + 128)
            logw = intake_loglik(pool_intake, {k: np.asarray(v, dtype=float)[block] for k, v in intake.items()})
            chosen[block] = grouped_systematic(_normalized(logw), u[block], self.P)
        flat = chosen.ravel()
        rows = {name: values[flat] for name, values in columns.items()}
        rows["age"] = np.repeat(np.asarray(intake["age"], dtype=float), self.P)
        self.sim.replace(self._rows(index), rows, self._particle_keys(index, 0))
        self.logw[index] = 0.0

    def advance(self, index: np.ndarray, load: np.ndarray, sessions: np.ndarray, delivery: np.ndarray,
                records: Mapping[str, np.ndarray]) -> None:
        """Advance every patient's particles one week; weigh the particles of patients ``index`` by their
        recorded week (``records``: :data:`WEEK_RECORDS` -> ``(len(index),)``). ``load``, ``sessions`` and
        ``delivery`` are the ``(n,)`` prescriptions of every patient (a patient not in ``index``: its episode
        has ended; its particles are stepped but not weighed)."""
        index = np.asarray(index, dtype=np.int64)
        # resample where the effective sample size has fallen below half the particles (before the week, as the
        # clinic's fit does)
        w = self.weights(index)
        ess = 1.0 / np.sum(w * w, axis=1)
        low = index[ess < 0.5 * self.P]
        if len(low):
            self._resample(low)
        rep = np.repeat
        result = self.sim.step_week(rep(np.asarray(load, dtype=float), self.P),
                                    rep(np.asarray(sessions, dtype=float), self.P),
                                    rep(np.asarray(delivery, dtype=float), self.P))
        if len(index):
            self.logw[index] += week_loglik(particle_records(result, self._rows(index), len(index)), records)
            self.logw[index] -= self.logw[index].max(axis=1, keepdims=True)
        self.step += 1

    def _resample(self, index: np.ndarray) -> None:
        """Systematic resampling of patients ``index`` with Liu-West parameter jitter; copies in their current
        state with fresh noise keys."""
        P, k = self.P, len(index)
        w = self.weights(index)  # (k, P)
        streams = NoiseStreams(self.keys[index])
        u = streams.uniform(["belief_resample"], self.step[index] + 1)[0, 0, :, 0]
        rows = self._rows(index).reshape(k, P)
        src = np.take_along_axis(rows, grouped_systematic(w, u, P), axis=1)  # (k, P) source rows
        columns = {name: values[src.ravel()] for name, values in self.sim._current_columns().items()}
        if self.shrink < 1.0:
            t = self._transforms
            params = self.sim.kernel_arrays()[0]
            # (k, P, d) parameters of the weighted particles (log scale for log-normal ones)
            raw = [params[int(PARAM_COLUMNS[name])][rows] for name, *_ in t]
            x = np.stack([np.log(v) if log else v for v, (_, log, *_) in zip(raw, t, strict=True)], axis=2)
            mean = np.einsum("kp,kpd->kd", w, x)
            centred = x - mean[:, None, :]
            cov = np.einsum("kp,kpd,kpe->kde", w, centred, centred)
            d = cov.shape[1]
            ridge = 1e-9 * (1.0 + np.max(np.diagonal(cov, axis1=1, axis2=2), axis=1))
            chol = np.linalg.cholesky(cov + ridge[:, None, None] * np.eye(d)[None])
            z = streams.normal(["belief_jitter"], self.step[index] + 1, 1, P * d)[0, 0].reshape(k, P, d)
            a = self.shrink
            picked = np.take_along_axis(x, (src - rows[:, :1])[:, :, None], axis=1)
            noise = np.einsum("kpd,ked->kpe", z, chol)
            moved = a * picked + (1.0 - a) * mean[:, None, :] + np.sqrt(1.0 - a * a) * noise
            moved = moved.reshape(k * P, d)
            for j, (name, log, lo, hi, integer) in enumerate(t):
                value = np.clip(np.exp(moved[:, j]) if log else moved[:, j], lo, hi)
                columns[name] = np.rint(value) if integer else value
        state = self.sim.kernel_arrays()[1][:, src.ravel()].copy()
        flat = rows.ravel()
        self.sim.replace(flat, columns, self._particle_keys(index, 1))
        self.sim.kernel_arrays()[1][:, flat] = state  # the copies continue from their sources' current state
        self.logw[index] = 0.0

    def weights(self, index: np.ndarray) -> np.ndarray:
        """Normalized posterior weights ``(len(index), particles)`` of patients ``index``."""
        return _normalized(self.logw[np.asarray(index, dtype=np.int64)])

    def features(self, index: np.ndarray | None = None) -> np.ndarray:
        """Belief features of patients ``index`` (default: all), ``(m, len(BELIEF_FEATURES))`` float32 in [0, 1]:
        posterior mean and sd of each of :data:`BELIEF_PARAMETERS` divided by its scale."""
        index = np.arange(self.n) if index is None else np.asarray(index, dtype=np.int64)
        w = self.weights(index)
        P_matrix = self.sim.kernel_arrays()[0]
        rows = self._rows(index).reshape(len(index), self.P)
        out = np.empty((len(index), len(BELIEF_FEATURES)), dtype=np.float64)
        for j, (name, scale) in enumerate(BELIEF_PARAMETERS.items()):
            x = P_matrix[self._param_index[name]][rows]
            mean = np.sum(w * x, axis=1)
            sd = np.sqrt(np.maximum(np.sum(w * (x - mean[:, None]) ** 2, axis=1), 0.0))
            out[:, 2 * j], out[:, 2 * j + 1] = mean / scale, sd / scale
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def posterior_mean(self, name: str, index: np.ndarray | None = None) -> np.ndarray:
        """Posterior mean of parameter ``name`` (a cohort column, its units) for patients ``index``."""
        index = np.arange(self.n) if index is None else np.asarray(index, dtype=np.int64)
        rows = self._rows(index).reshape(len(index), self.P)
        x = self.sim.kernel_arrays()[0][int(PARAM_COLUMNS[name])][rows]
        return np.sum(self.weights(index) * x, axis=1)
