"""Property-based tests (hypothesis) of the Gymnasium envs and :class:`PatientVecEnv`.

Both registered ids (``gym.make``, so Gymnasium's passive env checker runs too), every condition, every split
including ``ood``, every modality, episode lengths 1-52 weeks; patients drawn from the split's prior by the
seed or given as cohort rows whose parameters sit at the edges of what the prior can produce; any valid action
sequence: Box actions whose components are drawn from the whole of ``[-1, 1]`` *and* from its boundary and
decision values (-1, 1, 0, the delivery thresholds +-1/3 and the float32 values either side of them, the
session rounding (near-)ties), any move index of the discrete env; episodes stopped mid-way, run past their end
(reset and continued) or ended by a dropout. After every reset and step:

* the observation is a finite float32 vector in ``observation_space`` (``space.contains``);
* the reward is a finite float, the sum of the named components, each in its documented range; the cost is
  0 or 1 in a week in care, and a dropout's week adds one for the event and one per remaining week; ``terminated``/
  ``truncated`` are bools that follow the dropout and the horizon;
* every number in ``info`` (nested dicts and lists included) is finite; true pain 0-10, function 0-100,
  latent state in range; the prescription follows the action contract;
* nothing warns (every warning is an error inside the properties);
* reproducibility: the same seed and actions give identical observations, rewards and infos; different
  seeds give different patients; ``PatientVecEnv`` (seeded SB3-style, auto-resetting) gives env ``i`` exactly
  the trajectory of a single env seeded ``s + i``.

``MAX_EXAMPLES`` hypothesis examples per property (``derandomize=True``: the same examples on every run).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import adaptrx  # noqa: F401  (registers the env ids)
from adaptrx.envs import COMPONENTS, ENV_IDS, MOVES, PatientVecEnv
from adaptrx.envs.actions import LOAD_MAX, LOAD_MIN
from adaptrx.envs.features import FEATURE_INDEX
from adaptrx.patient import MODALITIES, SPLITS, ModelConstants, conditions
from adaptrx.patient.cohort import ADHERENCE_CLASSES, _prepared
from adaptrx.patient.simulator import PatientState

#: Hypothesis examples per property.
MAX_EXAMPLES = 150

SETTINGS = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

ENV_ID_LIST: tuple[str, ...] = tuple(ENV_IDS)
CONTINUOUS, DISCRETE = ENV_ID_LIST
CONDITIONS: tuple[str, ...] = tuple(conditions())
MODALITY_NAMES: tuple[str, ...] = tuple(sorted(MODALITIES))
STATE_FIELDS = frozenset(f.name for f in PatientState.__dataclass_fields__.values())
K = ModelConstants()
W = {"pain": 1.0, "function": 2.0, "flare": 0.1, "supervision": 0.01, "remote": 0.005,
     "dropout": 5.0}  # RewardWeights defaults
TOL = 1e-9
#: Copula uniforms are clipped to this range when the prior is sampled: the marginals there are its extremes.
U_LOW, U_HIGH = 1e-12, 1 - 1e-12

# ------------------------------------------------------------------------------------------ actions

_THIRD = np.float32(1 / 3)
#: Boundary and decision values of a Box action component: the bounds, hold, the delivery thresholds and the
#: float32 values next to them, the (float32 near-)ties of round(2.5 + 2.5 a[1]).
EDGE_COMPONENTS: tuple[float, ...] = tuple(float(v) for v in (
    -1.0, 1.0, 0.0, _THIRD, -_THIRD, np.nextafter(_THIRD, np.float32(1)), np.nextafter(_THIRD, np.float32(0)),
    np.nextafter(-_THIRD, np.float32(-1)), np.nextafter(-_THIRD, np.float32(0)),
    np.float32(-0.8), np.float32(-0.4), np.float32(0.4), np.float32(0.8)))
COMPONENT = st.one_of(st.sampled_from(EDGE_COMPONENTS), st.floats(-1.0, 1.0, width=32))
BOX_ACTION = st.tuples(COMPONENT, COMPONENT, COMPONENT).map(lambda a: np.array(a, dtype=np.float32))
MOVE = st.integers(0, len(MOVES) - 1)


# ------------------------------------------------------------------------------------------ patients


@st.composite
def edge_rows(draw: st.DrawFn, condition: str, split: str) -> dict[str, Any]:
    """A cohort row of the split's prior whose parameters are each its producible minimum, maximum or a value
    of the marginal (``options={"patient": row}``)."""
    prior, names, _, marginals = _prepared(condition, split)
    u = np.array([[draw(st.one_of(st.sampled_from((U_LOW, U_HIGH)), st.floats(U_LOW, U_HIGH))) for _ in names]])
    values = marginals.values(u)[0]
    row: dict[str, Any] = {"patient_id": f"edge-{condition}-{split}", "condition": condition, "split": split,
                           "sex": draw(st.sampled_from(sorted(prior["categorical"]["sex"]))),
                           "adherence_class": draw(st.sampled_from(ADHERENCE_CLASSES))}
    row.update({name: float(v) for name, v in zip(names, values, strict=True)})
    return row


@st.composite
def scenarios(draw: st.DrawFn, env_id: str | None = None) -> dict[str, Any]:
    """An env id and its keyword arguments, a seed, an optional edge patient, an action sequence (up to 60
    weeks: it may run past the episode) and an optional step at which the episode is abandoned for a new one."""
    env_id = draw(st.sampled_from(ENV_ID_LIST)) if env_id is None else env_id
    condition, split = draw(st.sampled_from(CONDITIONS)), draw(st.sampled_from(SPLITS))
    kwargs = {"condition": condition, "split": split, "weeks": draw(st.integers(1, 52)),
              "modality": draw(st.sampled_from(MODALITY_NAMES))}
    action = MOVE if env_id == DISCRETE else BOX_ACTION
    steps = draw(st.integers(1, 60))
    actions = draw(st.lists(action, min_size=steps, max_size=steps))
    return {"env_id": env_id, "kwargs": kwargs, "seed": draw(st.integers(0, 2**32)),
            "row": draw(st.one_of(st.none(), edge_rows(condition, split))),
            "stop": draw(st.one_of(st.none(), st.integers(1, len(actions)))), "actions": actions}


# --------------------------------------------------------------------------------------- invariants


def finite_numbers(value: Any, path: str = "info") -> None:
    """Every number in a (nested) info value is finite; strings, bools and None pass."""
    if value is None or isinstance(value, str | bool | np.bool_):
        return
    if isinstance(value, int | float | np.number):
        assert math.isfinite(value), f"{path}: {value}"
    elif isinstance(value, Mapping):  # dicts, and PatientVecEnv's lazy StepInfo mappings
        for key, item in value.items():
            finite_numbers(item, f"{path}.{key}")
    elif isinstance(value, list | tuple | np.ndarray):
        for j, item in enumerate(value):
            finite_numbers(item, f"{path}[{j}]")
    else:
        raise AssertionError(f"{path}: unexpected type {type(value).__name__}")


def between(x: float, low: float, high: float, name: str) -> None:
    assert low - TOL <= x <= high + TOL, f"{name}: {x} out of [{low}, {high}]"


def check_obs(space: gym.spaces.Box, obs: Any) -> None:
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32 and obs.shape == space.shape
    assert np.isfinite(obs).all(), obs
    assert space.contains(obs), obs[(obs < space.low) | (obs > space.high)]


def check_reset(space: gym.spaces.Box, obs: np.ndarray, info: dict[str, Any], row: dict[str, Any] | None) -> None:
    check_obs(space, obs)
    finite_numbers(info)
    assert info["week"] == 0
    intake = info["intake"]
    between(intake["pain"], 0, 10, "intake.pain")
    between(intake["sensitization_score"], 0, 100, "intake.sensitization_score")
    between(intake["fear_score"], 11, 44, "intake.fear_score")
    between(intake["function"], 0, 100, "intake.function")
    between(intake["preferred_sessions"], 1, 5, "intake.preferred_sessions")
    if row is not None:
        assert info["patient"] == row
    assert obs[FEATURE_INDEX["progress"]] == 0.0


def check_state(state: dict[str, float], week: int) -> None:
    assert set(state) == STATE_FIELDS
    for name in ("fear", "motivation", "habit"):
        between(state[name], 0.0, 1.0, f"state.{name}")
    for name in ("pain", "pain_recent"):
        between(state[name], 0.0, 10.0, f"state.{name}")
    for name in ("acute_load", "chronic_load"):
        between(state[name], 0.0, LOAD_MAX, f"state.{name}")
    between(state["session_rate"], 0.0, 7.0, "state.session_rate")
    between(state["capacity"], 1.0, 2.0, "state.capacity")  # from 1 up to the ceiling (<= 2 in every prior)
    for name in ("fatigue", "irritation", "demand_irritation", "sensitization", "context", "expected_increase"):
        between(state[name], 0.0, math.inf, f"state.{name}")
    assert state["in_flare"] in (0.0, 1.0) and state["dropped_out"] in (0.0, 1.0)
    # flare weeks fading with tau 8 weeks: at most one a week, so at most 1 / (1 - exp(-1/8)) ~ 8.5
    between(state["flare_memory"], 0.0, 1.0 / (1.0 - math.exp(-1.0 / 8.0)), "state.flare_memory")
    assert state["week"] == week and state["day"] == 1 + 7 * week


def expected_prescription(env_id: str, action: Any, last: dict[str, float]) -> dict[str, float] | None:
    """This week's prescription by the action contract (continuous: ``DESIGN.md`` 3; discrete: the move's load
    factor and rest flag), as far as it follows from the last prescription."""
    if env_id == CONTINUOUS:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        delivery = 2 if a[2] > 1 / 3 else (1 if a[2] > -1 / 3 else 0)
        return {"load": min(max(last["load"] * (1 + 0.5 * a[0]), LOAD_MIN), LOAD_MAX),
                "sessions": int(np.rint(2.5 + 2.5 * a[1])), "delivery": delivery}
    move = MOVES[int(action)]
    return {"load": min(max(last["load"] * move.load_factor, LOAD_MIN), LOAD_MAX),
            "sessions": 0 if move.rest else None,
            "delivery": last["delivery"] if move.delivery is None else move.delivery}


def check_step(env_id: str, weeks: int, week: int, action: Any, last: dict[str, float], space: gym.spaces.Box,
               obs: Any, reward: Any, terminated: Any, truncated: Any, info: dict[str, Any]) -> None:
    """One step's return values against the env contract (``DESIGN.md`` 3, :mod:`adaptrx.envs.reward`)."""
    check_obs(space, obs)
    assert type(reward) is float and math.isfinite(reward), reward
    assert type(terminated) is bool and type(truncated) is bool and not (terminated and truncated)
    finite_numbers(info)
    assert info["week"] == week
    assert math.isclose(obs[FEATURE_INDEX["progress"]], week / weeks, rel_tol=1e-6)
    between(info["pain"], 0.0, 10.0, "pain")
    between(info["function"], 0.0, 100.0, "function")
    assert type(info["flare"]) is bool and type(info["dropped_out"]) is bool
    assert 0 <= info["sessions_attended"] <= info["sessions_prescribed"] <= 5
    week_cost = info["cost"] - (1 + weeks - week if terminated else 0)  # a dropout adds 1 + the remaining weeks
    assert week_cost in (0.0, 1.0) and (week_cost == 1.0 or not info["flare"])
    check_state(info["state"], week)

    rx, want = info["prescription"], expected_prescription(env_id, action, last)
    assert LOAD_MIN <= rx["load"] <= LOAD_MAX and rx["delivery"] in (0, 1, 2) and 0 <= rx["sessions"] <= 5
    assert math.isclose(rx["load"], want["load"], rel_tol=1e-12), (rx, want)
    assert rx["delivery"] == want["delivery"] and rx["sessions"] == info["sessions_prescribed"]
    if want["sessions"] is None:  # a discrete move other than rest: the plan, kept within 1-5
        assert 1 <= rx["sessions"] <= 5, rx
    else:
        assert rx["sessions"] == want["sessions"], (rx, want)

    r = info["rewards"]
    assert tuple(r) == COMPONENTS
    assert math.isclose(reward, sum(r.values()), rel_tol=1e-12, abs_tol=1e-12), (reward, r)
    assert math.isclose(r["pain"], -W["pain"] * info["pain"] / 10, abs_tol=1e-12)
    assert math.isclose(r["function"], W["function"] * info["function"] / 100, abs_tol=1e-12)
    assert r["flare"] == (-W["flare"] if info["flare"] else 0.0)
    assert math.isclose(r["supervision"], -W["supervision"] * info["sessions_attended"] * (rx["delivery"] == 2),
                        abs_tol=1e-12)
    assert r["remote"] == (-W["remote"] if rx["delivery"] == 1 and rx["sessions"] > 0 else 0.0)

    # terminated <=> the patient dropped out this week; truncated <=> the horizon without a dropout
    assert terminated == info["dropped_out"]
    assert truncated == (week >= weeks and not terminated)
    remaining = weeks - week
    if terminated:
        tail = info["pain_after_dropout"]
        assert len(tail) == remaining
        for pain in tail:
            between(pain, 0.0, 10.0, "pain_after_dropout")
        between(r["dropout"], -(W["pain"] + W["flare"]) * remaining - W["dropout"],
                W["function"] * remaining - W["dropout"], "rewards.dropout")
        # the dropout term is the tail's pain, function and flare components minus the dropout weight: what is
        # left after the pain of the reported tail and the weight is its function and flare terms
        rest = r["dropout"] + W["dropout"] - sum(-W["pain"] * p / 10 for p in tail)
        between(rest, -W["flare"] * remaining, W["function"] * remaining, "rewards.dropout - tail pain")
    else:
        assert "pain_after_dropout" not in info and r["dropout"] == 0.0


def rollout(scenario: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run a scenario on a fresh ``gym.make`` env under every invariant (warnings are errors); returns the
    trajectory (reset and step returns) for comparisons."""
    env_id, kwargs, row = scenario["env_id"], scenario["kwargs"], scenario["row"]
    options = None if row is None else {"patient": row}
    weeks = kwargs["weeks"]
    trace: list[tuple[Any, ...]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, **kwargs)
        space = env.observation_space

        def reset(**seed: int) -> dict[str, float]:
            obs, info = env.reset(options=options, **seed)
            check_reset(space, obs, info, row)
            trace.append(("reset", obs, info))
            return {"load": 0.3, "delivery": 0}  # initial_load and initial_delivery (defaults)

        last, week = reset(seed=scenario["seed"]), 0
        for t, action in enumerate(scenario["actions"]):
            if t == scenario["stop"]:  # abandon the episode mid-way
                last, week = reset(), 0
            obs, reward, terminated, truncated, info = env.step(action)
            week += 1
            check_step(env_id, weeks, week, action, last, space, obs, reward, terminated, truncated, info)
            trace.append(("step", obs, reward, terminated, truncated, info))
            last = info["prescription"]
            if terminated or truncated:
                event("dropout" if terminated else "horizon reached")
                last, week = reset(), 0
        env.close()
    event(f"{scenario['env_id']}, {'edge patient' if row else 'seeded patient'}"
          f"{', stopped mid-way' if scenario['stop'] is not None else ''}")
    return trace


def assert_same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x[0] == y[0]
        np.testing.assert_array_equal(x[1], y[1])
        assert x[2:] == y[2:]  # rewards, flags and infos (no NaN anywhere, so == is exact equality)


# ------------------------------------------------------------------------------------------- tests


@SETTINGS
@given(scenario=scenarios())
def test_any_valid_action_sequence_keeps_every_return_in_its_space_and_range(scenario: dict[str, Any]) -> None:
    rollout(scenario)


@SETTINGS
@given(scenario=scenarios(), other=st.integers(0, 2**32))
def test_same_seed_and_actions_give_the_same_trajectory(scenario: dict[str, Any], other: int) -> None:
    assert_same(rollout(scenario), rollout(scenario))
    if scenario["row"] is None and other != scenario["seed"]:  # different seeds: different patients
        ids = [gym.make(scenario["env_id"], **scenario["kwargs"]).reset(seed=s)[1]["patient_id"]
               for s in (scenario["seed"], other)]
        assert ids[0] != ids[1]


@st.composite
def vec_scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    discrete = draw(st.booleans())
    steps = draw(st.integers(1, 40))
    element = (hnp.arrays(np.int64, (n,), elements=MOVE) if discrete
               else hnp.arrays(np.float32, (n, 3), elements=COMPONENT))
    return {"n": n, "discrete": discrete, "seed": draw(st.integers(0, 2**31)),
            "kwargs": {"condition": draw(st.sampled_from(CONDITIONS)), "split": draw(st.sampled_from(SPLITS)),
                       "weeks": draw(st.integers(1, 16)), "modality": draw(st.sampled_from(MODALITY_NAMES))},
            "actions": draw(st.lists(element, min_size=steps, max_size=steps))}


@pytest.mark.slow
@SETTINGS
@given(scenario=vec_scenarios())
def test_vec_env_stays_in_range_and_replays_the_single_env(scenario: dict[str, Any]) -> None:
    """PatientVecEnv: every row of every return in range; env ``i`` (after ``seed(s)``, auto-resetting) meets
    exactly the observations, rewards and infos of a single env reset with seed ``s + i``."""
    n, kwargs = scenario["n"], scenario["kwargs"]
    env_id = DISCRETE if scenario["discrete"] else CONTINUOUS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vec = PatientVecEnv(n, discrete=scenario["discrete"], **kwargs)
        singles = [gym.make(env_id, **kwargs) for _ in range(n)]
        space = vec.observation_space
        vec.seed(scenario["seed"])
        obs = vec.reset()
        assert obs.shape == (n, *space.shape) and obs.dtype == np.float32
        for i, env in enumerate(singles):
            check_obs(space, obs[i])
            np.testing.assert_array_equal(obs[i], env.reset(seed=scenario["seed"] + i)[0])
        for actions in scenario["actions"]:
            obs, rewards, dones, infos = vec.step(actions)
            assert obs.shape == (n, *space.shape) and obs.dtype == np.float32
            assert rewards.shape == (n,) and rewards.dtype == np.float32 and np.isfinite(rewards).all()
            assert dones.shape == (n,) and dones.dtype == np.bool_ and len(infos) == n
            if dones.any():
                event("auto-reset")
            for i, env in enumerate(singles):
                check_obs(space, obs[i])
                finite_numbers(infos[i])
                o, r, terminated, truncated, info = env.step(actions[i])
                assert rewards[i] == np.float32(r)
                assert dones[i] == (terminated or truncated)
                vec_info = dict(infos[i])
                if dones[i]:
                    final = vec_info.pop("terminal_observation")
                    check_obs(space, final)
                    np.testing.assert_array_equal(final, o)
                    assert vec_info.pop("TimeLimit.truncated") is truncated
                    o = env.reset()[0]
                assert vec_info == info
                np.testing.assert_array_equal(obs[i], o)
