"""Population-level model constants (shared by every patient of every condition).

Patient-specific parameters live in the cohort table (see :mod:`adaptrx.patient.cohort`); the constants
here fix the *shape* of each mechanism. Values were calibrated against the targets T1-T13 of
``DESIGN.md`` section 2.5 (``python -m adaptrx.patient.calibration`` regenerates the evidence); the
comment on each says its unit and where its order of magnitude comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Named channels of the per-patient noise streams (:mod:`adaptrx.patient.noise`). Adding a channel at the end never
#: changes the draws of existing ones.
CHANNELS: dict[str, int] = {
    "eta": 1,  # AR(1) pain fluctuation innovation (normal)
    "attend": 2,  # session attendance (uniform)
    "dropout": 3,  # weekly dropout hazard (uniform)
    "flare": 4,  # background flare occurrence (uniform)
    "flare_size": 5,  # background flare magnitude (normal)
    "obs_session": 6,  # in-session pain report noise (normal)
    "obs_morning": 7,  # next-morning pain report noise (normal)
    "diary_missing": 8,  # diary day missing (uniform)
    "obs_diary": 9,  # diary pain report noise (normal)
    "obs_rpe": 10,  # RPE report noise (normal)
    "obs_function": 11,  # weekly function score noise (normal)
    "obs_capacity": 12,  # capacity test noise (normal)
    "obs_intake": 13,  # intake questionnaires (normal)
    "enrolment": 14,  # enrolment-day fluctuation (normal)
    "belief_resample": 15,  # belief filter: systematic resampling offset (uniform; adaptrx.envs.belief)
    "belief_jitter": 16,  # belief filter: Liu-West parameter jitter (normal)
}

#: Delivery codes of a week's prescription.
HOME_ALONE, REMOTE, SUPERVISED = 0, 1, 2

#: Which weekdays (0-6) hold sessions for 0..5 sessions per week.
SESSION_DAYS: tuple[tuple[int, ...], ...] = ((), (0,), (0, 3), (0, 2, 4), (0, 1, 3, 4), (0, 1, 2, 3, 4))


@dataclass(frozen=True)
class Modality:
    """How a programme's modality converts tissue load into effects (multipliers, resistance = 1)."""

    capacity: float  # capacity stimulus per unit relative load
    desensitization: float  # desensitization per tolerable session
    irritation: float  # irritation per unit of load above the envelope


MODALITIES: dict[str, Modality] = {
    # resistance loads capacity most; aerobic and mind-body desensitize more per unit tissue load;
    # mixed programmes dilute both (they do worse in meta-analyses: Juhl 2014, Bartholdy 2017).
    "resistance": Modality(capacity=1.0, desensitization=1.0, irritation=1.0),
    "aerobic": Modality(capacity=0.35, desensitization=1.25, irritation=0.7),
    "mind_body": Modality(capacity=0.2, desensitization=1.3, irritation=0.5),
    "mixed": Modality(capacity=0.6, desensitization=0.85, irritation=0.85),
}


@dataclass(frozen=True)
class ModelConstants:
    """Shape constants of the daily dynamics. All rates are per day unless named otherwise."""

    # --- capacity (fitness-fatigue; Banister: fitness 36-42 d, fatigue 7-21 d) ---
    stimulus_threshold: float = 0.45  # relative load below which capacity barely adapts (ACSM 2009)
    fatigue_tau: float = 3.0  # days; acute fatigue decay
    fatigue_gain: float = 0.5  # fatigue added per unit relative load
    fatigue_envelope: float = 0.15  # fraction of envelope lost per unit fatigue
    # --- tolerance envelope and irritation ---
    acwr_limit: float = 1.3  # acute:chronic ratio above which load is a spike (Gabbett 2016)
    acwr_free: float = 0.10  # daily-averaged load (x capacity) tolerated whatever the history
    spike_weight: float = 0.6  # irritation per squared relative spike
    irritation_gain: float = 1.6  # irritation per squared relative excess over the envelope
    demand_irritation_gain: float = 0.75  # daily-life demand irritates per squared excess x this (mechanical phenotype)
    irritation_sensitized: float = 0.75  # extra irritation per unit S (sensitized tissue flares easily)
    irritation_tau: float = 3.0  # days; irritation decay (flare lasts ~5-8 days)
    flare_threshold: float = 0.6  # irritation level that counts as a flare (onset on upward crossing)
    # a flare is an episode of days: it ends only when irritation has settled below this fraction of the
    # threshold, so irritation hovering about the threshold is one flare, not a new one each day
    flare_release: float = 0.5
    flare_size_median: float = 2.4  # irritation added by a background flare (lognormal median)
    flare_size_sigma: float = 0.35
    session_flare: float = 0.45  # flare hazard multiplier per unit relative load on session days (RR ~1.2)
    irritation_pain: float = 1.0  # pain drive per unit irritation (before the gain)
    # --- pain ---
    fear_gain: float = 0.5  # pain gain per unit fear (pain = (1 + S + c*Phi) * drive - X + eta)
    eta_rho: float = 0.8  # AR(1) coefficient of day-to-day pain fluctuation
    rtm_shift: float = 0.1  # enrolment-day fluctuation shift (x fluctuation sd): regression to the mean
    session_pain: float = 0.8  # in-session pain per unit relative load (x gain); not harm
    session_pain_excess: float = 2.0  # in-session pain per unit relative excess over the envelope
    tolerable_pain: float = 5.0  # in-session pain at or below which a session desensitizes (pain monitoring)
    tolerable_increase: float = 2.0  # ... or an increase over pre-session pain of at most this (NRS)
    # --- sensitization ---
    sensitization_tau: float = 140.0  # days; S relaxes toward S0 (1-3 months; T4 retention)
    sensitization_floor: float = 0.1  # S cannot fall below this fraction of S0
    frequency_half: float = 3.1  # sessions/week at which the frequency factor is one half
    frequency_hill: float = 4.0  # Hill exponent: desensitization needs regular exposure (Juhl 2014)
    desensitization_damping: float = 8.0  # per unit S: sensitized patients respond less (O'Leary 2018)
    supervision_desensitization: float = 1.3  # multiplier for supervised sessions
    remote_desensitization: float = 1.1  # multiplier for remotely monitored sessions
    exposure_load: float = 0.58  # relative load giving full exposure (lighter sessions count less)
    irritation_block: float = 1.06  # per unit irritation D: irritated tissue does not desensitize (0 at D >= 1/this)
    # --- fear ---
    fear_expectation: float = 4.0  # NRS of extra pain a fully fearful patient expects from a session
    expectation_rate: float = 0.1  # how fast the expected in-session pain increase follows experience
    fear_up: float = 0.02  # fear rise per NRS point of pain beyond expectation + surprise (x propensity)
    fear_surprise: float = 1.5  # NRS above the expected increase before a session feels threatening
    fear_down: float = 0.012  # fear extinction per NRS point of pain below expectation
    fear_flare: float = 0.05  # fear rise at a flare onset (x propensity)
    fear_tau: float = 90.0  # days; fear relaxes toward its intake level
    # --- context ---
    context_rise_tau: float = 10.0  # days; context analgesia builds in care (~2 weeks)
    context_fade_tau: float = 120.0  # days; fades after care ends (1-3 months)
    care_level: tuple[float, float, float] = (0.6, 0.8, 1.0)  # home alone, remote, supervised
    contact_full: float = 3.0  # sessions/week at which contact-driven context is full
    contact_exponent: float = 0.5  # context ~ (sessions / contact_full) ** exponent below that
    # --- behaviour: motivation, habit, adherence, dropout ---
    habit_gain: float = 0.04  # habit increment per performed session (x (1 - H))
    habit_tau: float = 60.0  # days; habit decay without sessions
    motivation_floor: dict[str, float] = field(
        default_factory=lambda: {"rapid_decline": 0.35, "gradual_decline": 0.7, "low": 0.2}
    )
    motivation_tau: dict[str, float] = field(
        default_factory=lambda: {"rapid_decline": 40.0, "gradual_decline": 150.0, "low": 20.0}
    )
    improvement_motivation: float = 0.08  # motivation gain per NRS of perceived improvement
    attend_intercept: float = 1.3  # logit of attendance at average motivation, home alone
    attend_motivation: float = 3.0
    attend_habit: float = 1.5
    attend_fear: float = 1.5
    attend_pain: float = 0.25  # per NRS above 5 the day before
    attend_flare: float = 1.5  # while in a flare
    attend_burden: float = 1.49  # per session/week above the preferred number
    attend_supervised: float = 1.0
    attend_remote: float = 0.4
    attend_low_class: float = -0.8
    dropout_intercept: float = -5.8  # weekly logit
    dropout_missed: float = 1.2  # x fraction of prescribed sessions missed this week
    dropout_flare: float = 1.2  # a flare this week
    dropout_no_improvement: float = 0.7  # no improvement over the last 4 weeks
    dropout_intensity: float = 2.55  # per unit mean relative load above 0.6
    dropout_supervised: float = 0.2  # supervised this week lowers the hazard
    dropout_motivation: float = 2.0
    dropout_burden: float = 0.26  # per session/week above preference
    # repeated flares: weekly logit x (flare memory - 1), where the memory counts flare weeks (+1 each) and
    # fades with flare_memory_tau; a single flare adds nothing beyond dropout_flare, a second within weeks does
    dropout_flare_repeat: float = 1.0
    flare_memory_tau: float = 8.0  # weeks
    # --- function (WOMAC/KOOS-like, 0-100, higher is better) ---
    function_pain: float = 5.0  # points per NRS of mean pain
    function_demand: float = 80.0  # points per unit demand/capacity ratio
    # --- observation model ---
    nrs_sd: float = 0.5  # report noise sd (NRS), plus nrs_sd_severity x true pain
    nrs_sd_severity: float = 0.06
    diary_missing: float = 0.12  # probability a diary day is missing at full motivation
    diary_missing_motivation: float = 0.3  # extra missing probability at zero motivation
    rpe_sd: float = 0.8
    function_sd: float = 6.0
    capacity_test_cv: float = 0.08
    capacity_test_every: int = 4  # weeks
