"""The compiled daily dynamics of the virtual patient: the single source of the model.

Everything a simulated week does happens in :func:`step_week`, one ``numba.njit`` function that loops
over patients and, for each, over the 7 days of the week, with the patient's state in local variables.
:func:`init_patients` computes the derived per-patient constants, the intake-day state and the intake
observation. :class:`~adaptrx.patient.simulator.PatientSimulator` is the Python face of both; it never
computes dynamics itself.

Memory layout (all ``float64``, one column per patient so that a row is a contiguous ``(n,)`` view):

* ``P``: parameters, shape ``(len(Pr), n)``; rows named by :class:`Pr` (cohort columns, then derived
  per-patient constants that :func:`init_patients` fills);
* ``S``: latent state, shape ``(len(St), n)``; rows named by :class:`St` (bool and int fields as 0/1 and
  whole numbers);
* ``K``: population constants and modality multipliers, shape ``(len(Kc),)``, built once by
  :func:`constants_vector`;
* ``out``: one week's results, shape ``(len(Out), n)``; rows named by :class:`Out`, true outcomes first,
  then the clinic's observation (``DESIGN.md`` 2.4).

Random numbers: :func:`uniform` and :func:`normal` are pure functions of ``(patient key, day, channel,
slot)``, bit for bit the draws of :class:`~adaptrx.patient.noise.NoiseStreams` (SplitMix64, top 53 bits,
inverse normal CDF by Wichura's AS241). Because a draw never depends on which other draws were made, the
kernel only draws what a day needs (attendance only on scheduled session days, a flare's size only when
a background flare happens, session reports only for attended sessions, ...) without shifting any other
draw: common random numbers across policies are preserved exactly.

Compiled with ``cache=True`` (the first use compiles, ~5 s, and stores machine code in ``__pycache__``;
later processes load it in ~0.2 s), ``fastmath=False`` (IEEE arithmetic: reproducible; the only fused
multiply-adds are the explicit :func:`fma` of the AS241 polynomials, exactly rounded on every platform),
``error_model="numpy"`` (no Python exception check on each division) and single-threaded. Divisions by
time constants are multiplications by their reciprocals, precomputed in ``K`` and ``P``.

Cost (one CPU core): ~0.55 us per patient-week, about 40 % of it the ~20 normal draws a week needs.
"""

from __future__ import annotations

import math
from enum import IntEnum

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from adaptrx.common.jit_cache import invalidate_stale_caches
from adaptrx.patient.constants import CHANNELS, SESSION_DAYS, Modality, ModelConstants

# numba's cache does not track calls across files: drop machine code compiled from other sources (first).
invalidate_stale_caches()

# ----------------------------------------------------------------------------------------- layouts


class Pr(IntEnum):
    """Rows of the parameter matrix ``P`` (units as in the cohort YAML)."""

    age = 0
    baseline_pain = 1  # typical pain at intake (NRS)
    s0 = 2  # baseline sensitization (cohort column ``sensitization``)
    capacity_norm = 3  # strength as a fraction of the age/sex norm (cohort column ``capacity``)
    activity_demand = 4  # daily-life demand in norm units (cohort column)
    phi0 = 5  # intake fear 0-1 (cohort column ``fear``)
    m0 = 6  # intake motivation 0-1 (cohort column ``motivation``)
    preferred_sessions = 7
    envelope = 8
    adaptation_gain = 9
    capacity_ceiling = 10
    desensitization_gain = 11
    sensitization_gain = 12
    fear_propensity = 13
    fluctuation_sd = 14
    flare_hazard = 15
    context_response = 16
    detraining_tau = 17
    function_offset = 18
    adherence_class = 19  # index into ADHERENCE_CLASSES
    # derived by init_patients
    demand = 20  # daily-life demand in baseline-capacity units
    demand_ss0 = 21  # steady-state demand irritation at intake
    flare_mean0 = 22  # mean irritation from background flares
    gain0 = 23  # pain gain at intake (1 + S0 + c Phi0)
    drive = 24  # disease drive, so that untreated pain stays at baseline_pain on average
    m_floor = 25  # motivation floor of the adherence class (x M0)
    m_tau = 26  # days; motivation time constant of the class
    low_class = 27  # 1.0 for the ``low`` adherence class
    innov = 28  # sd of the AR(1) innovation of eta (NRS)
    inv_detraining_tau = 29  # 1 / detraining_tau (per day)
    inv_m_tau = 30  # 1 / m_tau (per day)


N_RAW_PARAMS = int(Pr.demand)  # rows 0 .. N_RAW_PARAMS-1 come from the cohort


class St(IntEnum):
    """Rows of the state matrix ``S`` (the fields of :class:`~adaptrx.patient.simulator.PatientState`)."""

    capacity = 0
    fatigue = 1
    acute_load = 2
    chronic_load = 3
    session_rate = 4
    irritation = 5
    demand_irritation = 6
    in_flare = 7  # 0/1
    sensitization = 8
    fear = 9
    expected_increase = 10
    motivation = 11
    habit = 12
    context = 13
    eta = 14
    pain = 15
    pain_recent = 16
    dropped_out = 17  # 0/1
    day = 18  # next day to simulate
    week = 19  # weeks simulated since intake
    flare_memory = 20  # flare weeks, each fading with flare_memory_tau (weeks)


class Out(IntEnum):
    """Rows of a week's output matrix: true outcomes, then the clinic's observation (``obs_``)."""

    pain = 0
    pain_max = 1
    session_pain_max = 2
    function = 3
    capacity = 4
    relative_load = 5
    flares = 6  # rows 6-8 are whole numbers
    sessions_prescribed = 7
    sessions_attended = 8
    dropped_out = 9  # rows 9-12 are 0/1
    new_dropout = 10
    flare_reported = 11
    obs_dropped_out = 12
    session_pain_mean = 13
    obs_session_pain_max = 14
    morning_pain_mean = 15
    morning_change_mean = 16
    diary_pain = 17
    diary_days = 18
    rpe_mean = 19
    attendance = 20
    obs_function = 21
    capacity_test = 22


class In(IntEnum):
    """Rows of the intake observation matrix."""

    age = 0
    pain = 1
    sensitization_score = 2
    fear_score = 3
    preferred_sessions = 4
    function = 5  # function questionnaire (0-100): true intake function + report noise (day 0 obs_function)


class Kc(IntEnum):
    """Entries of the constants vector ``K``: :class:`ModelConstants` fields of the same name, then
    derived values (see :func:`constants_vector`)."""

    stimulus_threshold = 0
    fatigue_gain = 1
    fatigue_envelope = 2
    acwr_limit = 3
    acwr_free = 4
    spike_weight = 5
    irritation_gain = 6
    demand_irritation_gain = 7
    irritation_sensitized = 8
    flare_threshold = 9
    flare_size_median = 10
    flare_size_sigma = 11
    session_flare = 12
    irritation_pain = 13
    fear_gain = 14
    eta_rho = 15
    rtm_shift = 16
    session_pain = 17
    session_pain_excess = 18
    tolerable_pain = 19
    tolerable_increase = 20
    sensitization_tau = 21
    sensitization_floor = 22
    frequency_hill = 23
    desensitization_damping = 24
    supervision_desensitization = 25
    remote_desensitization = 26
    exposure_load = 27
    fear_expectation = 28
    expectation_rate = 29
    fear_up = 30
    fear_surprise = 31
    fear_down = 32
    fear_flare = 33
    fear_tau = 34
    context_rise_tau = 35
    context_fade_tau = 36
    habit_gain = 37
    improvement_motivation = 38
    attend_intercept = 39
    attend_motivation = 40
    attend_habit = 41
    attend_fear = 42
    attend_pain = 43
    attend_flare = 44
    attend_burden = 45
    attend_supervised = 46
    attend_remote = 47
    attend_low_class = 48
    dropout_intercept = 49
    dropout_missed = 50
    dropout_flare = 51
    dropout_no_improvement = 52
    dropout_intensity = 53
    dropout_supervised = 54
    dropout_motivation = 55
    dropout_burden = 56
    function_pain = 57
    function_demand = 58
    nrs_sd = 59
    nrs_sd_severity = 60
    diary_missing = 61
    diary_missing_motivation = 62
    rpe_sd = 63
    function_sd = 64
    capacity_test_cv = 65
    capacity_test_every = 66
    irritation_block = 67
    flare_release = 68
    dropout_flare_repeat = 69
    flare_memory_tau = 70
    # derived
    decay_d = 71  # exp(-1 / irritation_tau)
    decay_f = 72  # exp(-1 / fatigue_tau)
    decay_h = 73  # exp(-1 / habit_tau)
    innov_scale = 74  # sqrt(1 - eta_rho^2)
    flare_mean_factor = 75  # exp(flare_size_sigma^2 / 2), mean / median of a lognormal flare
    frequency_half_hill = 76  # frequency_half ** frequency_hill
    mod_capacity = 77  # modality multipliers
    mod_desensitization = 78
    mod_irritation = 79
    inv_sensitization_tau = 80  # reciprocals of time constants (per day) and of divisors
    inv_fear_tau = 81
    inv_context_rise_tau = 82
    inv_context_fade_tau = 83
    inv_stimulus_range = 84  # 1 / (1 - stimulus_threshold)
    inv_exposure_load = 85
    contact0 = 86  # contact0 + s: contact-driven share of context at s sessions/week (s = 0..5)
    care0 = 92  # care0 + delivery: care level of the delivery mode (0 home alone, 1 remote, 2 supervised)
    m_floor0 = 95  # m_floor0 + class: motivation floor of the adherence class
    m_tau0 = 98  # m_tau0 + class: motivation time constant (days)
    decay_flare_memory = 101  # exp(-1 / flare_memory_tau), per week
    size = 102  # length of K


def constants_vector(k: ModelConstants, modality: Modality, classes: tuple[str, ...]) -> np.ndarray:
    """The ``K`` vector of a set of constants and a modality (``classes``: adherence class names in index order).

    Derived entries are computed with the same numpy expressions the model is defined by, so they are
    bit for bit what a numpy implementation would use.
    """
    out = np.zeros(int(Kc.size))
    for member in Kc:
        if member < Kc.decay_d:
            out[member] = float(getattr(k, member.name))
    out[Kc.decay_d] = np.exp(-1.0 / k.irritation_tau)
    out[Kc.decay_f] = np.exp(-1.0 / k.fatigue_tau)
    out[Kc.decay_h] = np.exp(-1.0 / k.habit_tau)
    out[Kc.decay_flare_memory] = np.exp(-1.0 / k.flare_memory_tau)
    out[Kc.innov_scale] = np.sqrt(1 - k.eta_rho**2)
    out[Kc.flare_mean_factor] = np.exp(k.flare_size_sigma**2 / 2)
    out[Kc.frequency_half_hill] = k.frequency_half**k.frequency_hill
    out[Kc.mod_capacity] = modality.capacity
    out[Kc.mod_desensitization] = modality.desensitization
    out[Kc.mod_irritation] = modality.irritation
    out[Kc.inv_sensitization_tau] = 1.0 / k.sensitization_tau
    out[Kc.inv_fear_tau] = 1.0 / k.fear_tau
    out[Kc.inv_context_rise_tau] = 1.0 / k.context_rise_tau
    out[Kc.inv_context_fade_tau] = 1.0 / k.context_fade_tau
    out[Kc.inv_stimulus_range] = 1.0 / (1.0 - k.stimulus_threshold)
    out[Kc.inv_exposure_load] = 1.0 / k.exposure_load
    out[Kc.contact0 : Kc.contact0 + 6] = np.minimum(1.0, np.arange(6) / k.contact_full) ** k.contact_exponent
    out[Kc.care0 : Kc.care0 + 3] = k.care_level
    out[Kc.m_floor0 : Kc.m_floor0 + 3] = [k.motivation_floor[c] for c in classes]
    out[Kc.m_tau0 : Kc.m_tau0 + 3] = [k.motivation_tau[c] for c in classes]
    return out


# ------------------------------------------------------------------------------- random numbers

# IEEE arithmetic (no fastmath: reproducible), cached machine code, numpy error model (x / 0 gives inf, no
# Python exception check on every division)
_jit = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_U64 = np.uint64
_INV53 = 1.0 / float(1 << 53)
_INV7, _INV28 = 1.0 / 7.0, 1.0 / 28.0  # EWMA weights of 7- and 28-day averages
_SCHEDULE = np.zeros((len(SESSION_DAYS), 7), dtype=np.bool_)  # [sessions per week, weekday] -> session day
for _n, _days in enumerate(SESSION_DAYS):
    _SCHEDULE[_n, list(_days)] = True

# Channel, slot and intake-day numbers typed int64 (not numba literals): one compiled draw function serves
# every call site.
_I0, _I1, _I2 = np.int64(0), np.int64(1), np.int64(2)
_CH_ETA = np.int64(CHANNELS["eta"])
_CH_ATTEND = np.int64(CHANNELS["attend"])
_CH_DROPOUT = np.int64(CHANNELS["dropout"])
_CH_FLARE = np.int64(CHANNELS["flare"])
_CH_FLARE_SIZE = np.int64(CHANNELS["flare_size"])
_CH_OBS_SESSION = np.int64(CHANNELS["obs_session"])
_CH_OBS_MORNING = np.int64(CHANNELS["obs_morning"])
_CH_DIARY_MISSING = np.int64(CHANNELS["diary_missing"])
_CH_OBS_DIARY = np.int64(CHANNELS["obs_diary"])
_CH_OBS_RPE = np.int64(CHANNELS["obs_rpe"])
_CH_OBS_FUNCTION = np.int64(CHANNELS["obs_function"])
_CH_OBS_CAPACITY = np.int64(CHANNELS["obs_capacity"])
_CH_OBS_INTAKE = np.int64(CHANNELS["obs_intake"])
_CH_ENROLMENT = np.int64(CHANNELS["enrolment"])


@_jit
def splitmix(key: np.uint64, day: int, channel: int, slot: int) -> np.uint64:
    """SplitMix64 output for counter ``day * 64 + channel + (slot << 40)`` keyed by ``key`` (wrapping uint64)."""
    z = (_U64(day) * _U64(64) + _U64(channel) + (_U64(slot) << _U64(40))) * _GOLDEN + key
    z = (z ^ (z >> _U64(30))) * _M1
    z = (z ^ (z >> _U64(27))) * _M2
    return z ^ (z >> _U64(31))


@_jit
def uniform(key: np.uint64, day: int, channel: int, slot: int) -> float:
    """Uniform in (0, 1) from the top 53 bits: ``((bits >> 11) + 0.5) * 2**-53``."""
    return (np.float64(splitmix(key, day, channel, slot) >> _U64(11)) + 0.5) * _INV53


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with a single rounding (IEEE fused multiply-add; deterministic on every platform)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [f64], ir.FunctionType(f64, [f64, f64, f64]))
        return builder.call(fn, [context.cast(builder, a_, t, types.float64)
                                 for a_, t in zip(args, signature.args, strict=True)])

    return sig, codegen


# AS241 (PPND16) coefficients, ascending powers; the denominators' constant term is 1.
_AS241_A = (3.3871328727963666080e0, 1.3314166789178437745e2, 1.9715909503065514427e3, 1.3731693765509461125e4,
            4.5921953931549871457e4, 6.7265770927008700853e4, 3.3430575583588128105e4, 2.5090809287301226727e3)
_AS241_B = (1.0, 4.2313330701600911252e1, 6.8718700749205790830e2, 5.3941960214247511077e3,
            2.1213794301586595867e4, 3.9307895800092710610e4, 2.8729085735721942674e4, 5.2264952788528545610e3)
_AS241_C = (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0, 3.64784832476320460504e0,
            1.27045825245236838258e0, 2.41780725177450611770e-1, 2.27238449892691845833e-2, 7.74545014278341407640e-4)
_AS241_D = (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
            1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4, 1.05075007164441684324e-9)
_AS241_E = (6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0, 2.96560571828504891230e-1,
            2.65321895265761230930e-2, 1.24266094738807843860e-3, 2.71155556874348757815e-5, 2.01033439929228813265e-7)
_AS241_F = (1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
            7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7, 2.04426310338993978564e-15)


@_jit
def _ratio(c: tuple, d: tuple, r: float) -> float:
    """``(sum c_k r^k) / (sum d_k r^k)`` for degree-7 polynomials, Horner with fused multiply-adds."""
    num = fma(fma(fma(fma(fma(fma(fma(c[7], r, c[6]), r, c[5]), r, c[4]), r, c[3]), r, c[2]), r, c[1]), r, c[0])
    den = fma(fma(fma(fma(fma(fma(fma(d[7], r, d[6]), r, d[5]), r, d[4]), r, d[3]), r, d[2]), r, d[1]), r, d[0])
    return num / den


@_jit
def ndtri(p: float) -> float:
    """Standard normal quantile of ``p`` in (0, 1): Wichura (1988) AS241 PPND16, ~1e-16 relative accuracy."""
    q = p - 0.5
    if abs(q) <= 0.425:  # central region: rational function of 0.180625 - q^2
        return q * _ratio(_AS241_A, _AS241_B, 0.180625 - q * q)
    r = math.sqrt(-math.log(p if q < 0.0 else 1.0 - p))  # tails: rational functions of sqrt(-log(tail))
    z = _ratio(_AS241_C, _AS241_D, r - 1.6) if r <= 5.0 else _ratio(_AS241_E, _AS241_F, r - 5.0)
    return -z if q < 0.0 else z


@_jit
def normal(key: np.uint64, day: int, channel: int, slot: int) -> float:
    """Standard normal: :func:`ndtri` of the :func:`uniform` of the same ``(key, day, channel, slot)``."""
    return ndtri(uniform(key, day, channel, slot))


@_jit
def ndtri_array(u: np.ndarray) -> np.ndarray:
    """:func:`ndtri` of every element of a 1-D array."""
    out = np.empty_like(u)
    for j in range(u.shape[0]):
        out[j] = ndtri(u[j])
    return out


@_jit
def draw_array(keys: np.ndarray, first_day: np.ndarray, channels: np.ndarray, n_days: int, slots: int,
               gaussian: bool) -> np.ndarray:
    """:func:`uniform` (or :func:`normal` if ``gaussian``) draws of many patients, days, channels and slots:
    shape ``(len(channels), n_days, len(keys), slots)``, day ``first_day[i] + t`` for patient ``i``
    (what :class:`~adaptrx.patient.noise.NoiseStreams` returns)."""
    out = np.empty((channels.shape[0], n_days, keys.shape[0], slots))
    for c in range(channels.shape[0]):
        for t in range(n_days):
            for i in range(keys.shape[0]):
                day = first_day[i] + t
                for j in range(slots):
                    u = uniform(keys[i], day, channels[c], j)
                    out[c, t, i, j] = ndtri(u) if gaussian else u
    return out


@_jit
def power(x: float, y: float) -> float:
    """``x ** y``; by repeated squaring when ``y`` is a whole number in 1-16 (exact multiplications, faster
    than ``pow``), else ``pow``."""
    if 1.0 <= y <= 16.0 and y == math.floor(y):
        k, result = int(y), 1.0
        while k:
            if k & 1:
                result *= x
            x *= x
            k >>= 1
        return result
    return x**y


@_jit
def nrs(true: float, z: float, sd0: float, sd_severity: float) -> float:
    """Integer 0-10 report of a true pain level: noise sd ``sd0 + sd_severity * true``, rounded half to even."""
    return min(max(np.rint(true + (sd0 + sd_severity * true) * z), 0.0), 10.0)


@_jit
def nrs_array(true: np.ndarray, z: np.ndarray, sd0: float, sd_severity: float) -> np.ndarray:
    """:func:`nrs` elementwise over 1-D arrays."""
    out = np.empty_like(true)
    for j in range(true.shape[0]):
        out[j] = nrs(true[j], z[j], sd0, sd_severity)
    return out


@_jit
def function_score(offset: float, demand: float, pain: float, capacity: float, K: np.ndarray) -> float:
    """True function (0-100, higher is better; mechanism 11) at weekly mean ``pain`` (NRS) and ``capacity``
    (x baseline), for a patient with ``function_offset`` ``offset`` and daily-life ``demand``."""
    return min(max(100.0 + offset - K[Kc.function_pain] * pain - K[Kc.function_demand] * demand / capacity, 0.0),
               100.0)


@_jit
def function_array(offset: np.ndarray, demand: np.ndarray, pain: np.ndarray, capacity: np.ndarray,
                   K: np.ndarray) -> np.ndarray:
    """:func:`function_score` elementwise over 1-D arrays of the same length."""
    out = np.empty_like(pain)
    for j in range(pain.shape[0]):
        out[j] = function_score(offset[j], demand[j], pain[j], capacity[j], K)
    return out


# ------------------------------------------------------------------------------------- intake


@_jit
def init_patients(P: np.ndarray, S: np.ndarray, K: np.ndarray, keys: np.ndarray, index: np.ndarray,
                  intake: np.ndarray) -> None:
    """For patients ``index`` (columns of the matrices): derived parameters from the cohort rows of ``P``,
    the intake-day state (day 0, enrolled on a higher-pain day than usual) and the intake observation
    (single NRS, questionnaires, preferred sessions and a function score at typical baseline pain)."""
    for i in index:
        key = keys[i]
        s0, phi0, envelope = P[Pr.s0, i], P[Pr.phi0, i], P[Pr.envelope, i]
        cls = int(P[Pr.adherence_class, i])
        demand = P[Pr.activity_demand, i] / P[Pr.capacity_norm, i]
        excess = max(0.0, demand - envelope) / envelope  # demand above the envelope irritates (mechanism 2)
        scale = K[Kc.demand_irritation_gain] * K[Kc.irritation_gain] * (1.0 + K[Kc.irritation_sensitized] * s0)
        demand_ss = scale * (excess * excess) / (1 - K[Kc.decay_d])
        flare_mean = P[Pr.flare_hazard, i] * K[Kc.flare_size_median] * K[Kc.flare_mean_factor] / (1 - K[Kc.decay_d])
        gain0 = 1.0 + s0 + K[Kc.fear_gain] * phi0
        drive = max(0.3, P[Pr.baseline_pain, i] / gain0 - K[Kc.irritation_pain] * (demand_ss + flare_mean))
        P[Pr.demand, i] = demand
        P[Pr.demand_ss0, i] = demand_ss
        P[Pr.flare_mean0, i] = flare_mean
        P[Pr.gain0, i] = gain0
        P[Pr.drive, i] = drive
        P[Pr.m_floor, i] = K[Kc.m_floor0 + cls]
        P[Pr.m_tau, i] = K[Kc.m_tau0 + cls]
        P[Pr.low_class, i] = 1.0 if cls == 2 else 0.0
        P[Pr.innov, i] = K[Kc.innov_scale] * P[Pr.fluctuation_sd, i]
        P[Pr.inv_detraining_tau, i] = 1.0 / P[Pr.detraining_tau, i]
        P[Pr.inv_m_tau, i] = 1.0 / P[Pr.m_tau, i]

        eta = P[Pr.fluctuation_sd, i] * (K[Kc.rtm_shift] + normal(key, _I0, _CH_ENROLMENT, _I0))
        pain = min(max(gain0 * (drive + K[Kc.irritation_pain] * (demand_ss + flare_mean)) + eta, 0.0), 10.0)
        S[:, i] = 0.0
        S[St.capacity, i] = 1.0
        S[St.irritation, i] = flare_mean
        S[St.demand_irritation, i] = demand_ss
        S[St.sensitization, i] = s0
        S[St.fear, i] = phi0
        S[St.expected_increase, i] = 0.5 + K[Kc.fear_expectation] * phi0
        S[St.motivation, i] = P[Pr.m0, i]
        S[St.eta, i] = eta
        S[St.pain, i] = pain
        S[St.pain_recent, i] = P[Pr.baseline_pain, i]
        S[St.day, i] = 1.0

        # intake: single NRS, CSI-like sensitization (0-100) and TSK-11-like fear (11-44) questionnaires
        intake[In.age, i] = P[Pr.age, i]
        intake[In.pain, i] = nrs(pain, normal(key, _I0, _CH_OBS_INTAKE, _I0), K[Kc.nrs_sd], K[Kc.nrs_sd_severity])
        z = normal(key, _I0, _CH_OBS_INTAKE, _I1)
        intake[In.sensitization_score, i] = min(max(np.rint(25.0 + 22.0 * s0 + 7.0 * z), 0.0), 100.0)
        z = normal(key, _I0, _CH_OBS_INTAKE, _I2)
        intake[In.fear_score, i] = min(max(np.rint(11.0 + 33.0 * phi0 + 3.0 * z), 11.0), 44.0)
        intake[In.preferred_sessions, i] = P[Pr.preferred_sessions, i]
        f_true = function_score(P[Pr.function_offset, i], demand, P[Pr.baseline_pain, i], 1.0, K)
        z = normal(key, _I0, _CH_OBS_FUNCTION, _I0)  # weekly reports use days 1, 8, ...: day 0 is free
        intake[In.function, i] = min(max(np.rint(f_true + K[Kc.function_sd] * z), 0.0), 100.0)


# --------------------------------------------------------------------------------------- week


@_jit
def step_week(P: np.ndarray, S: np.ndarray, K: np.ndarray, keys: np.ndarray, load: np.ndarray,
              sessions: np.ndarray, delivery: np.ndarray, out: np.ndarray) -> int:
    """Advance every patient one week (7 days) and write the week's outcomes and observation to ``out``.

    ``load`` (baseline-capacity units), ``sessions`` (0-5) and ``delivery`` (0-2) are float arrays of
    length 1 (broadcast) or ``n``. Returns 0, or without touching anything 1 (a NaN load), 2 (sessions
    not integers in 0-5) or 3 (delivery not 0, 1 or 2).
    """
    n = P.shape[1]
    for j in range(load.shape[0]):
        if np.isnan(load[j]):
            return 1
    for j in range(sessions.shape[0]):
        if not (0.0 <= sessions[j] <= 5.0 and sessions[j] == np.floor(sessions[j])):
            return 2
    for j in range(delivery.shape[0]):
        if not (0.0 <= delivery[j] <= 2.0 and delivery[j] == np.floor(delivery[j])):
            return 3
    pains, rels, session_pains, z_eta = np.empty(7), np.empty(7), np.empty(7), np.empty(7)
    attended = np.zeros(7, dtype=np.bool_)
    sd0, sd_sev = K[Kc.nrs_sd], K[Kc.nrs_sd_severity]
    demand_scale = K[Kc.demand_irritation_gain] * K[Kc.irritation_gain]
    for i in range(n):
        key = keys[i]
        load_i = min(max(load[i if load.shape[0] > 1 else 0], 0.0), 1.5)
        n_sess = int(sessions[i if sessions.shape[0] > 1 else 0])
        deliv = int(delivery[i if delivery.shape[0] > 1 else 0])
        was_out = S[St.dropped_out, i] != 0.0
        if was_out:
            n_sess = 0
        day0 = int(S[St.day, i])
        # latent state and the parameters the days use, as locals
        C, F, AL, CL = S[St.capacity, i], S[St.fatigue, i], S[St.acute_load, i], S[St.chronic_load, i]
        rate, D, DD = S[St.session_rate, i], S[St.irritation, i], S[St.demand_irritation, i]
        in_flare, sens, fear = S[St.in_flare, i] != 0.0, S[St.sensitization, i], S[St.fear, i]
        expected, motiv, habit, X = S[St.expected_increase, i], S[St.motivation, i], S[St.habit, i], S[St.context, i]
        eta, pain, pain_recent = S[St.eta, i], S[St.pain, i], S[St.pain_recent, i]
        envelope, demand, s0, phi0 = P[Pr.envelope, i], P[Pr.demand, i], P[Pr.s0, i], P[Pr.phi0, i]
        fear_prop, baseline_pain, drive = P[Pr.fear_propensity, i], P[Pr.baseline_pain, i], P[Pr.drive, i]
        flare_hazard, ceiling, inv_detrain = P[Pr.flare_hazard, i], P[Pr.capacity_ceiling, i], P[
            Pr.inv_detraining_tau, i]
        adapt = P[Pr.adaptation_gain, i] * K[Kc.mod_capacity]
        m_base, inv_m_tau, innov = P[Pr.m0, i] * P[Pr.m_floor, i], P[Pr.inv_m_tau, i], P[Pr.innov, i]

        # weekly constants of the prescription: care context, burden, supervision
        sup = 1.0 if deliv == 2 else 0.0
        rem = 1.0 if deliv == 1 else 0.0
        x_target = P[Pr.context_response, i] * (K[Kc.care0 + deliv] * K[Kc.contact0 + n_sess])
        burden = max(0.0, n_sess - P[Pr.preferred_sessions, i])
        deliv_des = K[Kc.supervision_desensitization] if deliv == 2 else (
            K[Kc.remote_desensitization] if deliv == 1 else 1.0)
        attend_base = (K[Kc.attend_intercept] - K[Kc.attend_burden] * burden + K[Kc.attend_supervised] * sup
                       + K[Kc.attend_remote] * rem + K[Kc.attend_low_class] * P[Pr.low_class, i])
        des_gain = P[Pr.desensitization_gain, i] * K[Kc.mod_desensitization] * deliv_des
        flares, n_att, rel_sum = 0, 0, 0.0
        for d in range(7):  # independent of the state: drawn ahead so the CPU can overlap them
            z_eta[d] = normal(key, day0 + d, _CH_ETA, _I0)
        for d in range(7):
            day = day0 + d
            # 1. attendance of a scheduled session
            sess = False
            if _SCHEDULE[n_sess, d]:
                logit = (attend_base + K[Kc.attend_motivation] * (motiv - 0.5) + K[Kc.attend_habit] * habit
                         - K[Kc.attend_fear] * fear - K[Kc.attend_pain] * max(0.0, pain - 5.0)
                         - K[Kc.attend_flare] * (1.0 if in_flare else 0.0))
                sess = uniform(key, day, _CH_ATTEND, _I0) < 1.0 / (1.0 + math.exp(-logit))
            sf = 1.0 if sess else 0.0
            ell = load_i * sf
            rel = ell / C if sess else 0.0
            # 2. load averages, tolerance envelope, irritation from sessions, demand and background flares
            AL += (ell - AL) * _INV7
            CL += (ell - CL) * _INV28
            rate += (7.0 * sf - rate) * _INV7
            env = envelope * C * max(0.2, 1.0 - K[Kc.fatigue_envelope] * F)
            inv_env = 1.0 / env
            excess = max(0.0, ell - env) * inv_env
            d_excess = max(0.0, demand - env) * inv_env
            sens_factor = 1.0 + K[Kc.irritation_sensitized] * sens
            irr_sess = 0.0
            if sess:
                free = K[Kc.acwr_free] * envelope * C
                spike = max(0.0, AL - K[Kc.acwr_limit] * CL - free) / (CL + free)
                irr_sess = K[Kc.mod_irritation] * K[Kc.irritation_gain] * sens_factor * (
                    excess * excess + K[Kc.spike_weight] * (spike * spike))
            background = 0.0
            if uniform(key, day, _CH_FLARE, _I0) < flare_hazard * (1.0 + K[Kc.session_flare] * rel):
                background = K[Kc.flare_size_median] * math.exp(
                    K[Kc.flare_size_sigma] * normal(key, day, _CH_FLARE_SIZE, _I0))
            D = D * K[Kc.decay_d] + irr_sess + background
            DD = DD * K[Kc.decay_d] + demand_scale * sens_factor * (d_excess * d_excess)
            # a flare starts when irritation crosses the threshold and lasts until it settles below
            # flare_release x threshold (hysteresis: one episode of days, not an onset each day it re-crosses)
            onset = D >= K[Kc.flare_threshold] and not in_flare
            flares += onset
            in_flare = onset or (in_flare and D >= K[Kc.flare_release] * K[Kc.flare_threshold])
            # 3. fatigue; capacity adapts to relative load up to the ceiling, detrains toward 1
            F = F * K[Kc.decay_f] + K[Kc.fatigue_gain] * rel
            if sess:
                stim = max(0.0, rel - K[Kc.stimulus_threshold]) * K[Kc.inv_stimulus_range]
                C += adapt * min(stim, 1.5) * max(0.0, ceiling - C) - (C - 1.0) * inv_detrain
            else:
                C -= (C - 1.0) * inv_detrain
            # 4. pain = gain x (drive + w D) - X + eta; in-session pain adds a load term that is not harm
            gain = 1.0 + sens + K[Kc.fear_gain] * fear
            eta = K[Kc.eta_rho] * eta + innov * z_eta[d]
            pain = min(max(gain * (drive + K[Kc.irritation_pain] * (D + DD)) - X + eta, 0.0), 10.0)
            increase = gain * (K[Kc.session_pain] * rel + K[Kc.session_pain_excess] * excess)
            p_sess = min(max(pain + increase, 0.0), 10.0)
            # 5. desensitization by tolerable, regular exposure; irritation sensitizes; S relaxes to S0
            # 6. fear learns from prediction errors of attended sessions and from flares
            if sess:
                exposure = min(1.0, rel * K[Kc.inv_exposure_load])
                allowed = max(K[Kc.tolerable_pain], pain + K[Kc.tolerable_increase])
                tolerable = min(max(1.0 - (p_sess - allowed) * 0.5, 0.0), 1.0) * (0.0 if in_flare else 1.0)
                tolerable *= max(0.0, 1.0 - K[Kc.irritation_block] * D)  # irritated tissue does not desensitize
                rate_h = power(rate, K[Kc.frequency_hill])
                freq = rate_h / (rate_h + K[Kc.frequency_half_hill])
                des = (des_gain * freq * exposure * tolerable * max(0.0, sens - K[Kc.sensitization_floor] * s0)
                       / (1.0 + K[Kc.desensitization_damping] * sens))
                # S never falls below its floor: a strong desensitizer (gain x frequency x delivery above
                # 1 + damping x S) would otherwise overshoot it, even below 0
                sens = max(sens + (-des + P[Pr.sensitization_gain, i] * irr_sess
                                   + (s0 - sens) * K[Kc.inv_sensitization_tau]), K[Kc.sensitization_floor] * s0)
                err = min(increase, 10.0) - expected
                fear += exposure * fear_prop * (K[Kc.fear_up] * max(0.0, err - K[Kc.fear_surprise])
                                                - K[Kc.fear_down] * max(0.0, -err))
                expected += K[Kc.expectation_rate] * (increase - expected)
            else:
                sens += (s0 - sens) * K[Kc.inv_sensitization_tau]
            if onset:
                fear += fear_prop * K[Kc.fear_flare] * (1.0 - fear)
            fear = min(max(fear + (phi0 - fear) * K[Kc.inv_fear_tau], 0.0), 1.0)
            # 6. context analgesia in care; motivation follows perceived improvement; habit
            X += (x_target - X) * (K[Kc.inv_context_rise_tau] if x_target > X else K[Kc.inv_context_fade_tau])
            pain_recent += (pain - pain_recent) * _INV28
            m_target = min(max(m_base + K[Kc.improvement_motivation] * (baseline_pain - pain_recent), 0.0), 1.0)
            motiv += (m_target - motiv) * inv_m_tau
            habit = habit * K[Kc.decay_h] + sf * K[Kc.habit_gain] * (1.0 - habit)
            pains[d], rels[d], session_pains[d], attended[d] = pain, rel, p_sess, sess
            if sess:
                n_att += 1
                rel_sum += rel

        # 6. end of week: dropout hazard of patients in an exercise programme
        mean_rel = rel_sum / n_att if n_att > 0 else 0.0
        flare_week = 1.0 if flares > 0 else 0.0  # the week's record: at most one flare onset
        memory = S[St.flare_memory, i] * K[Kc.decay_flare_memory] + flare_week
        new_dropout = False
        if not was_out and n_sess > 0 and load_i > 0.0:
            no_improvement = S[St.week, i] >= 3.0 and pain_recent >= baseline_pain - 0.5
            logit = (K[Kc.dropout_intercept] + K[Kc.dropout_missed] * (1.0 - n_att / n_sess)
                     + K[Kc.dropout_flare] * flare_week
                     + K[Kc.dropout_flare_repeat] * max(0.0, memory - 1.0)
                     + K[Kc.dropout_no_improvement] * (1.0 if no_improvement else 0.0)
                     + K[Kc.dropout_intensity] * max(0.0, mean_rel - 0.6) - K[Kc.dropout_supervised] * sup
                     - K[Kc.dropout_motivation] * (motiv - 0.5) + K[Kc.dropout_burden] * burden)
            new_dropout = uniform(key, day0, _CH_DROPOUT, _I0) < 1.0 / (1.0 + math.exp(-logit))
        dropped = was_out or new_dropout

        # true outcomes of the week
        pain_sum, pain_max, sp_max = 0.0, pains[0], -1.0
        for d in range(7):
            pain_sum += pains[d]
            pain_max = max(pain_max, pains[d])
            if attended[d]:
                sp_max = max(sp_max, session_pains[d])
        pain_mean = pain_sum / 7
        function = function_score(P[Pr.function_offset, i], demand, pain_mean, C, K)
        out[Out.pain, i] = pain_mean
        out[Out.pain_max, i] = pain_max
        out[Out.session_pain_max, i] = sp_max if n_att > 0 else np.nan
        out[Out.function, i] = function
        out[Out.capacity, i] = C
        out[Out.relative_load, i] = mean_rel
        out[Out.flares, i] = flare_week
        out[Out.sessions_prescribed, i] = n_sess
        out[Out.sessions_attended, i] = n_att
        out[Out.dropped_out, i] = dropped
        out[Out.new_dropout, i] = new_dropout
        out[Out.flare_reported, i] = flare_week
        out[Out.obs_dropped_out, i] = dropped

        # observation (DESIGN 2.4): diary days go missing more often at low (end-of-week) motivation;
        # session days add in-session, next-morning (vs that day's diary report) and RPE reports
        missing = K[Kc.diary_missing] + K[Kc.diary_missing_motivation] * (1.0 - motiv)
        rpe_factor = 1.0 + 0.3 * F
        diary_sum, diary_n, s_sum, s_max, m_sum, change_sum, rpe_sum = 0.0, 0, 0.0, -1.0, 0.0, 0.0, 0.0
        for d in range(7):
            day = day0 + d
            reported = uniform(key, day, _CH_DIARY_MISSING, _I0) >= missing
            if not (reported or attended[d]):
                continue
            diary = nrs(pains[d], normal(key, day, _CH_OBS_DIARY, _I0), sd0, sd_sev)
            if reported:
                diary_sum += diary
                diary_n += 1
            if attended[d]:
                s_obs = nrs(session_pains[d], normal(key, day, _CH_OBS_SESSION, _I0), sd0, sd_sev)
                morning = nrs(pains[min(d + 1, 6)], normal(key, day, _CH_OBS_MORNING, _I0), sd0, sd_sev)
                rpe_true = min(max(10.0 * rels[d] * rpe_factor, 0.0), 10.0)
                rpe = min(max(np.rint(rpe_true + K[Kc.rpe_sd] * normal(key, day, _CH_OBS_RPE, _I0)), 0.0), 10.0)
                s_sum += s_obs
                s_max = max(s_max, s_obs)
                m_sum += morning
                change_sum += morning - diary
                rpe_sum += rpe
        none = n_att == 0
        out[Out.session_pain_mean, i] = np.nan if none else s_sum / n_att
        out[Out.obs_session_pain_max, i] = np.nan if none else s_max
        out[Out.morning_pain_mean, i] = np.nan if none else m_sum / n_att
        out[Out.morning_change_mean, i] = np.nan if none else change_sum / n_att
        out[Out.rpe_mean, i] = np.nan if none else rpe_sum / n_att
        out[Out.diary_pain, i] = diary_sum / diary_n if diary_n > 0 else np.nan
        out[Out.diary_days, i] = diary_n
        out[Out.attendance, i] = n_att / n_sess if n_sess > 0 else np.nan
        out[Out.obs_function, i] = min(max(np.rint(
            function + K[Kc.function_sd] * normal(key, day0, _CH_OBS_FUNCTION, _I0)), 0.0), 100.0)
        week = int(S[St.week, i])
        tested = (week + 1) % int(K[Kc.capacity_test_every]) == 0
        out[Out.capacity_test, i] = C * (1.0 + K[Kc.capacity_test_cv] * normal(
            key, day0, _CH_OBS_CAPACITY, 0)) if tested else np.nan

        S[St.capacity, i], S[St.fatigue, i], S[St.acute_load, i], S[St.chronic_load, i] = C, F, AL, CL
        S[St.session_rate, i], S[St.irritation, i], S[St.demand_irritation, i] = rate, D, DD
        S[St.in_flare, i], S[St.sensitization, i], S[St.fear, i] = in_flare, sens, fear
        S[St.expected_increase, i], S[St.motivation, i], S[St.habit, i], S[St.context, i] = expected, motiv, habit, X
        S[St.eta, i], S[St.pain, i], S[St.pain_recent, i] = eta, pain, pain_recent
        S[St.dropped_out, i] = dropped
        S[St.flare_memory, i] = memory
        S[St.day, i] = day0 + 7
        S[St.week, i] = week + 1
    return 0
