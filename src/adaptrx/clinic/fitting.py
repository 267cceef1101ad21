"""Fit a real patient: a particle filter over the condition prior with the batched simulator.

The patient's parameters and latent state are unknown; the prior of their condition
(``src/adaptrx/patient/priors/<condition>.yaml``) says which combinations are plausible, and the simulator's observation
model says what a clinic would record for each. :func:`fit_patient` is a bootstrap particle filter
(sequential importance resampling) over whole virtual patients:

1. **Particles.** ``n_particles`` virtual patients drawn from the condition's prior (``train`` split
   stream, so the fit never reuses the evaluation cohorts), each with its own noise stream.
2. **Intake.** Particles are weighted by how well their simulated intake records (single NRS,
   sensitization and fear questionnaires, function score, preferred sessions, age) match the patient's.
   The age of every particle is then set to the patient's.
3. **Each logged week**, in order: when the effective sample size has fallen below half the particles,
   resample (systematic) and give every copy a fresh noise stream, so copies of one particle diverge; then
   simulate the week the patient was actually prescribed (mean load per session, sessions, delivery) for
   every particle at once, and multiply each weight by the likelihood of what the clinic recorded (sessions
   attended, mean in-session pain, mean next-morning pain, mean RPE, next-morning change, flare reported)
   given the particle's simulated records of that week. A particle that drops out of the programme is
   all but excluded (the patient is still coming).

The likelihood is a product of Gaussian kernels between recorded and simulated records (approximate
Bayesian computation with the simulator's own report noise; the bandwidths in :data:`BANDWIDTHS` are about
the report noise of two independent reports), so the fit needs nothing from the model beyond simulating it.
At each resampling the copies' parameters are jittered with Liu & West's (2001) shrinkage kernel, which
keeps the posterior mean and covariance, so copies of one particle do not stay identical.
``PatientFit.unique_particles`` counts the prior draws (lineages) the posterior still descends from: with
the default 4000 particles, about a hundred or more after 8-12 weeks.

Records a real session log does not contain (diary pain, weekly function score, capacity tests) are
*imputed* for the policy's observation as their posterior mean under the particles
(:attr:`PatientFit.imputed`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from adaptrx.clinic.history import History
from adaptrx.envs.belief import (
    BANDWIDTHS,
    DROPOUT_LOG_LIKELIHOOD,
    FLARE_MISMATCH,
    INTAKE_RECORDS,
    BeliefFilter,
    jitter_transforms,
    kernel_loglik,
)
from adaptrx.patient import PatientSimulator
from adaptrx.patient.cohort import sample_patients
from adaptrx.patient.noise import patient_keys
from adaptrx.patient.simulator import PARAM_COLUMNS, WeekResult

#: Parameters reported first (the ones the clinic and the policy's safety depend on most).
KEY_PARAMETERS: tuple[str, ...] = ("sensitization", "envelope", "adaptation_gain", "fear", "capacity",
                                   "fluctuation_sd", "flare_hazard", "motivation")
#: Latent state variables reported at the end of the history.
STATE_SUMMARY: tuple[str, ...] = ("pain", "capacity", "sensitization", "irritation", "fear", "motivation", "habit")
#: Weekly records imputed from the particles (name -> WeekObservation attribute).
IMPUTED: tuple[str, ...] = ("diary_pain", "diary_days", "function", "capacity_test", "morning_change_mean",
                            "flare_reported", "session_pain_max")


@dataclass
class PatientFit:
    """The posterior over a patient's parameters and current state.

    Attributes:
        history: the history fitted.
        particles: the particles after the last logged week (a simulator of ``n`` virtual patients, each in
            its current state; ``particles.cohort`` holds their parameters).
        weights: normalized posterior weights ``(n,)``.
        prior: the parameters of the particles as first drawn (the prior sample), DataFrame.
        ess: effective sample size after each step (intake, then each week), before any resampling.
        imputed: per logged week, the posterior mean of the records a session log does not hold
            (:data:`IMPUTED`; ``diary_pain`` and ``capacity_test`` NaN where no particle reported one).
        intake_records: the posterior mean of the intake records the history did not give.
        log_evidence: log of the (kernel) marginal likelihood of the history, for model comparison.
        unique_particles: distinct prior draws (lineages) the weighted particles descend from.
    """

    history: History
    particles: PatientSimulator
    weights: np.ndarray
    prior: pd.DataFrame
    ess: list[float]
    imputed: pd.DataFrame
    intake_records: dict[str, float]
    log_evidence: float
    unique_particles: int

    def posterior(self, names: tuple[str, ...] | list[str] | None = None) -> pd.DataFrame:
        """Per parameter: prior mean and sd, posterior mean, sd, 10th and 90th percentile, and the shrinkage
        ``1 - posterior sd / prior sd`` (0: nothing learned, 1: known). Units as in the cohort prior."""
        names = list(names or PARAM_COLUMNS)
        cohort = self.particles.cohort
        rows = []
        for name in names:
            x = cohort[name].to_numpy(dtype=float)
            mean, sd = _weighted_mean_sd(x, self.weights)
            q10, q90 = weighted_quantiles(x, self.weights, (0.1, 0.9))
            prior = self.prior[name].to_numpy(dtype=float)
            rows.append({"parameter": name, "prior_mean": prior.mean(), "prior_sd": prior.std(),
                         "mean": mean, "sd": sd, "q10": q10, "q90": q90,
                         "shrinkage": 1.0 - sd / prior.std() if prior.std() > 0 else 0.0})
        return pd.DataFrame(rows).set_index("parameter")

    def state(self) -> pd.DataFrame:
        """Posterior mean, 10th and 90th percentile of the latent state now (:data:`STATE_SUMMARY`)."""
        rows = []
        for name in STATE_SUMMARY:
            x = getattr(self.particles.state, name)
            mean, _ = _weighted_mean_sd(x, self.weights)
            q10, q90 = weighted_quantiles(x, self.weights, (0.1, 0.9))
            rows.append({"variable": name, "mean": mean, "q10": q10, "q90": q90})
        return pd.DataFrame(rows).set_index("variable")

    def resample(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """Indices of ``m`` particles drawn in proportion to the weights (systematic resampling)."""
        return systematic_resample(self.weights, m, rng)


# ---------------------------------------------------------------------------------------------- helpers
def _weighted_mean_sd(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    mean = float(np.sum(w * x))
    return mean, float(np.sqrt(max(np.sum(w * (x - mean) ** 2), 0.0)))


def weighted_quantiles(x: np.ndarray, w: np.ndarray, q: tuple[float, ...]) -> tuple[float, ...]:
    """Quantiles ``q`` (0-1) of values ``x`` under normalized weights ``w`` (inverse of the weighted CDF)."""
    order = np.argsort(x, kind="stable")
    cdf = np.cumsum(w[order])
    cdf /= cdf[-1]
    idx = np.minimum(np.searchsorted(cdf, np.asarray(q, dtype=float), side="left"), len(x) - 1)
    return tuple(float(v) for v in x[order][idx])


def systematic_resample(weights: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` indices drawn in proportion to normalized ``weights`` with one uniform (systematic resampling:
    each particle is copied ``floor(m w)`` or ``ceil(m w)`` times)."""
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    points = (rng.random() + np.arange(m)) / m
    return np.minimum(np.searchsorted(cdf, points, side="left"), len(weights) - 1)


def effective_sample_size(logw: np.ndarray) -> float:
    """Kish's effective sample size of unnormalized log weights."""
    w = np.exp(logw - logw.max())
    return float(w.sum() ** 2 / np.sum(w * w))


def _normalize(logw: np.ndarray) -> np.ndarray:
    w = np.exp(logw - logw.max())
    return w / w.sum()


@functools.lru_cache(maxsize=4)
def _prior_pool(condition: str, modality: str, size: int, seed: int) -> tuple[dict[str, Any], np.ndarray,
                                                                                 dict[str, np.ndarray]]:
    """``size`` prior draws of ``condition`` (train stream), their noise keys and simulated intake records.

    The pool depends only on its arguments, not on the patient, so it is cached (a few per process): the
    prior draw is most of a fit's fixed cost. Callers must not modify what it returns.
    """
    cohort = sample_patients(condition, size, seed, "train")
    cohort["patient_id"] = np.array([f"particle-{i:07d}" for i in range(size)], dtype=object)
    keys = patient_keys(np.random.default_rng([seed, 0xC11, 1]), size)
    sim = PatientSimulator(cohort, keys=keys, modality=modality)
    intake = {name: values.copy() for name, values in sim.intake.items()}
    for values in (*cohort.values(), keys, *intake.values()):
        values.flags.writeable = False
    return cohort, keys, intake


def _intake_loglik(records: dict[str, np.ndarray], history: History) -> np.ndarray:
    """Log kernel weights of simulated intake ``records`` (the simulator's ``intake`` dict) given the history's."""
    intake = history.intake
    logw = np.zeros(len(records["age"]))
    for field_name, record in INTAKE_RECORDS.items():
        value = getattr(intake, field_name)
        if value is not None:
            logw += kernel_loglik(records[record], float(value), BANDWIDTHS[field_name])
    return logw


def _week_loglik(result: WeekResult, week: pd.Series) -> np.ndarray:
    """Log-likelihood increment of one logged week given each particle's simulated week."""
    o = result.observation
    logw = kernel_loglik(o.sessions_attended, float(week["attended"]), BANDWIDTHS["attended"])
    if week["attended"] > 0:
        for name, simulated in (("session_pain_mean", o.session_pain_mean),
                                ("morning_pain_mean", o.morning_pain_mean),
                                ("morning_change_mean", o.morning_change_mean),
                                ("rpe_mean", o.rpe_mean)):
            logw += kernel_loglik(simulated, float(week[name]), BANDWIDTHS[name])
    logw += np.where(o.flare_reported == bool(week["flare"]), 0.0, FLARE_MISMATCH)
    logw += np.where(result.dropped_out, DROPOUT_LOG_LIKELIHOOD, 0.0)
    return logw


def _imputed_records(result: WeekResult, w: np.ndarray) -> dict[str, float]:
    o = result.observation
    out: dict[str, float] = {}
    for name in IMPUTED:
        x = np.asarray(getattr(o, name), dtype=float)
        ok = ~np.isnan(x)
        out[name] = float(np.sum(w[ok] * x[ok]) / w[ok].sum()) if ok.any() and w[ok].sum() > 1e-12 else np.nan
    return out


def _rejuvenated(sim: PatientSimulator, weights: np.ndarray, index: np.ndarray, keys: np.ndarray,
                 rng: np.random.Generator, shrink: float) -> PatientSimulator:
    """The particles ``index`` with jittered parameters (Liu & West 2001 kernel shrinkage) in their current state.

    Continuous parameters (log scale for log-normal ones) move to ``a x own + (1 - a) x posterior mean +
    N(0, (1 - a^2) posterior covariance)`` with ``a = shrink``, which keeps the posterior mean and covariance
    while copies of one particle become distinct; values are clipped to the prior's range.
    """
    cohort = sim._current_columns()
    transforms = jitter_transforms(str(cohort["condition"][0]))
    x = np.stack([np.log(cohort[n]) if log else cohort[n] for n, log, *_ in transforms], axis=1)
    mean = weights @ x
    centred = x - mean
    cov = (centred * weights[:, None]).T @ centred
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(len(transforms)) * (1.0 + np.diag(cov).max()))
    z = rng.standard_normal((len(index), len(transforms)))
    moved = shrink * x[index] + (1.0 - shrink) * mean + np.sqrt(1.0 - shrink**2) * z @ chol.T
    columns = {name: np.asarray(values)[index].copy() for name, values in cohort.items()}
    for j, (name, log, low, high, integer) in enumerate(transforms):
        value = np.clip(np.exp(moved[:, j]) if log else moved[:, j], low, high)
        columns[name] = np.rint(value) if integer else value
    new = PatientSimulator(columns, keys=keys, modality=sim.modality_name, constants=sim.k)
    new.set_state(sim.take(index).get_state())
    return new


def _unique_keys(keys: np.ndarray, step: int, rng: np.random.Generator) -> np.ndarray:
    """Fresh noise keys for resampled particles (never the keys of the intake draw)."""
    return patient_keys(rng, len(keys)) ^ np.uint64(0x5EED0000 + step)


# ------------------------------------------------------------------------------------------------- fit
def fit_patient(history: History, n_particles: int = 4000, seed: int = 0, pool: int = 10,
                resample_threshold: float = 0.5, shrink: float = 0.95) -> PatientFit:
    """Fit the patient of ``history`` (see the module docstring).

    Args:
        history: a validated history (:func:`adaptrx.clinic.history.parse_history`).
        n_particles: virtual patients in the filter (100-100000); 4000 fits a 12-week history in well under a
            second.
        pool: the intake step weighs ``pool x n_particles`` prior draws and draws the particles from them
            (intake questionnaires are informative: on 4000 draws alone the effective sample size after the
            intake is often below 100). 1 weighs the particles themselves.
        seed: seed of the prior draw, the particles' noise and the resampling (the same seed gives the same fit).
        shrink: Liu-West shrinkage ``a`` of the parameter jitter at each resampling (0.8-1; 1 = no jitter).
        resample_threshold: resample when the effective sample size falls below this fraction of the particles.

    Returns:
        :class:`PatientFit`.
    """
    if not 100 <= int(n_particles) <= 100_000:
        raise ValueError(f"n_particles: must be an integer in 100-100000, got {n_particles!r}")
    if not 1 <= int(pool) <= 100:
        raise ValueError(f"pool: must be an integer in 1-100, got {pool!r}")
    if not 0.8 <= shrink <= 1.0:
        raise ValueError(f"shrink: must be in [0.8, 1], got {shrink!r}")
    if not 0.0 < resample_threshold <= 1.0:
        raise ValueError(f"resample_threshold: must be in (0, 1], got {resample_threshold!r}")
    intake = history.intake
    rng = np.random.default_rng([int(seed), 0xC11])
    n = int(n_particles)
    # intake: weight a pool of prior draws by the intake records, then draw the particles from it
    cohort, keys, pool_intake = _prior_pool(intake.condition, intake.modality, n * int(pool), int(seed))
    prior = pd.DataFrame({name: np.asarray(cohort[name], dtype=float)[:n].copy() for name in PARAM_COLUMNS})
    logw = _intake_loglik(pool_intake, history)
    if intake.sex is not None:
        logw += np.where(np.asarray(cohort["sex"]) == intake.sex, 0.0, -np.inf)
    intake_records = {field_name: float(np.sum(_normalize(logw) * pool_intake[record]))
                      for field_name, record in INTAKE_RECORDS.items() if getattr(intake, field_name) is None}
    log_evidence = float(np.log(np.mean(np.exp(logw - logw.max()))) + logw.max())
    ess = [effective_sample_size(logw)]
    index = systematic_resample(_normalize(logw), n, rng) if pool > 1 else np.arange(n)
    logw = np.zeros(n) if pool > 1 else logw
    # the age is known: set it (its prior correlations were used by the age kernel above)
    columns = {name: np.asarray(values)[index].copy() for name, values in cohort.items()}
    columns["age"] = np.full(n, float(intake.age))
    sim = PatientSimulator(columns, keys=_unique_keys(keys[index], 0, rng), modality=intake.modality)
    weeks = history.weeks()
    imputed = []
    for step, week in enumerate(weeks.itertuples(index=False), start=1):
        row = pd.Series(week._asdict())
        if effective_sample_size(logw) < resample_threshold * sim.n:
            weights = _normalize(logw)
            index = systematic_resample(weights, sim.n, rng)
            fresh = _unique_keys(sim.noise.keys[index], step, rng)
            sim = (_rejuvenated(sim, weights, index, fresh, rng, shrink) if shrink < 1.0
                   else sim.take(index, keys=fresh))
            logw = np.zeros(sim.n)
        load = 0.0 if np.isnan(row["load"]) else float(row["load"])
        result = sim.step_week(load, int(row["sessions"]), int(row["delivery"]))
        increment = _week_loglik(result, row)
        before = _normalize(logw)
        total = logw + increment
        top = total.max()
        log_evidence += float(np.log(np.sum(before * np.exp(increment - increment.max()))) + increment.max())
        logw = total - top
        ess.append(effective_sample_size(logw))
        imputed.append({"week": int(row["week"]), **_imputed_records(result, _normalize(logw))})
    weights = _normalize(logw)
    unique = len(np.unique(sim.cohort["patient_id"].to_numpy()[weights > 1e-12]))
    return PatientFit(history=history, particles=sim, weights=weights, prior=prior, ess=ess,
                      imputed=pd.DataFrame(imputed, columns=["week", *IMPUTED]), intake_records=intake_records,
                      log_evidence=log_evidence, unique_particles=unique)


def summary(fit: PatientFit) -> dict[str, Any]:
    """The fit as JSON-ready numbers: key parameters (prior vs posterior), state now, ESS, unique particles."""
    post = fit.posterior(KEY_PARAMETERS)
    return {
        "parameters": {name: {k: round(float(v), 4) for k, v in row.items()} for name, row in post.iterrows()},
        "state": {name: {k: round(float(v), 4) for k, v in row.items()} for name, row in fit.state().iterrows()},
        "particles": int(fit.particles.n),
        "unique_particles": int(fit.unique_particles),
        "effective_sample_size": round(float(1.0 / np.sum(fit.weights ** 2)), 1),
        "log_evidence": round(float(fit.log_evidence), 3),
    }


def belief_features(history: History, particles: int = 64, seed: int = 0) -> np.ndarray:
    """The belief features (:data:`adaptrx.envs.belief.BELIEF_FEATURES`, ``(n_features,)`` float32) after the
    logged weeks: the envs' online filter (:class:`~adaptrx.envs.belief.BeliefFilter`, the same code and the
    same number of ``particles`` the policy was trained with) run over the history's intake and weekly records.
    ``seed`` keys its random streams."""
    intake = history.intake
    f = BeliefFilter(1, intake.condition, intake.modality, particles)
    fields = {name: np.array([np.nan if getattr(intake, name) is None else float(getattr(intake, name))])
              for name in INTAKE_RECORDS}
    f.start(np.zeros(1, dtype=np.int64), fields, np.array([seed], dtype=np.uint64))
    one = np.zeros(1, dtype=np.int64)
    for row in history.weeks().itertuples(index=False):
        load = 0.0 if np.isnan(row.load) else float(row.load)
        records = {"attended": np.array([float(row.attended)]), "session_pain_mean": np.array([row.session_pain_mean]),
                   "morning_change_mean": np.array([row.morning_change_mean]), "rpe_mean": np.array([row.rpe_mean]),
                   "flare": np.array([float(row.flare)])}
        f.advance(one, np.array([load]), np.array([float(row.sessions)]), np.array([float(row.delivery)]), records)
    return f.features()[0]
