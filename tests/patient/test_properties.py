"""Property-based tests (hypothesis) of the batched patient simulator.

For any patient of any prior (every condition, every split including ``ood``, seeds and batch sizes
1-32) and for "extreme" patients whose parameters sit at the edges of what the prior can produce, and for
any valid prescription sequence (load 0-1.5 baseline-capacity units with the edges 0, 0.05 and 1.5, sessions
0-5, delivery 0-2, every modality; per-patient or broadcast; abrupt min/max jumps, training then stopping,
up to 52 weeks), after every week:

* every latent state variable is finite and in its documented range (capacity between 1 and the patient's
  ceiling, loads in 0-1.5, fear/motivation/habit in 0-1, pain in 0-10, S above its floor (so >= 0), ...);
* every true outcome is in range (pain and in-session pain 0-10, function 0-100, flare onsets 0-4, attended <=
  prescribed, relative load <= load) and every clinic observation is in range (NRS reports 0-10, attendance
  in 0-1, diary days 0-7, function 0-100, RPE 0-10), ``NaN`` exactly where nothing was recorded and never inf;
* the intake observation and the derived parameters are finite and in range;
* nothing warns (every warning is an error inside the properties);
* the same cohort, seed and actions give bit-identical weeks, and a patient's weeks do not depend on the batch.

``MAX_EXAMPLES`` hypothesis examples per property (``REPLAY_EXAMPLES`` for the replay property; ``derandomize=True``:
the same examples on every run), plus a fixed grid of prior corners (not hypothesis).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adaptrx.patient import MODALITIES, SPLITS, ModelConstants, PatientSimulator, conditions, make_cohort
from adaptrx.patient.cohort import ADHERENCE_CLASSES, _prepared
from adaptrx.patient.simulator import PARAM_COLUMNS, WeekResult

#: Hypothesis examples per property (the replay property, three simulations per example, runs ``REPLAY_EXAMPLES``).
MAX_EXAMPLES = 100
REPLAY_EXAMPLES = 50

SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

CONDITIONS: tuple[str, ...] = tuple(conditions())
MODALITY_NAMES: tuple[str, ...] = tuple(sorted(MODALITIES))
K = ModelConstants()
#: ``sample_patients`` clips the copula uniforms to this range: the marginals at these uniforms are the most
#: extreme values the prior can produce (the truncation bounds where reachable; the beta tails otherwise).
U_LOW, U_HIGH = 1e-12, 1 - 1e-12
TOL = 1e-9
#: |z| of the most extreme standard normal the counter-based streams can draw (ndtri of 2**-54) is < 8.3.
Z_MAX = 8.3


# ------------------------------------------------------------------------------------------- priors


def prior_edges(condition: str, split: str) -> dict[str, tuple[float, ...]]:
    """Per parameter, the edge values of a split's prior: the producible extremes (marginal at ``U_LOW`` and
    ``U_HIGH``) and the declared truncation bounds (``low``/``high`` of the YAML) where they are finite."""
    prior, names, _, marginals = _prepared(condition, split)
    x = marginals.values(np.array([[U_LOW] * len(names), [U_HIGH] * len(names)]))
    edges = {}
    for j, name in enumerate(names):
        spec = prior["parameters"][name]
        values = {float(x[0, j]), float(x[1, j])}
        for bound in ("low", "high"):
            if bound in spec:
                values.add(float(spec[bound]))
        edges[name] = tuple(sorted(values))
    return edges


def prior_range(condition: str, split: str) -> dict[str, tuple[float, float]]:
    """Per parameter, ``(min, max)`` of the values the prior can produce or declares."""
    return {name: (v[0], v[-1]) for name, v in prior_edges(condition, split).items()}


@st.composite
def extreme_cohorts(draw: st.DrawFn) -> pd.DataFrame:
    """A cohort of 1-16 patients of one condition and split whose parameters sit at the edges of the prior:
    all at the minimum, all at the maximum, or a mix per parameter of the two edges, the declared bounds and
    values drawn from the marginal (so that extremes also meet typical values)."""
    condition = draw(st.sampled_from(CONDITIONS))
    split = draw(st.sampled_from(SPLITS))
    n = draw(st.integers(1, 16))
    prior, names, _, marginals = _prepared(condition, split)
    edges = prior_edges(condition, split)
    pattern = draw(st.sampled_from(("mixed", "all_min", "all_max")))
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {"patient_id": f"extreme-{condition}-{split}-{i}", "condition": condition,
                               "split": split,
                               "sex": draw(st.sampled_from(sorted(prior["categorical"]["sex"]))),
                               "adherence_class": draw(st.sampled_from(ADHERENCE_CLASSES))}
        choices = [pattern[4:]] * len(names) if pattern != "mixed" else [
            draw(st.sampled_from(("min", "max", "bound", "marginal"))) for _ in names]
        u = np.array([[draw(st.floats(U_LOW, U_HIGH)) if c == "marginal" else 0.5 for c in choices]])
        typical = marginals.values(u)[0]
        for j, (name, choice) in enumerate(zip(names, choices, strict=True)):
            values = edges[name]
            if choice == "bound":  # any edge value: a producible extreme or a declared truncation bound
                row[name] = draw(st.sampled_from(values))
            else:
                row[name] = {"min": values[0], "max": values[-1]}.get(choice, float(typical[j]))
        rows.append(row)
    return pd.DataFrame(rows)


@st.composite
def sampled_cohorts(draw: st.DrawFn) -> pd.DataFrame:
    """A cohort of any prior: condition, split, seed and 1-32 patients."""
    return make_cohort(draw(st.sampled_from(CONDITIONS)), draw(st.integers(1, 32)), draw(st.integers(0, 2**32)),
                       draw(st.sampled_from(SPLITS)))


# ------------------------------------------------------------------------------------------ actions

LOADS = st.one_of(st.sampled_from((0.0, 0.05, 1.5)), st.floats(0.0, 1.5))
SESSIONS = st.one_of(st.sampled_from((0, 5)), st.integers(0, 5))
DELIVERY = st.integers(0, 2)
WEEK = st.tuples(LOADS, SESSIONS, DELIVERY)


@st.composite
def prescriptions(draw: st.DrawFn) -> dict[str, Any]:
    """A valid prescription sequence of 1-52 weeks, a modality, a noise seed and whether the weekly actions
    are spread over the patients (a numpy stream of edge-biased per-patient actions around the drawn week)."""
    weeks = draw(st.integers(1, 52))
    pattern = draw(st.sampled_from(("free", "programme", "bang_bang", "train_then_stop", "constant")))
    if pattern == "free":
        plan = draw(st.lists(WEEK, min_size=weeks, max_size=weeks))
    elif pattern == "programme":  # a fixed schedule and delivery, the load changing freely from week to week
        sessions, delivery = draw(SESSIONS), draw(DELIVERY)
        plan = [(load, sessions, delivery) for load in draw(st.lists(LOADS, min_size=weeks, max_size=weeks))]
    elif pattern == "bang_bang":  # abrupt jumps between nothing and the heaviest possible week
        period = draw(st.integers(1, 4))
        plan = [(1.5, 5, draw(st.integers(0, 2))) if (w // period) % 2 else (0.0, 0, 0) for w in range(weeks)]
    elif pattern == "train_then_stop":
        stop = draw(st.integers(0, weeks))
        plan = [draw(WEEK) if w < stop else (0.0, 0, 0) for w in range(weeks)]
    else:
        plan = [draw(WEEK)] * weeks
    return {"plan": plan, "modality": draw(st.sampled_from(MODALITY_NAMES)), "seed": draw(st.integers(0, 2**32)),
            "spread": draw(st.one_of(st.none(), st.integers(0, 2**32)))}


def week_actions(week: tuple[float, int, int], n: int, rng: np.random.Generator | None) -> tuple[Any, Any, Any]:
    """The week's action as scalars (broadcast), or per-patient arrays: each patient keeps the drawn week or
    gets an edge (0 or 1.5 load, 0 or 5 sessions, any delivery) or a uniform value."""
    if rng is None:
        return week
    load = np.where(rng.random(n) < 0.5, week[0], rng.choice([0.0, 0.05, 1.5, rng.uniform(0, 1.5)], n))
    sessions = np.where(rng.random(n) < 0.5, week[1], rng.choice([0, 5, int(rng.integers(0, 6))], n))
    delivery = np.where(rng.random(n) < 0.5, week[2], rng.integers(0, 3, n))
    return load, sessions, delivery


# --------------------------------------------------------------------------------------- invariants


def in_range(x: np.ndarray, low: float | np.ndarray, high: float | np.ndarray, name: str) -> None:
    x = np.asarray(x, dtype=np.float64)
    assert np.isfinite(x).all(), f"{name}: not finite: {x}"
    bad = (x < np.subtract(low, TOL)) | (x > np.add(high, TOL))
    if bad.any():
        low, high = np.broadcast_to(low, x.shape), np.broadcast_to(high, x.shape)
        raise AssertionError(f"{name}: {x[bad]} out of [{low[bad]}, {high[bad]}]")


def same(a: Any, b: Any, name: str) -> None:
    """``a`` equals ``b`` element for element (``b`` may be a scalar)."""
    a, b = np.asarray(a), np.asarray(b)
    assert (b.ndim == 0 or a.shape == b.shape) and (a == b).all(), f"{name}: {a} != {b}"


def whole(x: np.ndarray, name: str) -> None:
    assert np.array_equal(x, np.rint(x)), f"{name}: not whole numbers: {x}"


def nan_exactly_where(x: np.ndarray, missing: np.ndarray, low: float, high: float, name: str) -> None:
    """``x`` is NaN exactly where ``missing`` and in ``[low, high]`` elsewhere (never inf)."""
    x = np.asarray(x, dtype=np.float64)
    assert not np.isinf(x).any(), f"{name}: inf"
    assert np.array_equal(np.isnan(x), np.asarray(missing, dtype=bool)), f"{name}: NaN pattern {x} vs {missing}"
    in_range(x[~np.isnan(x)], low, high, name)


def check_params(sim: PatientSimulator) -> None:
    P = sim.kernel_arrays()[0]
    assert np.isfinite(P).all(), "derived parameters must be finite"
    in_range(sim.p.drive, 0.3, 10.0, "drive")
    in_range(sim.p.demand, 0.0, np.inf, "demand")
    in_range(sim.p.gain0, 1.0, np.inf, "gain0")
    in_range(sim.p.innov, 0.0, np.inf, "innov")


def check_intake(sim: PatientSimulator) -> None:
    intake = sim.intake
    for name, low, high in (("pain", 0, 10), ("sensitization_score", 0, 100), ("fear_score", 11, 44),
                            ("function", 0, 100), ("preferred_sessions", 1, 5)):
        in_range(intake[name], low, high, f"intake.{name}")
        whole(intake[name], f"intake.{name}")
    same(intake["age"], sim.p.age, "intake.age")


def check_state(sim: PatientSimulator, weeks_done: int) -> None:
    """Every latent variable finite and in its documented range (PatientState field comments)."""
    s, p = sim.state, sim.p
    fatigue_max = K.fatigue_gain * 1.5 / (1 - np.exp(-1 / K.fatigue_tau))  # steady state of the heaviest load
    in_range(s.capacity, 1.0, p.capacity_ceiling, "capacity")  # starts at 1, adapts up to the ceiling
    in_range(s.fatigue, 0.0, fatigue_max, "fatigue")
    in_range(s.acute_load, 0.0, 1.5, "acute_load")
    in_range(s.chronic_load, 0.0, 1.5, "chronic_load")
    in_range(s.session_rate, 0.0, 7.0, "session_rate")
    in_range(s.irritation, 0.0, np.inf, "irritation")
    in_range(s.demand_irritation, 0.0, np.inf, "demand_irritation")
    assert set(np.unique(s.in_flare)) <= {0.0, 1.0}
    # a flare holds while irritation stays above the release level and is always on above the threshold
    assert (s.in_flare[s.irritation >= K.flare_threshold] != 0).all(), "in_flare above the threshold"
    assert (s.in_flare[s.irritation < K.flare_release * K.flare_threshold] == 0).all(), "in_flare below release"
    in_range(s.flare_memory, 0.0, 1.0 / (1.0 - np.exp(-1.0 / K.flare_memory_tau)), "flare_memory")
    # S >= 0 (PatientState) and "S cannot fall below this fraction of S0" (ModelConstants.sensitization_floor)
    in_range(s.sensitization, K.sensitization_floor * p.s0, np.inf, "sensitization")
    in_range(s.fear, 0.0, 1.0, "fear")
    in_range(s.expected_increase, 0.0, np.inf, "expected_increase")
    in_range(s.motivation, 0.0, 1.0, "motivation")
    in_range(s.habit, 0.0, 1.0, "habit")
    in_range(s.context, 0.0, p.context_response, "context")  # rises toward at most the full care context
    # AR(1) of draws |z| < Z_MAX: |eta| <= sd (rtm_shift + Z_MAX) + innov Z_MAX / (1 - rho)
    eta_max = p.fluctuation_sd * (K.rtm_shift + Z_MAX) + p.innov * Z_MAX / (1 - K.eta_rho)
    in_range(s.eta, -eta_max, eta_max, "eta")
    in_range(s.pain, 0.0, 10.0, "pain")
    in_range(s.pain_recent, 0.0, 10.0, "pain_recent")
    assert set(np.unique(s.dropped_out)) <= {0.0, 1.0}
    same(s.day, 1 + 7 * weeks_done, "day")
    same(s.week, weeks_done, "week")


def check_week(sim: PatientSimulator, r: WeekResult, actions: tuple[Any, Any, Any], was_out: np.ndarray,
               weeks_done: int) -> None:
    """A week's true outcomes and observation are in range, consistent, NaN only where nothing was recorded."""
    n = sim.n
    load = np.clip(np.broadcast_to(np.asarray(actions[0], dtype=np.float64), (n,)), 0.0, 1.5)
    sessions = np.broadcast_to(np.asarray(actions[1]), (n,))
    in_range(r.pain, 0.0, 10.0, "pain")
    in_range(r.pain_max, r.pain, 10.0, "pain_max")
    nan_exactly_where(r.session_pain_max, r.sessions_attended == 0, 0.0, 10.0, "session_pain_max")
    in_range(r.function, 0.0, 100.0, "function")
    same(r.capacity, sim.state.capacity, "capacity")
    in_range(r.flares, 0, 1, "flares")  # the weekly record holds at most one flare onset
    same(r.sessions_prescribed, np.where(was_out, 0, sessions), "sessions_prescribed")
    in_range(r.sessions_attended, 0, r.sessions_prescribed, "sessions_attended")
    in_range(r.relative_load, 0.0, load, "relative_load")  # capacity >= 1
    assert (r.relative_load[r.sessions_attended == 0] == 0).all()
    same(r.dropped_out, was_out | r.new_dropout, "dropped_out")
    assert not (r.new_dropout & (was_out | (r.sessions_prescribed == 0) | (load == 0))).any(), "dropout out of care"
    same(sim.state.dropped_out != 0, r.dropped_out, "state.dropped_out")

    o = r.observation
    none = r.sessions_attended == 0
    for name in ("session_pain_mean", "session_pain_max", "morning_pain_mean", "rpe_mean"):
        nan_exactly_where(getattr(o, name), none, 0.0, 10.0, f"observation.{name}")
    whole(o.session_pain_max[~none], "observation.session_pain_max")
    assert (o.session_pain_max[~none] >= o.session_pain_mean[~none] - TOL).all()
    nan_exactly_where(o.morning_change_mean, none, -10.0, 10.0, "observation.morning_change_mean")
    in_range(o.diary_days, 0, 7, "observation.diary_days")
    whole(o.diary_days, "observation.diary_days")
    nan_exactly_where(o.diary_pain, o.diary_days == 0, 0.0, 10.0, "observation.diary_pain")
    nan_exactly_where(o.attendance, r.sessions_prescribed == 0, 0.0, 1.0, "observation.attendance")
    some = r.sessions_prescribed > 0
    np.testing.assert_allclose(o.attendance[some], r.sessions_attended[some] / r.sessions_prescribed[some])
    same(o.sessions_attended, r.sessions_attended, "observation.sessions_attended")
    same(o.flare_reported, r.flares > 0, "observation.flare_reported")
    same(o.dropped_out, r.dropped_out, "observation.dropped_out")
    in_range(o.function, 0.0, 100.0, "observation.function")
    whole(o.function, "observation.function")
    tested = (weeks_done % K.capacity_test_every == 0) & np.ones(n, dtype=bool)
    nan_exactly_where(o.capacity_test, ~tested, 1e-12, np.inf, "observation.capacity_test")
    bounds = r.capacity * (1 - K.capacity_test_cv * Z_MAX), r.capacity * (1 + K.capacity_test_cv * Z_MAX)
    in_range(o.capacity_test[tested], bounds[0][tested], bounds[1][tested], "observation.capacity_test")


def run_plan(sim: PatientSimulator, rx: dict[str, Any]) -> list[np.ndarray]:
    """Step ``sim`` through a prescription sequence under the invariants; returns each week's output rows."""
    rng = None if rx["spread"] is None else np.random.default_rng(rx["spread"])
    check_params(sim)
    check_intake(sim)
    check_state(sim, 0)
    rows = []
    for w, week in enumerate(rx["plan"], start=1):
        actions = week_actions(week, sim.n, rng)
        was_out = sim.state.dropped_out != 0
        result = sim.step_week(*actions)
        check_state(sim, w)
        check_week(sim, result, actions, was_out, w)
        rows.append(np.array([result.pain, result.function, result.observation.diary_pain, result.capacity,
                              result.sessions_attended, result.flares, result.dropped_out]))
    return rows


def simulate(cohort: pd.DataFrame, rx: dict[str, Any]) -> list[np.ndarray]:
    """Simulate ``cohort`` under ``rx`` with every invariant checked and every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = PatientSimulator(cohort, seed=rx["seed"], modality=rx["modality"])
        return run_plan(sim, rx)


# ------------------------------------------------------------------------------------------- tests


def edge_patient(condition: str, split: str, high: tuple[str, ...], **ids: str) -> dict[str, Any]:
    """A cohort row with the parameters ``high`` at the prior's maximum and every other one at its minimum."""
    edges = prior_edges(condition, split)
    row = {name: values[-1] if name in high else values[0] for name, values in edges.items()}
    return {"patient_id": f"edge-{condition}-{split}", "condition": condition, "split": split, "sex": "F",
            "adherence_class": "gradual_decline", **ids, **row}


#: Found by this suite: the least sensitized, most desensitizable patient, sensitized by one heavy week, then
#: in a regular supervised mind-body programme. Desensitization overshot: S fell below the floor, to < 0.
FLOOR_OVERSHOOT = (
    pd.DataFrame([edge_patient("knee_oa", "train", ("capacity", "motivation", "preferred_sessions", "envelope",
                                                    "desensitization_gain", "sensitization_gain",
                                                    "context_response", "function_offset"))]),
    {"plan": [(1.5, 5, 2)] + [(0.5, 5, 2)] * 3, "modality": "mind_body", "seed": 0, "spread": None},
)


@SETTINGS
@given(cohort=sampled_cohorts())
def test_sampled_patients_lie_within_the_prior_edges(cohort: pd.DataFrame) -> None:
    """The extreme patients below are real: every sampled value lies between the edges they use."""
    ranges = prior_range(cohort["condition"][0], cohort["split"][0])
    assert set(ranges) == set(PARAM_COLUMNS)
    for name, (low, high) in ranges.items():
        in_range(cohort[name].to_numpy(), low, high, name)
    assert set(cohort["adherence_class"]) <= set(ADHERENCE_CLASSES)


@SETTINGS
@given(cohort=sampled_cohorts(), rx=prescriptions())
def test_any_patient_of_any_prior_stays_finite_and_in_range(cohort: pd.DataFrame, rx: dict[str, Any]) -> None:
    simulate(cohort, rx)


@SETTINGS
@given(cohort=extreme_cohorts(), rx=prescriptions())
@example(*FLOOR_OVERSHOOT)
def test_extreme_patients_at_the_edges_of_the_priors_stay_finite_and_in_range(cohort: pd.DataFrame,
                                                                              rx: dict[str, Any]) -> None:
    ranges = prior_range(cohort["condition"][0], cohort["split"][0])
    for name, (low, high) in ranges.items():  # the patients are ones the prior allows
        in_range(cohort[name].to_numpy(), low, high, name)
    simulate(cohort, rx)


@settings(SETTINGS, max_examples=REPLAY_EXAMPLES)
@given(cohort=st.one_of(sampled_cohorts(), extreme_cohorts()), rx=prescriptions(), data=st.data())
def test_same_seed_and_actions_replay_bit_for_bit_whatever_the_batch(cohort: pd.DataFrame, rx: dict[str, Any],
                                                                     data: st.DataObject) -> None:
    """Determinism, and common random numbers: a sub-batch of the patients (any subset, any order) meets
    exactly the weeks the patients met in the full batch when every patient gets the same actions."""
    rx = {**rx, "spread": None}
    first, second = simulate(cohort, rx), simulate(cohort, rx)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    order = data.draw(st.permutations(range(len(cohort))))
    subset = order[: data.draw(st.integers(1, len(cohort)))]
    alone = simulate(cohort.iloc[subset].reset_index(drop=True), rx)
    for a, b in zip(first, alone, strict=True):
        np.testing.assert_array_equal(a[:, subset], b)


#: Random two-point patients (every parameter at its minimum or maximum) per condition and split in the corner test.
N_TWO_POINT = 500


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("condition", CONDITIONS)
def test_every_corner_of_every_prior_survives_the_harshest_year(condition: str, split: str) -> None:
    """Not hypothesis, a fixed grid of corners: every parameter at its minimum, at its maximum, each parameter
    alone at either edge with the others at the opposite one, and ``N_TWO_POINT`` random min/max mixes (batched:
    cheap), under a year of maximal load jumps and under a regular supervised programme whose load jumps between
    edge values, in every modality."""
    edges = prior_edges(condition, split)
    names = list(edges)
    lo, hi = {n: edges[n][0] for n in names}, {n: edges[n][-1] for n in names}
    rng = np.random.default_rng(SPLITS.index(split) + 10 * CONDITIONS.index(condition))
    mixes = [{n: edges[n][-1] if up else edges[n][0] for n, up in zip(names, ups, strict=True)}
             for ups in rng.random((N_TWO_POINT, len(names))) < 0.5]
    rows = [lo, hi] + [{**lo, n: hi[n]} for n in names] + [{**hi, n: lo[n]} for n in names] + mixes
    cohort = pd.DataFrame([{"patient_id": f"corner-{i}", "condition": condition, "split": split, "sex": "F",
                            "adherence_class": ADHERENCE_CLASSES[i % 3], **row} for i, row in enumerate(rows)])
    harsh = [(1.5, 5, 2) if w % 2 else (0.0, 0, 0) for w in range(26)] + [(1.5, 5, w % 3) for w in range(26)]
    programme = [(float(load), 5, 2) for load in rng.choice([0.05, 0.3, 0.5, 1.5], 40)] + [(0.0, 0, 0)] * 12
    for plan in (harsh, programme):
        for modality in MODALITY_NAMES:
            simulate(cohort, {"plan": plan, "modality": modality, "seed": 7, "spread": None})


def test_the_edges_are_extreme() -> None:
    """The edge helper is not vacuous: the edges are the prior's bounds and bracket its typical values."""
    edges = prior_edges("knee_oa", "train")
    assert edges["sensitization"][0] == pytest.approx(0.05) and edges["sensitization"][-1] == pytest.approx(3.0)
    assert edges["fear"][0] < 0.01 and edges["fear"][-1] > 0.99
    cohort = make_cohort("knee_oa", 200, seed=1)
    for name, values in edges.items():
        median = cohort[name].median()
        assert values[0] < median < values[-1], name
