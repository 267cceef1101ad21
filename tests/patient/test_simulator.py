"""Batched simulator: shapes, invariants, determinism, common random numbers, what-if, validation, mechanisms."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle

import numpy as np
import pandas as pd
import pytest

from adaptrx.patient import (
    HOME_ALONE,
    MODALITIES,
    REMOTE,
    SUPERVISED,
    ModelConstants,
    PatientSimulator,
    PatientState,
    WeekObservation,
    WeekResult,
    kernel,
    make_cohort,
)
from adaptrx.patient.kernel import Out
from adaptrx.patient.simulator import PARAM_COLUMNS, stream_keys

N = 500


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return make_cohort("knee_oa", N, seed=11)


@pytest.fixture(scope="module")
def cohort_2000() -> pd.DataFrame:
    return make_cohort("knee_oa", 2000, seed=12)


def random_actions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rng.uniform(0.0, 1.5, n), rng.integers(0, 6, n), rng.integers(0, 3, n)


def assert_results_equal(a: WeekResult, b: WeekResult, index: np.ndarray | slice = slice(None)) -> None:
    """Every field of ``a`` equals ``b[index]`` bit for bit (NaN == NaN)."""
    for f in dataclasses.fields(WeekResult):
        if f.name == "observation":
            continue
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name)[index], err_msg=f.name)
    for f in dataclasses.fields(WeekObservation):
        np.testing.assert_array_equal(
            getattr(a.observation, f.name), getattr(b.observation, f.name)[index], err_msg=f"observation.{f.name}"
        )


def test_shapes_and_types(cohort: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort, seed=0)
    assert sim.n == N
    state = sim.get_state()
    assert set(state) == {f.name for f in dataclasses.fields(PatientState)}
    assert all(v.shape == (N,) for v in state.values())
    r = sim.step_week(0.5, 3, SUPERVISED)
    for f in dataclasses.fields(WeekResult):
        if f.name != "observation":
            assert getattr(r, f.name).shape == (N,), f.name
    for f in dataclasses.fields(WeekObservation):
        assert getattr(r.observation, f.name).shape == (N,), f.name
    assert r.flare.dtype == bool
    assert r.dropped_out.dtype == bool
    assert np.issubdtype(r.flares.dtype, np.integer)
    np.testing.assert_array_equal(sim.state.week, 1)
    np.testing.assert_array_equal(sim.state.day, 8)


def test_single_patient_is_the_n1_case(cohort: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort.iloc[[7]], seed=0)
    r = sim.step_week(np.array([0.4]), np.array([2]), np.array([REMOTE]))
    assert r.pain.shape == (1,)
    r = sim.step_week(0.4, 2, REMOTE)  # scalars broadcast
    assert r.pain.shape == (1,)


def test_latent_state_stays_in_range_over_52_weeks_of_random_actions(cohort: pd.DataFrame) -> None:
    rng = np.random.default_rng(2024)
    sim = PatientSimulator(cohort, seed=3)
    for _ in range(52):
        r = sim.step_week(*random_actions(rng, N))
        s = sim.state
        for name, value in sim.get_state().items():
            assert np.all(np.isfinite(value)), name
        assert np.all((s.pain >= 0) & (s.pain <= 10))
        assert np.all((s.pain_recent >= 0) & (s.pain_recent <= 10))
        for name in ("fear", "motivation", "habit"):
            v = getattr(s, name)
            assert np.all((v >= 0) & (v <= 1)), name
        assert np.all(s.capacity > 0)
        assert np.all(s.fatigue >= 0)
        assert np.all(s.irritation >= 0)
        assert np.all(s.demand_irritation >= 0)
        assert np.all(s.sensitization >= 0)
        assert np.all(s.acute_load >= 0) and np.all(s.chronic_load >= 0)
        assert np.all(np.isfinite(r.pain)) and np.all((r.pain >= 0) & (r.pain <= 10))
        assert np.all(r.pain_max >= r.pain)
        assert np.all((r.function >= 0) & (r.function <= 100))
        assert np.all((r.sessions_attended >= 0) & (r.sessions_attended <= r.sessions_prescribed))
        assert np.all(r.relative_load >= 0)
        assert np.all(r.flares >= 0) and np.all(r.flares <= 7)
        attended = r.sessions_attended > 0
        assert np.all(np.isnan(r.session_pain_max[~attended]))
        assert np.all((r.session_pain_max[attended] >= 0) & (r.session_pain_max[attended] <= 10))


def test_same_seed_identical_results(cohort: pd.DataFrame) -> None:
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    a, b = PatientSimulator(cohort, seed=42), PatientSimulator(cohort, seed=42)
    for name, v in a.intake.items():
        np.testing.assert_array_equal(v, b.intake[name], err_msg=name)
    for _ in range(8):
        assert_results_equal(a.step_week(*random_actions(rng_a, N)), b.step_week(*random_actions(rng_b, N)))


def test_different_seeds_differ(cohort: pd.DataFrame) -> None:
    a, b = PatientSimulator(cohort, seed=1), PatientSimulator(cohort, seed=2)
    assert not np.array_equal(a.state.pain, b.state.pain)
    ra, rb = a.step_week(0.5, 3, HOME_ALONE), b.step_week(0.5, 3, HOME_ALONE)
    assert np.mean(ra.pain != rb.pain) > 0.95
    assert not np.array_equal(ra.sessions_attended, rb.sessions_attended)
    # but the cohort (parameters) is the same, so group means agree within noise
    assert abs(ra.pain.mean() - rb.pain.mean()) < 0.3


def test_explicit_keys_override_seed(cohort: pd.DataFrame) -> None:
    keys = np.arange(1, N + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    a = PatientSimulator(cohort, seed=1, keys=keys)
    b = PatientSimulator(cohort, seed=2, keys=keys)
    assert_results_equal(a.step_week(0.5, 2, SUPERVISED), b.step_week(0.5, 2, SUPERVISED))
    with pytest.raises(ValueError, match="keys"):
        PatientSimulator(cohort, keys=keys[:-1])


@pytest.mark.parametrize("position", [0, 123, N - 1])
def test_crn_patient_alone_equals_patient_in_batch(cohort: pd.DataFrame, position: int) -> None:
    """Patient i alone and inside a batch of 500 whose OTHER patients get different prescriptions: identical."""
    rng_own = np.random.default_rng(100)
    rng_others = np.random.default_rng(200 + position)
    alone = PatientSimulator(cohort.iloc[[position]], seed=7)
    batch = PatientSimulator(cohort, seed=7)
    np.testing.assert_array_equal(alone.state.pain, batch.state.pain[[position]])
    for name, v in alone.intake.items():
        np.testing.assert_array_equal(v, batch.intake[name][[position]], err_msg=name)
    for _ in range(16):
        own = random_actions(rng_own, 1)
        load, sessions, delivery = random_actions(rng_others, N)
        load[position], sessions[position], delivery[position] = own[0][0], own[1][0], own[2][0]
        r_alone = alone.step_week(*own)
        r_batch = batch.step_week(load, sessions, delivery)
        assert_results_equal(r_alone, r_batch, [position])
    for name, v in alone.get_state().items():
        np.testing.assert_array_equal(v, batch.get_state()[name][[position]], err_msg=name)


def test_crn_independent_of_batch_order(cohort: pd.DataFrame) -> None:
    perm = np.random.default_rng(0).permutation(N)
    a = PatientSimulator(cohort, seed=3)
    b = PatientSimulator(cohort.iloc[perm], seed=3)
    for w in range(6):
        ra, rb = a.step_week(0.3 + 0.05 * w, 3, REMOTE), b.step_week(0.3 + 0.05 * w, 3, REMOTE)
        np.testing.assert_array_equal(ra.pain[perm], rb.pain)
        np.testing.assert_array_equal(ra.observation.diary_pain[perm], rb.observation.diary_pain)


def test_noise_does_not_depend_on_own_policy(cohort: pd.DataFrame) -> None:
    """With no sessions the prescribed load is irrelevant: the same noise gives the same week."""
    a, b = PatientSimulator(cohort, seed=9), PatientSimulator(cohort, seed=9)
    rng = np.random.default_rng(1)
    for _ in range(6):
        ra = a.step_week(rng.uniform(0, 1.5, N), 0, rng.integers(0, 3, N))
        rb = b.step_week(rng.uniform(0, 1.5, N), 0, rng.integers(0, 3, N))
        assert_results_equal(ra, rb)
    # after two different programmes the background (policy-independent) draws still line up: patients
    # never prescribed anything in either arm have identical pain trajectories
    c, d = PatientSimulator(cohort, seed=9), PatientSimulator(cohort, seed=9)
    untreated = np.arange(N) % 2 == 0
    for _ in range(4):
        rc = c.step_week(np.where(untreated, 0.0, 0.3), np.where(untreated, 0, 2), SUPERVISED)
        rd = d.step_week(np.where(untreated, 0.0, 1.2), np.where(untreated, 0, 5), HOME_ALONE)
        np.testing.assert_array_equal(rc.pain[untreated], rd.pain[untreated])
        assert not np.array_equal(rc.pain[~untreated], rd.pain[~untreated])


def test_get_set_state_round_trip_reproduces_continuation(cohort: pd.DataFrame) -> None:
    rng = np.random.default_rng(77)
    sim = PatientSimulator(cohort, seed=4)
    for _ in range(5):
        sim.step_week(*random_actions(rng, N))
    snapshot = sim.get_state()
    plan_a = [random_actions(rng, N) for _ in range(6)]
    plan_b = [random_actions(rng, N) for _ in range(6)]
    first = [sim.step_week(*act) for act in plan_a]
    end_a = sim.get_state()
    # branch: restore, try another plan, restore again, replay plan A -> identical continuation
    sim.set_state(snapshot)
    for act in plan_b:
        sim.step_week(*act)
    sim.set_state(snapshot)
    for act, expected in zip(plan_a, first, strict=True):
        assert_results_equal(sim.step_week(*act), expected)
    for name, v in sim.get_state().items():
        np.testing.assert_array_equal(v, end_a[name], err_msg=name)
    # a fresh simulator set to the snapshot continues identically as well
    other = PatientSimulator(cohort, seed=4)
    other.set_state(snapshot)
    assert_results_equal(other.step_week(*plan_a[0]), first[0])


def test_get_state_is_a_copy_and_set_state_validates(cohort: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort, seed=4)
    snap = sim.get_state()
    snap["pain"][:] = 99.0
    assert np.all(sim.state.pain <= 10)
    restored = sim.get_state()
    sim.set_state(restored)
    restored["capacity"][:] = -1.0  # mutating the dict after set_state must not reach the simulator
    assert np.all(sim.state.capacity > 0)
    bad = sim.get_state()
    del bad["fear"]
    with pytest.raises(ValueError, match="state"):
        sim.set_state(bad)


def test_dropouts_attend_nothing_afterwards(cohort_2000: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort_2000, seed=5)
    ever = np.zeros(len(cohort_2000), dtype=bool)
    for _ in range(20):
        r = sim.step_week(1.0, 5, HOME_ALONE)  # burdensome and heavy: plenty of dropouts
        # a patient who had dropped out before this week is prescribed and attends nothing
        assert np.all(r.sessions_attended[ever] == 0)
        assert np.all(r.sessions_prescribed[ever] == 0)
        assert np.all(r.dropped_out[ever])  # absorbing
        assert not np.any(r.new_dropout[ever])
        np.testing.assert_array_equal(r.dropped_out, ever | r.new_dropout)
        np.testing.assert_array_equal(r.observation.dropped_out, r.dropped_out)
        ever |= r.dropped_out
    assert 0.05 < ever.mean() < 1.0


def test_no_exercise_arm_never_drops_out(cohort_2000: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort_2000, seed=5)
    for _ in range(26):
        r = sim.step_week(0.0, 0, HOME_ALONE)
        assert not r.dropped_out.any()
        assert np.all(r.sessions_attended == 0)
        assert np.all(r.relative_load == 0)
    assert np.all(sim.state.capacity <= 1.0)  # no loading, no capacity gain
    np.testing.assert_array_equal(sim.state.habit, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sessions": 6}, "sessions"),
        ({"sessions": -1}, "sessions"),
        ({"sessions": np.r_[np.full(N - 1, 2), 7]}, "sessions"),
        ({"delivery": 3}, "delivery"),
        ({"delivery": -1}, "delivery"),
    ],
)
def test_invalid_actions_raise(cohort: pd.DataFrame, kwargs: dict, field: str) -> None:
    sim = PatientSimulator(cohort, seed=0)
    before = sim.get_state()
    with pytest.raises(ValueError, match=field):
        sim.step_week(**{"load": 0.5, "sessions": 2, "delivery": SUPERVISED, **kwargs})
    for name, v in sim.get_state().items():  # a rejected action leaves the state untouched
        np.testing.assert_array_equal(v, before[name], err_msg=name)


def test_nan_load_rejected(cohort: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort, seed=0)
    load = np.full(N, 0.5)
    load[0] = np.nan
    with pytest.raises(ValueError, match="load"):
        sim.step_week(load, np.where(np.arange(N) == 0, 0, 2), SUPERVISED)


@pytest.mark.parametrize(("kwargs", "field"), [({"sessions": 2.7}, "sessions"), ({"delivery": 1.5}, "delivery")])
def test_non_integer_actions_rejected(cohort: pd.DataFrame, kwargs: dict, field: str) -> None:
    sim = PatientSimulator(cohort, seed=0)
    with pytest.raises(ValueError, match=field):
        sim.step_week(**{"load": 0.5, "sessions": 2, "delivery": SUPERVISED, **kwargs})


def test_invalid_constructor_arguments(cohort: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="modality"):
        PatientSimulator(cohort, modality="yoga_on_mars")
    with pytest.raises(ValueError, match="envelope"):
        PatientSimulator(cohort.drop(columns=["envelope"]))
    bad = cohort.copy()
    bad.loc[0, "adherence_class"] = "enthusiast"
    with pytest.raises(ValueError, match="adherence_class"):
        PatientSimulator(bad)


@pytest.mark.parametrize("modality", sorted(MODALITIES))
def test_all_modalities_run(cohort: pd.DataFrame, modality: str) -> None:
    sim = PatientSimulator(cohort, seed=0, modality=modality)
    cap = []
    for _ in range(12):
        r = sim.step_week(0.6, 3, SUPERVISED)
        assert np.all(np.isfinite(r.pain))
        cap.append(r.capacity.mean())
    assert cap[-1] > 1.0  # every modality loads tissue a little


def test_resistance_builds_more_capacity_than_mind_body(cohort: pd.DataFrame) -> None:
    gains = {}
    for modality in ("resistance", "mind_body"):
        sim = PatientSimulator(cohort, seed=0, modality=modality)
        for _ in range(12):
            r = sim.step_week(0.6, 3, SUPERVISED)
        gains[modality] = r.capacity.mean() - 1.0
    assert gains["resistance"] > 1.5 * gains["mind_body"]


def test_abrupt_high_load_flares_more_than_no_exercise(cohort_2000: pd.DataFrame) -> None:
    flares = {}
    for arm, action in {"abrupt": (1.0, 3, HOME_ALONE), "none": (0.0, 0, HOME_ALONE)}.items():
        sim = PatientSimulator(cohort_2000, seed=8)
        flares[arm] = sum(sim.step_week(*action).flares.sum() for _ in range(12)) / len(cohort_2000)
    assert flares["none"] > 0  # background flares exist without exercise
    assert flares["abrupt"] > 1.2 * flares["none"], flares


def test_constant_absolute_load_plateaus_and_capacity_detrains(cohort_2000: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort_2000, seed=6)
    cap = [1.0]
    for week in range(52):
        r = sim.step_week(0.6, 3, SUPERVISED) if week < 24 else sim.step_week(0.0, 0, HOME_ALONE)
        cap.append(r.capacity.mean())
    cap = np.array(cap)  # cap[w] = mean capacity at the end of week w (cap[0] = intake)
    gain_early, gain_late = cap[12] - cap[0], cap[24] - cap[12]
    assert gain_early > 0.02
    assert gain_late < 0.35 * gain_early, (gain_early, gain_late)
    # after stopping: capacity falls every week, back most of the way toward baseline by week 52
    assert np.all(np.diff(cap[24:]) < 0)
    assert cap[52] - 1.0 < 0.5 * (cap[24] - 1.0)
    assert cap[52] > 1.0 - 0.02


def _columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """A cohort as the column mapping an env passes (strings as object arrays)."""
    return {c: df[c].to_numpy(dtype=object if df[c].dtype.kind not in "biuf" else np.float64) for c in df.columns}


def test_mapping_cohort_equals_dataframe(cohort: pd.DataFrame) -> None:
    rng_a, rng_b = np.random.default_rng(8), np.random.default_rng(8)
    a = PatientSimulator(cohort, seed=6)
    b = PatientSimulator(_columns(cohort), seed=6)
    assert b.n == N
    for name, v in a.intake.items():
        np.testing.assert_array_equal(v, b.intake[name], err_msg=name)
    for _ in range(6):
        assert_results_equal(a.step_week(*random_actions(rng_a, N)), b.step_week(*random_actions(rng_b, N)))
    pd.testing.assert_frame_equal(b.cohort, cohort.reset_index(drop=True), check_dtype=False)
    with pytest.raises(ValueError, match="envelope"):
        PatientSimulator({c: v for c, v in _columns(cohort).items() if c != "envelope"})
    with pytest.raises(ValueError, match="adherence_class"):
        PatientSimulator({**_columns(cohort), "adherence_class": np.full(N, "enthusiast", dtype=object)})


def test_get_state_dtypes_and_state_views(cohort: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort, seed=0)
    sim.step_week(0.5, 2, SUPERVISED)
    state = sim.get_state()
    for name, v in state.items():
        expected = bool if name in ("in_flare", "dropped_out") else np.int64 if name in ("day", "week") else np.float64
        assert v.dtype == expected, name
    np.testing.assert_array_equal(state["day"], 8)
    # sim.state holds live views: it follows steps and set_state
    pain = sim.state.pain
    sim.step_week(0.5, 2, SUPERVISED)
    assert not np.array_equal(pain, state["pain"])
    sim.set_state(state)
    np.testing.assert_array_equal(pain, state["pain"])
    with pytest.raises(ValueError, match="state"):
        sim.set_state({name: v[:-1] for name, v in state.items()})


@pytest.mark.parametrize("as_mapping", [False, True])
def test_replace_evolves_like_a_fresh_simulator(cohort: pd.DataFrame, as_mapping: bool) -> None:
    """Replaced patients continue bit for bit as a fresh simulator of the new rows; the others are untouched."""
    new_rows = make_cohort("knee_oa", 3, seed=99, split="val")
    new_keys = np.array([11, 2**63 + 5, 123456789], dtype=np.uint64)
    index = np.array([N - 1, 3, 250])
    rng = np.random.default_rng(31)
    sim = PatientSimulator(_columns(cohort) if as_mapping else cohort, seed=2)
    control = PatientSimulator(cohort, seed=2)
    for _ in range(5):
        act = random_actions(rng, N)
        sim.step_week(*act)
        control.step_week(*act)
    sim.replace(index, _columns(new_rows) if as_mapping else new_rows, new_keys)
    fresh = PatientSimulator(new_rows, keys=new_keys)
    for name, v in fresh.intake.items():
        np.testing.assert_array_equal(sim.intake[name][index], v, err_msg=name)
    for name, v in fresh.get_state().items():
        np.testing.assert_array_equal(sim.get_state()[name][index], v, err_msg=name)
    np.testing.assert_array_equal(sim.baseline_function()[index], fresh.baseline_function())
    np.testing.assert_array_equal(sim.noise.keys[index], new_keys)
    assert list(sim.cohort["patient_id"].iloc[index]) == list(new_rows["patient_id"])
    others = np.setdiff1d(np.arange(N), index)
    for _ in range(8):
        load, sessions, delivery = random_actions(rng, N)
        r = sim.step_week(load, sessions, delivery)
        assert_results_equal(fresh.step_week(load[index], sessions[index], delivery[index]), r, index)
        rc = control.step_week(load, sessions, delivery)
        for f in ("pain", "function", "flares", "sessions_attended", "dropped_out"):
            np.testing.assert_array_equal(getattr(r, f)[others], getattr(rc, f)[others], err_msg=f)
        np.testing.assert_array_equal(r.observation.diary_pain[others], rc.observation.diary_pain[others])


def test_replace_validates_and_is_atomic(cohort: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort.iloc[:10], seed=0)
    rows = make_cohort("knee_oa", 2, seed=5)
    keys = np.array([1, 2], dtype=np.uint64)
    before = sim.get_state()
    for index in ([0, 10], [-1, 2], [4, 4]):
        with pytest.raises(ValueError, match="index"):
            sim.replace(np.array(index), rows, keys)
    with pytest.raises(ValueError, match="keys"):
        sim.replace(np.array([0, 1]), rows, keys[:1])
    with pytest.raises(ValueError, match="envelope"):
        sim.replace(np.array([0, 1]), rows.drop(columns=["envelope"]), keys)
    for name, v in sim.get_state().items():
        np.testing.assert_array_equal(v, before[name], err_msg=name)
    sim.replace(np.array([], dtype=np.int64), rows.iloc[:0], keys[:0])  # nothing to do
    for name, v in sim.get_state().items():
        np.testing.assert_array_equal(v, before[name], err_msg=name)


def test_replace_of_everyone_equals_a_new_simulator(cohort: pd.DataFrame) -> None:
    """Replacing all patients equals constructing a new simulator (the env set_state path)."""
    sim = PatientSimulator(cohort.iloc[:20], seed=0)
    sim.step_week(0.6, 3, REMOTE)
    rows = cohort.iloc[20:40]
    keys = np.arange(100, 120, dtype=np.uint64)
    sim.replace(np.arange(20), rows, keys)
    fresh = PatientSimulator(rows, keys=keys)
    for _ in range(4):
        assert_results_equal(fresh.step_week(0.6, 3, REMOTE), sim.step_week(0.6, 3, REMOTE))


def test_function_score_broadcasts(cohort: pd.DataFrame) -> None:
    sim = PatientSimulator(cohort, seed=0)
    pain = np.linspace(0, 10, N)
    f = sim.function_score(pain)
    assert f.shape == (N,)
    stacked = sim.function_score(np.stack([pain, pain + 1]))
    assert stacked.shape == (2, N)
    np.testing.assert_array_equal(stacked[0], f)
    p = sim.p
    k = ModelConstants()
    expected = np.clip(100.0 + p.function_offset - k.function_pain * pain - k.function_demand * p.demand
                       / sim.state.capacity, 0.0, 100.0)
    np.testing.assert_allclose(f, expected, rtol=0, atol=1e-12)


def test_deepcopy_and_pickle_keep_views_bound(cohort: pd.DataFrame) -> None:
    import copy
    import pickle

    sim = PatientSimulator(cohort.iloc[:50], seed=3)
    sim.step_week(0.5, 2, SUPERVISED)
    for clone in (copy.deepcopy, lambda s: pickle.loads(pickle.dumps(s))):
        twin = clone(sim)
        assert_results_equal(twin.step_week(0.6, 3, REMOTE), sim.step_week(0.6, 3, REMOTE))
        np.testing.assert_array_equal(twin.state.pain, twin.get_state()["pain"])  # views follow the twin
        assert not np.shares_memory(twin.state.pain, sim.state.pain)


def _hashlib_key(patient_id: str, seed: int) -> int:
    salt = int(seed).to_bytes(8, "little", signed=False)
    return int.from_bytes(hashlib.blake2b(patient_id.encode(), digest_size=8, salt=salt).digest(), "little")


def test_stream_keys_are_hashlib_blake2b() -> None:
    """The compiled BLAKE2b gives hashlib's digest for every id length (empty, one and several 128-byte blocks),
    non-ASCII and NUL-ended ids, one seed or a seed per patient (up to 2**64 - 1)."""
    rng = np.random.default_rng(0)
    ids = [f"knee_oa-train-s{int(s)}-00000" for s in rng.integers(0, 2**63, 50)]
    ids += ["", "é漢字-x", "a" * 127, "b" * 128, "c" * 129, "d" * 300, "x\x00y", "x\x00"]
    seeds = rng.integers(0, 2**63, len(ids)).astype(np.uint64)
    seeds[0] = 2**64 - 1
    expected = np.array([_hashlib_key(i, s) for i, s in zip(ids, seeds.tolist(), strict=True)], dtype=np.uint64)
    assert np.array_equal(stream_keys(ids, seeds), expected)
    assert np.array_equal(stream_keys(np.array(ids, dtype=object), 7),
                          np.array([_hashlib_key(i, 7) for i in ids], dtype=np.uint64))
    assert np.array_equal(stream_keys(pd.Series(ids[:5]), 2**64 - 1), [_hashlib_key(i, 2**64 - 1) for i in ids[:5]])
    assert stream_keys([], 3).shape == (0,)
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="seed"):
            stream_keys(["a"], bad)
    with pytest.raises(ValueError, match="seed"):
        stream_keys(["a", "b"], np.array([1, -1]))
    with pytest.raises(ValueError, match="seed"):
        stream_keys(["a", "b"], np.array([1, 2, 3]))


@pytest.mark.parametrize("n", [1, 8, 16, 4096])
def test_padded_layout_gives_the_same_week(cohort_2000: pd.DataFrame, n: int) -> None:
    """The simulator's matrices are row-padded views (cache-friendly strides); stepping contiguous copies of them
    gives the same numbers bit for bit."""
    rows = cohort_2000.iloc[np.arange(n) % len(cohort_2000)].reset_index(drop=True)
    sim = PatientSimulator(rows, seed=3)
    P, S, K, keys = sim.kernel_arrays()
    assert P.shape[1] == S.shape[1] == n
    if n >= 64:
        assert (P.strides[0] // 64) % 2 == 1 and (S.strides[0] // 64) % 2 == 1
    P2, S2 = P.copy(), S.copy()  # contiguous copies (never the same memory)
    rng = np.random.default_rng(4)
    for _ in range(3):
        load, sessions, delivery = rng.uniform(0, 1.2, n), rng.integers(0, 6, n).astype(float), rng.integers(0, 3, n)
        week = sim.step_week(load, sessions, delivery)
        out = np.empty((len(Out), n))
        assert kernel.step_week(P2, S2, K, keys, load, sessions, delivery.astype(float), out) == 0
        assert np.array_equal(sim.kernel_arrays()[1], S2)
        assert np.array_equal(week.pain, out[Out.pain]) and np.array_equal(week.function, out[Out.function])
    copy = pickle.loads(pickle.dumps(sim))
    assert copy.kernel_arrays()[1].strides == S.strides and np.array_equal(copy.kernel_arrays()[1], S2)


def test_replacements_waiting_in_the_table_land_in_order(cohort: pd.DataFrame) -> None:
    """Many replacements (overlapping positions, everyone at once, owned arrays, a mapping without the optional
    columns) read back as if each had been written at once: the latest row of each position wins."""
    sim = PatientSimulator(cohort.iloc[:30], seed=0)
    eager = PatientSimulator(cohort.iloc[:30], seed=0)
    rng = np.random.default_rng(8)
    for k in range(150):  # past the flush threshold, twice
        index = np.sort(rng.choice(30, size=int(rng.integers(1, 6)), replace=False))
        if k in (40, 100):
            index = np.arange(30)  # everyone: the rows still waiting are overwritten
        rows = make_cohort("knee_oa", len(index), seed=1000 + k)
        columns = _columns(rows)
        if k % 7 == 3:
            columns = {name: columns[name] for name in (*PARAM_COLUMNS, "adherence_class", "patient_id")}
        keys = rng.integers(0, 2**63, len(index)).astype(np.uint64)
        sim.replace(index, columns, keys, owned=k % 2 == 0)
        eager.replace(index, columns, keys)
        eager.cohort  # noqa: B018 - written into the table at once
    pd.testing.assert_frame_equal(sim.cohort, eager.cohort)
