"""The clinical protocol library (``DESIGN.md`` section 5): rule-based comparators for learned policies.

Every protocol is a dataclass of its parameters (the keys of ``configs/policy/protocol/<name>.yaml``) built on
:class:`~adaptrx.protocols.base.Protocol`, so it offers SB3's ``predict`` and decides each week only from the
observation (clinical units, :func:`~adaptrx.envs.features.to_units`) and its own per-env memory.

Units used throughout:

* loads: fraction of the patient's *baseline* capacity ("baseline-capacity units"; 1.0 = what the patient
  could do at intake). A prescribed load is reached as fast as the ``Progression-v0`` action allows
  (x0.5 to x1.5 of the last load per week, within [0.05, 1.5]; see :mod:`adaptrx.protocols.base`);
* relative steps (``increase``, ``progress``, ``regress``, ``step``): fractions of the last prescribed load
  (0.10 = +10 % of last week's load); absolute steps (``increment``) are baseline-capacity units;
* pain: NRS 0-10 (in-session maximum, next-morning change vs. the pre-session report); RPE: CR-10 (0-10);
* sessions: whole sessions per week (0-5); delivery: ``"home"`` (home alone), ``"remote"`` (home with remote
  monitoring) or ``"supervised"``.

Symptom thresholds are compared with a tolerance of :data:`EPS`: observations are float32, so an NRS report
of 2 reads back as 2.00000003 and must still count as "<= 2".

:data:`PROTOCOLS` maps each protocol name to its class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from adaptrx.common.validation import integer as check_int
from adaptrx.common.validation import number as check_number
from adaptrx.envs.actions import LOAD_MAX, LOAD_MIN
from adaptrx.protocols.base import DELIVERY, Memory, Prescription, Protocol, Units, check_delivery

#: Tolerance of symptom thresholds (NRS / RPE points; fractions of attendance), for float32 observations.
EPS = 1e-4
#: Relative tolerance for "the start load has been reached" (float32 loads read back within ~1e-7).
_REACHED_RTOL = 1e-3
_HOME = DELIVERY["home"]


def _at_most(x: np.ndarray, threshold: float) -> np.ndarray:
    """``x <= threshold`` up to the float32 rounding of an observation."""
    return x <= threshold + EPS


def _attended(u: Units) -> np.ndarray:
    """Whether at least one session was attended last week (symptom reports exist only then)."""
    return u["sessions_attended"] > 0.5


def _check_dose(protocol: Any, low_sessions: int = 0) -> None:
    """Validate the usual ``sessions`` (per week) and ``delivery`` parameters of ``protocol``."""
    check_int("sessions", protocol.sessions, low_sessions, 5)
    check_delivery("delivery", protocol.delivery)


def _check_load(name: str, value: Any) -> float:
    """A load parameter within the action's range ``[0.05, 1.5]`` baseline-capacity units."""
    return check_number(name, value, LOAD_MIN, LOAD_MAX)


def _dose(protocol: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sessions, delivery code)`` arrays ``(n,)`` of a protocol with fixed ``sessions``/``delivery``."""
    return np.full(n, float(protocol.sessions)), np.full(n, DELIVERY[protocol.delivery])


def _from_start(load: np.ndarray, u: Units, m: Memory, start: float) -> np.ndarray:
    """``load`` (what the protocol's rule prescribes) once the programme has reached its ``start`` load,
    ``start`` until then (memory ``started``).

    Week 1 prescribes ``start``; the action moves at most +/-50 % a week, so a start far from the env's initial
    load takes a few weeks, during which the rule only acts when it lowers the load (symptoms end the start
    phase: the rule's regression applies and the programme goes on from there).
    """
    reached = np.abs(u["load"] - start) <= _REACHED_RTOL * start
    lowered = load < u["load"] * (1.0 - _REACHED_RTOL)
    m["started"] |= (m["week"] > 0) & (reached | lowered)
    return np.where(m["started"], load, start)


class _StartsAtLoad(Protocol):
    """Mixin for protocols that begin at a ``start`` load and then adjust the last load (memory ``started``)."""

    start: float

    def initial_memory(self, n: int) -> Memory:
        return {"started": np.zeros(n, dtype=bool)}


# ============================================================================ fixed (time-contingent)
@dataclass
class NoTreatment(Protocol):
    """Untreated control (natural history): no sessions, no care contact.

    The no-exercise comparator of the exercise trials pooled by Juhl et al. 2014 (Arthritis Rheumatol). The
    load is held (the action cannot prescribe 0; with 0 sessions nothing is performed). No parameters.
    """

    name: ClassVar[str] = "none"

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        n = len(u["load"])
        return u["load"].copy(), np.zeros(n), np.full(n, _HOME)


@dataclass
class AttentionControl(Protocol):
    """Attention control: in care, no loading (education/sham contacts matched for contact time).

    As the sham arm of Bennell et al. 2014 (JAMA, hip OA) and the calibration arm
    :func:`adaptrx.patient.calibration_arms.attention_control`: ``contacts`` contacts/week with ``delivery``
    (supervised) for ``weeks`` weeks, then nothing (0 sessions, home). The load goes to the action's floor,
    0.05 baseline-capacity units, halving each week from the initial load (the action cannot give 0).

    Parameters:
        contacts: care contacts per week (sessions, 1-5).
        weeks: weeks of the programme (0-104).
        delivery: delivery of the contacts.
    """

    name: ClassVar[str] = "attention_control"
    contacts: int = 2
    weeks: int = 12
    delivery: str = "supervised"

    def validate(self) -> None:
        check_int("contacts", self.contacts, 1, 5)
        check_int("weeks", self.weeks, 0, 104)
        check_delivery("delivery", self.delivery)

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        active = m["week"] < self.weeks
        load = np.where(active, LOAD_MIN, u["load"])
        sessions = np.where(active, float(self.contacts), 0.0)
        return load, sessions, np.where(active, DELIVERY[self.delivery], _HOME)


@dataclass
class Constant(Protocol):
    """A fixed dose without progression: ``load`` (baseline-capacity units), ``sessions``/week, ``delivery``.

    The no-progression comparator of dose-response analyses (Juhl et al. 2014: 3 sessions/week). The load is
    reached from the env's initial load at the action's pace (+50 %/week at most).

    Parameters:
        load: target load (baseline-capacity units, 0.05-1.5).
        sessions: sessions per week (0-5).
        delivery: ``home``, ``remote`` or ``supervised``.
    """

    name: ClassVar[str] = "constant"
    load: float = 0.5
    sessions: int = 3
    delivery: str = "home"

    def validate(self) -> None:
        _check_load("load", self.load)
        _check_dose(self)

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        n = len(u["load"])
        return (np.full(n, float(self.load)), *_dose(self, n))


@dataclass
class Linear(_StartsAtLoad):
    """Time-contingent progression: +``increase`` of the last load every week regardless of symptoms.

    The calendar-based "10 % rule" kind of progression (as the graded programme of Buist et al. 2008, Am J
    Sports Med): week 1 prescribes ``start``, then each week ``min(cap, last load x (1 + increase))``.

    Parameters:
        start: load of week 1 (baseline-capacity units).
        increase: weekly increase (fraction of the last load; 0.05 = +5 %/week).
        cap: highest load (baseline-capacity units, >= start).
        sessions: sessions per week (0-5).
        delivery: ``home``, ``remote`` or ``supervised``.
    """

    name: ClassVar[str] = "linear"
    start: float = 0.3
    increase: float = 0.05
    cap: float = 1.2
    sessions: int = 3
    delivery: str = "home"

    def validate(self) -> None:
        _check_load("start", self.start)
        check_number("increase", self.increase, 0.0, 0.5)
        check_number("cap", _check_load("cap", self.cap), self.start, LOAD_MAX)
        _check_dose(self)

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        load = _from_start(np.minimum(self.cap, u["load"] * (1.0 + self.increase)), u, m, self.start)
        return (load, *_dose(self, len(load)))


@dataclass
class _CapacityFraction(Protocol):
    """A fixed fraction of the latest capacity test (shared by ``start_high`` and ``start_low``)."""

    fraction_range: ClassVar[tuple[float, float]] = (0.0, 1.5)
    fraction: float = 0.5
    sessions: int = 3
    delivery: str = "home"

    def validate(self) -> None:
        check_number("fraction", self.fraction, *self.fraction_range)
        _check_dose(self)

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        load = self.fraction * u["capacity_test"]
        return (load, *_dose(self, len(load)))


@dataclass
class StartHigh(_CapacityFraction):
    """High-intensity strength training: ``fraction`` (75-90 %) of the latest capacity test.

    The high-intensity arm of the START trial (Messier et al. 2021, JAMA: 75-90 % of 1RM in knee OA). The load
    is ``fraction`` x ``capacity_test`` (x baseline capacity; 1 at intake, re-tested every few weeks), reached
    at the action's pace (+50 %/week at most) from the env's initial load.

    Parameters:
        fraction: fraction of the latest capacity test (0.75-0.9).
        sessions: sessions per week (0-5; START: 3).
        delivery: ``home``, ``remote`` or ``supervised``.
    """

    name: ClassVar[str] = "start_high"
    fraction_range: ClassVar[tuple[float, float]] = (0.75, 0.9)
    fraction: float = 0.8


@dataclass
class StartLow(_CapacityFraction):
    """Low-intensity strength training: ``fraction`` (30-40 %) of the latest capacity test.

    The low-intensity arm of the START trial (Messier et al. 2021, JAMA: 30-40 % of 1RM in knee OA); load
    ``fraction`` x ``capacity_test`` (baseline-capacity units).

    Parameters:
        fraction: fraction of the latest capacity test (0.3-0.4).
        sessions: sessions per week (0-5; START: 3).
        delivery: ``home``, ``remote`` or ``supervised``.
    """

    name: ClassVar[str] = "start_low"
    fraction_range: ClassVar[tuple[float, float]] = (0.3, 0.4)
    fraction: float = 0.35


@dataclass
class Aggressive(Constant):
    """Abrupt loading: high load and many sessions from week 1, regardless of symptoms.

    The training-error comparator: a load spike far above the chronic load (acute:chronic workload ratio well
    above 1.5; Gabbett 2016, Br J Sports Med). The load rises by the action's maximum, +50 %/week, to ``load``.
    A :class:`Constant` programme with abrupt defaults (it inherits Constant's validation and prescription).

    Parameters:
        load: target load (baseline-capacity units).
        sessions: sessions per week from week 1 (0-5).
        delivery: ``home``, ``remote`` or ``supervised``.
    """

    name: ClassVar[str] = "aggressive"
    load: float = 1.2
    sessions: int = 5
    delivery: str = "home"


# ============================================================================ symptom-guided
@dataclass
class ACSM(_StartsAtLoad):
    """ACSM progression model (double progression): raise the load when the current one has become easy.

    ACSM 2009 position stand on progression models in resistance training (Ratamess et al. 2009, Med Sci
    Sports Exerc): increase the load by 2-10 % once the individual exceeds the target at the current load,
    else hold; 2-3 days/week. Here the target is exceeded when every prescribed session was attended and the
    mean session RPE was at most ``rpe_target`` (the repetitions came easily). Week 1 prescribes ``start``
    (light loads of ~40-50 % for sedentary beginners).

    Parameters:
        start: load of week 1 (baseline-capacity units).
        increase: load increase when the target is exceeded (fraction of the last load, 0.02-0.10).
        rpe_target: highest mean session RPE (CR-10, 0-10) at which the load counts as easy.
        cap: highest load (baseline-capacity units, >= start; 1.5 = the action's maximum).
        sessions: sessions per week (1-5).
        delivery: ``home``, ``remote`` or ``supervised``.
    """

    name: ClassVar[str] = "acsm"
    start: float = 0.4
    increase: float = 0.05
    rpe_target: float = 6.0
    cap: float = 1.5
    sessions: int = 3
    delivery: str = "home"

    def validate(self) -> None:
        _check_load("start", self.start)
        check_number("increase", self.increase, 0.02, 0.10)
        check_number("rpe_target", self.rpe_target, 0.0, 10.0)
        check_number("cap", _check_load("cap", self.cap), self.start, LOAD_MAX)
        _check_dose(self, low_sessions=1)

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        exceeded = _attended(u) & (u["attendance"] >= 1.0 - EPS) & _at_most(u["rpe"], self.rpe_target)
        load = np.where(exceeded, np.minimum(self.cap, u["load"] * (1.0 + self.increase)), u["load"])
        load = _from_start(load, u, m, self.start)
        return (load, *_dose(self, len(load)))


@dataclass
class PainMonitoring(_StartsAtLoad):
    """Pain-monitoring model: progress, hold or regress by in-session pain and next-morning response.

    Thomeé 1997 (Phys Ther) and Silbernagel et al. 2007 (Am J Sports Med). After a week with attended
    sessions: progress by ``progress`` if the in-session pain maximum was <= ``progress_pain`` and pain had
    settled by the next morning (mean next-morning change <= ``settle_tolerance`` NRS points); hold if the
    maximum was <= ``hold_pain`` and settled; else regress by ``regress``. A reported flare regresses; a week
    without attended sessions (no reports) holds. Week 1 prescribes ``start``.

    Parameters:
        start: load of week 1 (baseline-capacity units).
        progress: load increase (fraction of the last load).
        regress: load decrease (fraction of the last load).
        progress_pain: highest in-session NRS (0-10) that allows progression.
        hold_pain: highest in-session NRS (0-10, >= progress_pain) that allows holding.
        settle_tolerance: highest next-morning NRS change (points) that counts as settled.
        cap: highest load (baseline-capacity units, >= start).
        sessions: sessions per week (0-5).
        delivery: ``home``, ``remote`` or ``supervised``.
    """

    name: ClassVar[str] = "pain_monitoring"
    start: float = 0.3
    progress: float = 0.10
    regress: float = 0.20
    progress_pain: float = 2.0
    hold_pain: float = 5.0
    settle_tolerance: float = 0.0
    cap: float = 1.5
    sessions: int = 3
    delivery: str = "home"

    def validate(self) -> None:
        _check_load("start", self.start)
        check_number("progress", self.progress, 0.0, 0.5)
        check_number("regress", self.regress, 0.0, 0.5)
        check_number("progress_pain", self.progress_pain, 0.0, 10.0)
        check_number("hold_pain", self.hold_pain, self.progress_pain, 10.0)
        check_number("settle_tolerance", self.settle_tolerance, 0.0, 10.0)
        check_number("cap", _check_load("cap", self.cap), self.start, LOAD_MAX)
        _check_dose(self)

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        attended = _attended(u)
        settled = _at_most(u["morning_change"], self.settle_tolerance)
        progress = settled & _at_most(u["session_pain_max"], self.progress_pain)
        hold = settled & _at_most(u["session_pain_max"], self.hold_pain)
        factor = np.where(progress, 1.0 + self.progress, np.where(hold, 1.0, 1.0 - self.regress))
        factor = np.where(attended, factor, 1.0)
        factor = np.where(u["flare_reported"] > 0.5, 1.0 - self.regress, factor)
        load = _from_start(np.minimum(self.cap, u["load"] * factor), u, m, self.start)
        return (load, *_dose(self, len(load)))


@dataclass
class GradedActivity(Protocol):
    """Operant graded activity: a quota set from baseline tolerance, raised by fixed steps regardless of pain.

    Lindström et al. 1992 (Phys Ther); Macedo et al. 2010 (Phys Ther, review). ``baseline_weeks`` at the
    env's initial load measure tolerance; the quota then starts at that tolerated load (x ``start_fraction``
    if the baseline in-session pain maximum exceeded ``baseline_pain_limit``) and rises by ``increment``
    baseline-capacity units every week up to ``cap``, time-contingent (pain does not change it). Memory:
    ``quota`` (baseline-capacity units) and ``baseline_pain`` (highest in-session NRS of the baseline).

    Parameters:
        baseline_weeks: weeks at the initial load before the quota starts (0-8).
        baseline_pain_limit: in-session NRS (0-10) above which the starting quota is lowered.
        start_fraction: factor on the baseline load when it was not tolerated (0.1-1).
        increment: weekly quota increase (baseline-capacity units).
        cap: highest quota (baseline-capacity units).
        sessions: sessions per week (0-5).
        delivery: ``home``, ``remote`` or ``supervised``.
    """

    name: ClassVar[str] = "graded_activity"
    baseline_weeks: int = 1
    baseline_pain_limit: float = 5.0
    start_fraction: float = 0.8
    increment: float = 0.05
    cap: float = 1.0
    sessions: int = 3
    delivery: str = "home"

    def validate(self) -> None:
        check_int("baseline_weeks", self.baseline_weeks, 0, 8)
        check_number("baseline_pain_limit", self.baseline_pain_limit, 0.0, 10.0)
        check_number("start_fraction", self.start_fraction, 0.1, 1.0)
        check_number("increment", self.increment, 0.0, 0.5)
        _check_load("cap", self.cap)
        _check_dose(self)

    def initial_memory(self, n: int) -> Memory:
        return {"quota": np.zeros(n), "baseline_pain": np.zeros(n)}

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        week = m["week"]
        in_baseline = (week >= 1) & (week <= self.baseline_weeks)  # u reports a baseline week
        m["baseline_pain"] = np.where(in_baseline, np.maximum(m["baseline_pain"], u["session_pain_max"]),
                                      m["baseline_pain"])
        lowered = m["baseline_pain"] > self.baseline_pain_limit + EPS
        first = np.minimum(self.cap, u["load"] * np.where(lowered, self.start_fraction, 1.0))
        quota = np.where(week == self.baseline_weeks, first,
                         np.minimum(self.cap, m["quota"] + self.increment))
        m["quota"] = np.where(week >= self.baseline_weeks, quota, m["quota"])
        load = np.where(week < self.baseline_weeks, u["load"], m["quota"])
        return (load, *_dose(self, len(load)))


@dataclass
class RPEAutoregulation(_StartsAtLoad):
    """RPE autoregulation: keep the mean session RPE inside a target window.

    Session-RPE monitoring (Foster et al. 2001, J Strength Cond Res) and RPE-based load autoregulation
    (Helms et al. 2016, Strength Cond J): mean session RPE below ``rpe_low`` -> +``step``, above ``rpe_high``
    -> -``step``, inside -> hold; a week without attended sessions holds. Week 1 prescribes ``start``.

    Parameters:
        start: load of week 1 (baseline-capacity units).
        rpe_low: lower edge of the RPE window (CR-10, 0-10).
        rpe_high: upper edge (CR-10, >= rpe_low).
        step: load change (fraction of the last load).
        cap: highest load (baseline-capacity units, >= start).
        sessions: sessions per week (0-5).
        delivery: ``home``, ``remote`` or ``supervised``.
    """

    name: ClassVar[str] = "rpe_autoregulation"
    start: float = 0.4
    rpe_low: float = 5.0
    rpe_high: float = 7.0
    step: float = 0.10
    cap: float = 1.5
    sessions: int = 3
    delivery: str = "home"

    def validate(self) -> None:
        _check_load("start", self.start)
        check_number("rpe_low", self.rpe_low, 0.0, 10.0)
        check_number("rpe_high", self.rpe_high, self.rpe_low, 10.0)
        check_number("step", self.step, 0.0, 0.5)
        check_number("cap", _check_load("cap", self.cap), self.start, LOAD_MAX)
        _check_dose(self)

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        rpe = u["rpe"]
        factor = np.where(rpe < self.rpe_low - EPS, 1.0 + self.step,
                          np.where(rpe > self.rpe_high + EPS, 1.0 - self.step, 1.0))
        factor = np.where(_attended(u), factor, 1.0)
        load = _from_start(np.minimum(self.cap, u["load"] * factor), u, m, self.start)
        return (load, *_dose(self, len(load)))


@dataclass
class GLAD(Protocol):
    """GLA:D: supervised neuromuscular exercise with difficulty levels, then exercise at home.

    Skou & Roos 2017 (BMC Musculoskelet Disord): 12 supervised sessions, twice a week for ~6 weeks; each
    exercise has difficulty levels, progressed when performed well with pain during exercise acceptable up to
    5 (NRS 0-10). Here: ``sessions``/week with ``delivery`` at ``levels[level]`` (baseline-capacity units);
    one level up every ``weeks_per_level`` weeks if last week's in-session pain maximum was <=
    ``acceptable_pain`` without a reported flare, else the level is held. Once ``supervised_sessions`` have
    been attended (counted from the reports; the last week prescribes only the sessions still missing), or
    after ``max_supervised_weeks``, the patient continues with ``home_sessions``/week (``home_delivery``) at
    the last level. Memory: ``attended`` (supervised sessions attended), ``level`` (index), ``weeks_at_level``.

    Parameters:
        levels: loads of the difficulty levels (baseline-capacity units).
        weeks_per_level: weeks at a level before it may progress (1-26).
        acceptable_pain: highest in-session NRS (0-10) that allows progressing a level.
        sessions: supervised-phase sessions per week (1-5).
        delivery: supervised-phase delivery (GLA:D: supervised; ``remote`` for an online variant).
        supervised_sessions: supervised sessions to attend (1-60).
        max_supervised_weeks: longest supervised phase (weeks, 1-52).
        home_sessions: sessions per week afterwards (0-5).
        home_delivery: delivery afterwards.
    """

    name: ClassVar[str] = "glad"
    levels: tuple[float, ...] = (0.4, 0.5, 0.6)
    weeks_per_level: int = 2
    acceptable_pain: float = 5.0
    sessions: int = 2
    delivery: str = "supervised"
    supervised_sessions: int = 12
    max_supervised_weeks: int = 8
    home_sessions: int = 2
    home_delivery: str = "home"

    def validate(self) -> None:
        try:
            levels = () if isinstance(self.levels, str | bytes) else tuple(self.levels)
        except TypeError:
            levels = ()
        if not levels:
            raise ValueError(f"levels: must be a non-empty list of loads, got {self.levels!r}")
        levels = tuple(_check_load("levels", x) for x in levels)
        self.levels = levels
        check_int("weeks_per_level", self.weeks_per_level, 1, 26)
        check_number("acceptable_pain", self.acceptable_pain, 0.0, 10.0)
        _check_dose(self, low_sessions=1)
        check_int("supervised_sessions", self.supervised_sessions, 1, 60)
        check_int("max_supervised_weeks", self.max_supervised_weeks, 1, 52)
        check_int("home_sessions", self.home_sessions, 0, 5)
        check_delivery("home_delivery", self.home_delivery)

    def initial_memory(self, n: int) -> Memory:
        return {"attended": np.zeros(n), "level": np.zeros(n, dtype=np.int64),
                "weeks_at_level": np.zeros(n, dtype=np.int64)}

    def _supervised(self, m: Memory, week: np.ndarray) -> np.ndarray:
        return (m["attended"] < self.supervised_sessions) & (week < self.max_supervised_weeks)

    def prescribe(self, u: Units, m: Memory) -> Prescription:
        week = m["week"]
        observed = week >= 1
        last_supervised = observed & self._supervised(m, week - 1)  # memory still holds week - 1's count
        m["attended"] += np.where(last_supervised, np.rint(u["sessions_attended"]), 0.0)
        m["weeks_at_level"] += observed
        up = (last_supervised & _attended(u) & _at_most(u["session_pain_max"], self.acceptable_pain)
              & (u["flare_reported"] < 0.5) & (m["weeks_at_level"] >= self.weeks_per_level)
              & (m["level"] < len(self.levels) - 1))
        m["level"] += up
        m["weeks_at_level"][up] = 0
        supervised = self._supervised(m, week)
        remaining = np.maximum(self.supervised_sessions - m["attended"], 0.0)
        sessions = np.where(supervised, np.minimum(float(self.sessions), remaining), float(self.home_sessions))
        delivery = np.where(supervised, DELIVERY[self.delivery], DELIVERY[self.home_delivery])
        return np.asarray(self.levels)[m["level"]], sessions, delivery


#: Every clinical protocol by name (``configs/policy/protocol/<name>.yaml`` holds its parameters).
PROTOCOLS: dict[str, type[Protocol]] = {
    cls.name: cls
    for cls in (NoTreatment, AttentionControl, Constant, Linear, ACSM, PainMonitoring, GradedActivity,
                RPEAutoregulation, GLAD, StartHigh, StartLow, Aggressive)
}


def make(name: str, **params: Any) -> Protocol:
    """The clinical protocol ``name`` with parameters ``params`` (a ``ValueError`` names an unknown one)."""
    if name not in PROTOCOLS:
        raise ValueError(f"name: unknown clinical protocol {name!r}; known: {', '.join(PROTOCOLS)}")
    cls = PROTOCOLS[name]
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{name}: unknown parameter(s) {unknown}; known: {sorted(known)}")
    return cls(**params)
