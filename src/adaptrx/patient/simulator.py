"""Batched daily dynamics of the virtual patient, stepped one prescribed week at a time.

The simulator advances every patient of a batch by one day per iteration of a 7-iteration loop; each
iteration is a handful of vectorised numpy expressions over arrays of shape ``(n,)``. There is no
Python loop over patients. Randomness comes from :class:`~adaptrx.patient.noise.NoiseStreams`, so a
patient's draws depend only on its own key and the day (common random numbers across policies).

Time base: the intake visit is day 0; week ``w`` (0-based) covers days ``7w + 1`` to ``7w + 7``.
Sessions of a week fall on fixed weekdays (:data:`~adaptrx.patient.constants.SESSION_DAYS`).

Mechanisms (``DESIGN.md`` 2.2), in order of the daily update:

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
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from adaptrx.patient.cohort import ADHERENCE_CLASSES
from adaptrx.patient.constants import (
    MODALITIES,
    REMOTE,
    SESSION_DAYS,
    SUPERVISED,
    ModelConstants,
)
from adaptrx.patient.noise import NoiseStreams
from adaptrx.patient.observation import WeekObservation, intake_observation, observe_week

_SCHEDULE = np.zeros((len(SESSION_DAYS), 7), dtype=bool)
for _n, _days in enumerate(SESSION_DAYS):
    _SCHEDULE[_n, list(_days)] = True

_DAY_UNIFORMS = ["attend", "flare", "diary_missing"]
_DAY_NORMALS = ["eta", "flare_size", "obs_session", "obs_morning", "obs_diary", "obs_rpe"]


def stream_keys(patient_ids: list[str] | np.ndarray | pd.Series, seed: int) -> np.ndarray:
    """Noise-stream key of each patient for a given seed (stable across runs and platforms).

    The key depends only on ``(patient_id, seed)``, so a patient keeps its noise whatever batch it is in.
    """
    if int(seed) < 0 or int(seed) >= 2**64:
        raise ValueError(f"seed: must be an integer in [0, 2**64), got {seed}")
    out = np.empty(len(patient_ids), dtype=np.uint64)
    salt = int(seed).to_bytes(8, "little", signed=False)
    for i, pid in enumerate(patient_ids):  # once per episode, not on the hot path
        out[i] = int.from_bytes(hashlib.blake2b(str(pid).encode(), digest_size=8, salt=salt).digest(), "little")
    return out


def _as_int_action(value: np.ndarray | int, n: int, high: int, message: str) -> np.ndarray:
    raw = np.broadcast_to(np.asarray(value), (n,))
    if raw.dtype.kind not in "iub" and (not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw))):
        raise ValueError(message)
    out = raw.astype(np.int64)
    if out.min(initial=0) < 0 or out.max(initial=0) > high:
        raise ValueError(message)
    return out


@dataclass
class PatientParams:
    """Per-patient parameters as float arrays of shape ``(n,)`` (see the cohort YAML for units)."""

    age: np.ndarray
    baseline_pain: np.ndarray  # typical pain at intake (NRS)
    s0: np.ndarray  # baseline sensitization
    capacity_norm: np.ndarray  # strength as a fraction of the age/sex norm
    demand: np.ndarray  # daily-life demand in baseline-capacity units
    phi0: np.ndarray  # intake fear (0-1)
    m0: np.ndarray  # intake motivation (0-1)
    preferred_sessions: np.ndarray
    envelope: np.ndarray
    adaptation_gain: np.ndarray
    capacity_ceiling: np.ndarray
    desensitization_gain: np.ndarray
    sensitization_gain: np.ndarray
    fear_propensity: np.ndarray
    fluctuation_sd: np.ndarray
    flare_hazard: np.ndarray
    context_response: np.ndarray
    detraining_tau: np.ndarray
    function_offset: np.ndarray
    adherence_class: np.ndarray  # int index into ADHERENCE_CLASSES

    @classmethod
    def from_cohort(cls, cohort: pd.DataFrame) -> PatientParams:
        """Build from a cohort table (:func:`adaptrx.patient.make_cohort`)."""
        def col(name: str) -> np.ndarray:
            if name not in cohort.columns:
                raise ValueError(f"cohort: missing column {name!r}")
            return cohort[name].to_numpy(dtype=np.float64)

        unknown = set(cohort["adherence_class"]) - set(ADHERENCE_CLASSES)
        if unknown:
            raise ValueError(f"cohort.adherence_class: unknown class(es) {sorted(unknown)}")
        return cls(
            age=col("age"),
            baseline_pain=col("baseline_pain"),
            s0=col("sensitization"),
            capacity_norm=col("capacity"),
            demand=col("activity_demand") / col("capacity"),
            phi0=col("fear"),
            m0=col("motivation"),
            preferred_sessions=col("preferred_sessions"),
            envelope=col("envelope"),
            adaptation_gain=col("adaptation_gain"),
            capacity_ceiling=col("capacity_ceiling"),
            desensitization_gain=col("desensitization_gain"),
            sensitization_gain=col("sensitization_gain"),
            fear_propensity=col("fear_propensity"),
            fluctuation_sd=col("fluctuation_sd"),
            flare_hazard=col("flare_hazard"),
            context_response=col("context_response"),
            detraining_tau=col("detraining_tau"),
            function_offset=col("function_offset"),
            adherence_class=np.array(
                [ADHERENCE_CLASSES.index(c) for c in cohort["adherence_class"]], dtype=np.int64
            ),
        )


@dataclass
class PatientState:
    """Latent state, arrays of shape ``(n,)``. Loads in baseline-capacity units, pain in NRS."""

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

    def copy(self) -> PatientState:
        return PatientState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def as_dict(self) -> dict[str, np.ndarray]:
        """Copies of every latent variable, keyed by field name."""
        return {f.name: getattr(self, f.name).copy() for f in fields(self)}


@dataclass
class WeekResult:
    """True outcomes of one simulated week (arrays of shape ``(n,)``) plus what a clinic observed."""

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


class PatientSimulator:
    """Batched virtual patients.

    Args:
        cohort: one row per patient (:func:`adaptrx.patient.make_cohort` or a loaded cohort file).
        seed: noise seed; with the patient ids it fixes every random draw (common random numbers).
        modality: programme modality (``resistance``, ``aerobic``, ``mind_body``, ``mixed``).
        constants: population-level shape constants (defaults are the calibrated ones).
        keys: explicit noise-stream keys (overrides ``seed``), shape ``(n,)`` ``uint64``.
    """

    def __init__(
        self,
        cohort: pd.DataFrame,
        seed: int = 0,
        modality: str = "resistance",
        constants: ModelConstants | None = None,
        keys: np.ndarray | None = None,
    ) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality: must be one of {sorted(MODALITIES)}, got {modality!r}")
        self.k = constants or ModelConstants()
        self.modality = MODALITIES[modality]
        self.modality_name = modality
        self.cohort = cohort.reset_index(drop=True)
        self.p = PatientParams.from_cohort(self.cohort)
        self.n = len(self.cohort)
        self.noise = NoiseStreams(stream_keys(self.cohort["patient_id"], seed) if keys is None else keys)
        if len(self.noise) != self.n:
            raise ValueError("keys: need one stream key per patient")
        k, p = self.k, self.p
        # Derived per-patient constants.
        self._decay_d = np.exp(-1.0 / k.irritation_tau)
        demand_ss = self._demand_irritation_input(p.envelope, p.s0) / (1 - self._decay_d)
        # Mean irritation from background flares, so that untreated pain stays at baseline_pain on average.
        flare_mean = p.flare_hazard * k.flare_size_median * np.exp(k.flare_size_sigma**2 / 2) / (1 - self._decay_d)
        self._gain0 = 1.0 + p.s0 + k.fear_gain * p.phi0
        self._drive = np.maximum(0.3, p.baseline_pain / self._gain0 - k.irritation_pain * (demand_ss + flare_mean))
        self._demand_ss0 = demand_ss
        self._flare_mean0 = flare_mean
        self._m_floor = np.array([k.motivation_floor[c] for c in ADHERENCE_CLASSES])[p.adherence_class]
        self._m_tau = np.array([k.motivation_tau[c] for c in ADHERENCE_CLASSES])[p.adherence_class]
        self._low_class = p.adherence_class == ADHERENCE_CLASSES.index("low")
        self._care = np.asarray(k.care_level)
        self.state = self.initial_state()
        self.intake = self._intake()

    # ------------------------------------------------------------------ state
    def initial_state(self) -> PatientState:
        """The state on the intake day (day 0), enrolled on a higher-pain day than usual."""
        k, p, n = self.k, self.p, self.n
        z = self.noise.normal(["enrolment"], 0)[0, 0, :, 0]
        eta = p.fluctuation_sd * (k.rtm_shift + z)
        irritation = self._flare_mean0.copy()
        drive = self._drive + k.irritation_pain * (self._demand_ss0 + irritation)
        pain = np.clip(self._gain0 * drive + eta, 0.0, 10.0)
        zeros = np.zeros(n)
        return PatientState(
            capacity=np.ones(n),
            fatigue=zeros.copy(),
            acute_load=zeros.copy(),
            chronic_load=zeros.copy(),
            session_rate=zeros.copy(),
            irritation=irritation,
            demand_irritation=self._demand_ss0.copy(),
            in_flare=np.zeros(n, dtype=bool),
            sensitization=p.s0.copy(),
            fear=p.phi0.copy(),
            expected_increase=0.5 + k.fear_expectation * p.phi0,
            motivation=p.m0.copy(),
            habit=zeros.copy(),
            context=zeros.copy(),
            eta=eta,
            pain=pain,
            pain_recent=p.baseline_pain.copy(),
            dropped_out=np.zeros(n, dtype=bool),
            day=np.ones(n, dtype=np.int64),
            week=np.zeros(n, dtype=np.int64),
        )

    def _intake(self) -> dict[str, np.ndarray]:
        """Intake covariates a clinic records (noisy questionnaires; intake pain is a single NRS)."""
        return intake_observation(self.p, self.state.pain, self.noise, self.k)

    def _demand_irritation_input(self, envelope: np.ndarray, sensitization: np.ndarray) -> np.ndarray:
        """Daily irritation from daily-life demand above the tolerance ``envelope`` (baseline-capacity units)."""
        k = self.k
        excess = np.maximum(0.0, self.p.demand - envelope) / envelope
        scale = k.demand_irritation_gain * k.irritation_gain * (1.0 + k.irritation_sensitized * sensitization)
        return scale * excess**2

    def function_score(self, pain: np.ndarray, capacity: np.ndarray | None = None) -> np.ndarray:
        """True function (0-100, higher is better) at weekly mean ``pain`` and ``capacity`` (default: current)."""
        k, p = self.k, self.p
        capacity = self.state.capacity if capacity is None else capacity
        return np.clip(100.0 + p.function_offset - k.function_pain * pain - k.function_demand * p.demand / capacity,
                       0.0, 100.0)

    def baseline_function(self) -> np.ndarray:
        """True function at intake: typical baseline pain and baseline capacity."""
        return self.function_score(self.p.baseline_pain, np.ones(self.n))

    def get_state(self) -> dict[str, np.ndarray]:
        """A copy of the full latent state (for what-if rollouts)."""
        return self.state.as_dict()

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state from :meth:`get_state` (arrays are copied)."""
        names = {f.name for f in fields(PatientState)}
        if set(state) != names:
            raise ValueError(f"state: expected keys {sorted(names)}")
        self.state = PatientState(**{name: np.array(state[name], copy=True) for name in names})

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
        """
        k, p, s, n = self.k, self.p, self.state, self.n
        load = np.broadcast_to(np.asarray(load, dtype=np.float64), (n,))
        if np.isnan(load).any():
            raise ValueError("load: must not be NaN")
        load = np.clip(load, 0.0, 1.5)
        sessions = _as_int_action(sessions, n, 5, "sessions: must be integers in 0-5")
        delivery = _as_int_action(delivery, n, 2, "delivery: must be 0 (home alone), 1 (remote) or 2 (supervised)")
        active = ~s.dropped_out
        sessions = np.where(active, sessions, 0)
        sup = delivery == SUPERVISED
        rem = delivery == REMOTE
        schedule = _SCHEDULE[sessions].T  # (7, n)
        u = self.noise.uniform(_DAY_UNIFORMS, s.day, 7)[..., 0]  # (3, 7, n)
        z = self.noise.normal(_DAY_NORMALS, s.day, 7)[..., 0]  # (6, 7, n)
        u_att, u_flare, u_miss = u
        z_eta, z_fsize, z_sess, z_morn, z_diary, z_rpe = z

        contact = np.minimum(1.0, sessions / k.contact_full) ** k.contact_exponent
        care = self._care[delivery] * contact  # 0 without sessions: not in care
        x_target = p.context_response * care
        burden = np.maximum(0.0, sessions - p.preferred_sessions)
        deliv_des = np.where(sup, k.supervision_desensitization, np.where(rem, k.remote_desensitization, 1.0))
        attend_base = (
            k.attend_intercept
            - k.attend_burden * burden
            + k.attend_supervised * sup
            + k.attend_remote * rem
            + k.attend_low_class * self._low_class
        )
        decay_f = np.exp(-1.0 / k.fatigue_tau)
        decay_h = np.exp(-1.0 / k.habit_tau)
        rho = k.eta_rho
        innov = np.sqrt(1 - rho**2) * p.fluctuation_sd
        mod = self.modality

        pains = np.empty((8, n))  # true pain on days 0..6 and the morning after day 6
        pains[0] = s.pain
        sess_pain = np.full((7, n), np.nan)
        attended = np.zeros((7, n), dtype=bool)
        rel_load = np.zeros((7, n))
        flares = np.zeros(n, dtype=np.int64)
        for d in range(7):
            # 1. attendance
            logit = (
                attend_base
                + k.attend_motivation * (s.motivation - 0.5)
                + k.attend_habit * s.habit
                - k.attend_fear * s.fear
                - k.attend_pain * np.maximum(0.0, s.pain - 5.0)
                - k.attend_flare * s.in_flare
            )
            sess = schedule[d] & (u_att[d] < 1.0 / (1.0 + np.exp(-logit)))
            attended[d] = sess
            ell = load * sess
            rel = ell / s.capacity
            rel_load[d] = rel
            # 2. loads, envelope, irritation
            s.acute_load += (ell - s.acute_load) / 7.0
            s.chronic_load += (ell - s.chronic_load) / 28.0
            s.session_rate += (7.0 * sess - s.session_rate) / 7.0
            env = p.envelope * s.capacity * np.maximum(0.2, 1.0 - k.fatigue_envelope * s.fatigue)
            excess = np.maximum(0.0, ell - env) / env
            free = k.acwr_free * p.envelope * s.capacity
            spike = np.maximum(0.0, s.acute_load - k.acwr_limit * s.chronic_load - free) / (s.chronic_load + free)
            irr_scale = k.irritation_gain * (1.0 + k.irritation_sensitized * s.sensitization)
            irr_sess = np.where(sess, mod.irritation * irr_scale * (excess**2 + k.spike_weight * spike**2), 0.0)
            hazard = p.flare_hazard * (1.0 + k.session_flare * rel)  # sessions provoke minor flares
            bg = np.where(u_flare[d] < hazard, k.flare_size_median * np.exp(k.flare_size_sigma * z_fsize[d]), 0.0)
            s.irritation = s.irritation * self._decay_d + irr_sess + bg
            s.demand_irritation = s.demand_irritation * self._decay_d + self._demand_irritation_input(
                env, s.sensitization
            )
            now_flare = s.irritation >= k.flare_threshold
            onset = now_flare & ~s.in_flare
            flares += onset
            s.in_flare = now_flare
            # 3. fatigue, capacity
            s.fatigue = s.fatigue * decay_f + k.fatigue_gain * rel
            stim = np.maximum(0.0, rel - k.stimulus_threshold) / (1.0 - k.stimulus_threshold)
            headroom = np.maximum(0.0, p.capacity_ceiling - s.capacity)
            s.capacity += (
                sess * p.adaptation_gain * mod.capacity * np.minimum(stim, 1.5) * headroom
                - (s.capacity - 1.0) / p.detraining_tau
            )
            # 4. pain
            gain = 1.0 + s.sensitization + k.fear_gain * s.fear
            s.eta = rho * s.eta + innov * z_eta[d]
            drive = self._drive + k.irritation_pain * (s.irritation + s.demand_irritation)
            pain = np.clip(gain * drive - s.context + s.eta, 0.0, 10.0)
            increase = gain * (k.session_pain * rel + k.session_pain_excess * excess)
            p_sess = np.clip(pain + increase, 0.0, 10.0)
            sess_pain[d] = np.where(sess, p_sess, np.nan)
            # 5. sensitization
            exposure = np.minimum(1.0, rel / k.exposure_load)
            allowed = np.maximum(k.tolerable_pain, pain + k.tolerable_increase)
            tolerable = np.clip(1.0 - (p_sess - allowed) / 2.0, 0.0, 1.0)
            tolerable = tolerable * ~s.in_flare
            rate_h = s.session_rate**k.frequency_hill
            freq = rate_h / (rate_h + k.frequency_half**k.frequency_hill)
            des = (
                sess * p.desensitization_gain * mod.desensitization * deliv_des * freq * exposure * tolerable
                * np.maximum(0.0, s.sensitization - k.sensitization_floor * p.s0)
                / (1.0 + k.desensitization_damping * s.sensitization)
            )
            s.sensitization += (
                -des + p.sensitization_gain * irr_sess + (p.s0 - s.sensitization) / k.sensitization_tau
            )
            # 6. fear, context, motivation, habit
            err = np.minimum(increase, 10.0) - s.expected_increase
            learn = sess * exposure * p.fear_propensity
            s.fear += learn * (
                k.fear_up * np.maximum(0.0, err - k.fear_surprise) - k.fear_down * np.maximum(0.0, -err)
            )
            s.fear += onset * p.fear_propensity * k.fear_flare * (1.0 - s.fear)
            s.fear += (p.phi0 - s.fear) / k.fear_tau
            np.clip(s.fear, 0.0, 1.0, out=s.fear)
            s.expected_increase += sess * k.expectation_rate * (increase - s.expected_increase)
            rising = x_target > s.context
            s.context += (x_target - s.context) / np.where(rising, k.context_rise_tau, k.context_fade_tau)
            s.pain_recent += (pain - s.pain_recent) / 28.0
            improvement = p.baseline_pain - s.pain_recent
            m_target = np.clip(p.m0 * self._m_floor + k.improvement_motivation * improvement, 0.0, 1.0)
            s.motivation += (m_target - s.motivation) / self._m_tau
            s.habit = s.habit * decay_h + sess * k.habit_gain * (1.0 - s.habit)
            s.pain = pain
            pains[d + 1] = pain

        # End of week: dropout hazard for patients in an exercise programme.
        n_att = attended.sum(axis=0)
        missed = np.where(sessions > 0, 1.0 - n_att / np.maximum(sessions, 1), 0.0)
        mean_rel = np.where(n_att > 0, rel_load.sum(axis=0) / np.maximum(n_att, 1), 0.0)
        no_improvement = (s.week >= 3) & (s.pain_recent >= p.baseline_pain - 0.5)
        logit = (
            k.dropout_intercept
            + k.dropout_missed * missed
            + k.dropout_flare * (flares > 0)
            + k.dropout_no_improvement * no_improvement
            + k.dropout_intensity * np.maximum(0.0, mean_rel - 0.6)
            - k.dropout_supervised * sup
            - k.dropout_motivation * (s.motivation - 0.5)
            + k.dropout_burden * burden
        )
        week_u = self.noise.uniform(["dropout"], s.day, 1)[0, 0, :, 0]
        new_dropout = active & (sessions > 0) & (load > 0) & (week_u < 1.0 / (1.0 + np.exp(-logit)))
        s.dropped_out = s.dropped_out | new_dropout

        pain_mean = pains[1:].mean(axis=0)
        function = self.function_score(pain_mean)
        obs = observe_week(
            k, self.noise, s, pains, sess_pain, attended, rel_load, sessions, load, delivery, flares,
            function, u_miss, z_sess, z_morn, z_diary, z_rpe,
        )
        result = WeekResult(
            pain=pain_mean,
            pain_max=pains[1:].max(axis=0),
            session_pain_max=np.where(n_att > 0, np.nanmax(np.where(attended, sess_pain, -1.0), axis=0), np.nan),
            function=function,
            capacity=s.capacity.copy(),
            flares=flares,
            sessions_prescribed=sessions.copy(),
            sessions_attended=n_att,
            relative_load=mean_rel,
            dropped_out=s.dropped_out.copy(),
            new_dropout=new_dropout,
            observation=obs,
        )
        s.day = s.day + 7
        s.week = s.week + 1
        return result
