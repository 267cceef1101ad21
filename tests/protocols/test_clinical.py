"""The clinical protocol library: each protocol's defining rule on scripted observations, memory, configs, envs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor

import adaptrx  # noqa: F401  (registers the envs)
from adaptrx.envs.actions import decode_continuous
from adaptrx.envs.features import FEATURE_INDEX, FEATURE_NAMES, SCALES
from adaptrx.envs.vec_env import PatientVecEnv
from adaptrx.patient import HOME_ALONE, REMOTE, SUPERVISED
from adaptrx.protocols.base import Protocol
from adaptrx.protocols.clinical import PROTOCOLS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "policy" / "protocol"

#: A typical intake (clinical units); every other feature is 0 unless given.
_INTAKE = {"intake_age": 62.0, "intake_pain": 5.0, "intake_sensitization": 30.0, "intake_fear": 24.0,
           "intake_preferred_sessions": 3.0, "intake_function": 60.0, "diary_pain": 5.0, "function": 60.0,
           "capacity_test": 1.0, "load": 0.3}


def obs(**units: float) -> np.ndarray:
    """A float32 observation from clinical-unit values (feature name -> value), as the env would scale it."""
    x = np.zeros(len(FEATURE_NAMES), dtype=np.float64)
    for name, value in {**_INTAKE, **units}.items():
        x[FEATURE_INDEX[name]] = value
    return (x / SCALES).astype(np.float32)


def week_obs(week: int, load: float, pain: float = 0.0, morning: float = 0.0, rpe: float = 0.0, attended: int = 3,
             prescribed: int = 3, flare: bool = False, weeks: int = 26, **units: float) -> np.ndarray:
    """The observation after ``week`` (>= 1) weeks: last week's reports in clinical units."""
    return obs(progress=week / weeks, load=load, sessions=prescribed, session_pain_max=pain,
               session_pain_mean=pain if attended else 0.0, morning_change=morning if attended else 0.0,
               rpe=rpe if attended else 0.0, attendance=attended / prescribed if prescribed else 0.0,
               sessions_attended=attended, flare_reported=float(flare), **units)


def intake(load: float = 0.3) -> np.ndarray:
    """The first observation of an episode (progress 0)."""
    return obs(progress=0.0, load=load)


def rx(policy: Protocol, o: np.ndarray, **kwargs: Any) -> tuple[float, int, int]:
    """The prescription ``(load, sessions, delivery code)`` of one observation, decoded as the env would."""
    action, _ = policy.predict(o, **kwargs)
    assert action.shape == (3,) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)
    last = o.astype(np.float64)[FEATURE_INDEX["load"]] * SCALES[FEATURE_INDEX["load"]]
    load, sessions, delivery = decode_continuous(action[None], np.array([last]))
    return float(load[0]), int(sessions[0]), int(delivery[0])


def make(name: str, **params: Any) -> Protocol:
    return PROTOCOLS[name](**params)


# ============================================================================ defining behaviour
def test_the_library_has_every_protocol_of_the_design() -> None:
    assert set(PROTOCOLS) == {"none", "attention_control", "constant", "linear", "acsm", "pain_monitoring",
                              "graded_activity", "rpe_autoregulation", "glad", "start_high", "start_low",
                              "aggressive"}
    for name, cls in PROTOCOLS.items():
        assert cls.name == name and issubclass(cls, Protocol) and dataclasses.is_dataclass(cls)
        assert "(" in (cls.__doc__ or "") and any(str(y) in cls.__doc__ for y in range(1990, 2026)), name


def test_none_prescribes_no_sessions_and_holds_the_load() -> None:
    p = make("none")
    assert rx(p, intake(0.3)) == pytest.approx((0.3, 0, HOME_ALONE))
    assert rx(p, week_obs(1, 0.3, pain=8, attended=0, prescribed=0)) == pytest.approx((0.3, 0, HOME_ALONE))


def test_attention_control_is_supervised_at_the_floor_load_then_stops() -> None:
    p = make("attention_control", weeks=4)
    load, sessions, delivery = rx(p, intake(0.3))
    assert (load, sessions, delivery) == (pytest.approx(0.15), 2, SUPERVISED)  # halves toward the floor
    loads = [load]
    for w in range(1, 4):
        load, sessions, delivery = rx(p, week_obs(w, loads[-1], pain=2, attended=2, prescribed=2))
        assert (sessions, delivery) == (2, SUPERVISED)
        loads.append(load)
    assert loads == pytest.approx([0.15, 0.075, 0.05, 0.05])  # the action's minimum, 0.05
    assert rx(p, week_obs(4, 0.05, attended=2, prescribed=2)) == (pytest.approx(0.05), 0, HOME_ALONE)


def test_constant_reaches_and_keeps_its_dose() -> None:
    p = make("constant", delivery="remote")
    assert rx(p, intake(0.3)) == (pytest.approx(0.45), 3, REMOTE)  # +50 %: the action's largest step
    assert rx(p, week_obs(1, 0.45, pain=9, flare=True)) == (pytest.approx(0.5), 3, REMOTE)
    assert rx(p, week_obs(2, 0.5, pain=0)) == (pytest.approx(0.5), 3, REMOTE)


def test_linear_progresses_regardless_of_pain_up_to_its_cap() -> None:
    p = make("linear")
    assert rx(p, intake(0.3)) == (pytest.approx(0.3), 3, HOME_ALONE)
    assert rx(p, week_obs(1, 0.3, pain=9, morning=4, rpe=10, flare=True))[0] == pytest.approx(0.315)
    assert rx(p, week_obs(2, 0.315, attended=0))[0] == pytest.approx(0.33075)
    assert rx(p, week_obs(3, 1.19, pain=9))[0] == pytest.approx(1.2)  # capped
    assert rx(p, week_obs(4, 1.2, pain=0))[0] == pytest.approx(1.2)


def test_linear_reaches_a_distant_start_first() -> None:
    p = make("linear", start=1.0)
    loads = [rx(p, intake(0.3))[0]]
    for w in range(1, 5):
        loads.append(rx(p, week_obs(w, loads[-1]))[0])
    assert loads == pytest.approx([0.45, 0.675, 1.0, 1.05, 1.1025])


def _acsm_after_week(rpe: float, attended: int, prescribed: int = 3) -> float:
    p = make("acsm")
    assert rx(p, intake(0.3)) == (pytest.approx(0.4), 3, HOME_ALONE)
    return rx(p, week_obs(1, 0.4, pain=3, rpe=rpe, attended=attended, prescribed=prescribed))[0]


def test_acsm_progresses_only_when_all_sessions_were_easy() -> None:
    assert _acsm_after_week(rpe=4.0, attended=3) == pytest.approx(0.42)  # +5 %
    assert _acsm_after_week(rpe=6.0, attended=3) == pytest.approx(0.42)  # at the target still counts
    assert _acsm_after_week(rpe=7.5, attended=3) == pytest.approx(0.4)  # hard: hold
    assert _acsm_after_week(rpe=4.0, attended=2) == pytest.approx(0.4)  # a missed session: hold
    assert _acsm_after_week(rpe=0.0, attended=0) == pytest.approx(0.4)  # nothing attended: hold


@pytest.mark.parametrize(
    ("pain", "morning", "flare", "attended", "factor"),
    [
        (1.0, 0.0, False, 3, 1.1),  # low pain, settled: progress
        (2.0, -1.0, False, 3, 1.1),  # at the progression threshold (float32 2.00000003 counts as 2)
        (4.0, 0.0, False, 3, 1.0),  # moderate pain, settled: hold
        (5.0, 0.0, False, 3, 1.0),
        (7.0, 0.0, False, 3, 0.8),  # too much in-session pain: regress 20 %
        (1.0, 1.0, False, 3, 0.8),  # not settled next morning: regress
        (1.0, 0.0, True, 3, 0.8),  # flare reported: regress
        (0.0, 0.0, False, 0, 1.0),  # no sessions attended: hold
    ],
)
def test_pain_monitoring_rule(pain: float, morning: float, flare: bool, attended: int, factor: float) -> None:
    p = make("pain_monitoring")
    assert rx(p, intake(0.3)) == (pytest.approx(0.3), 3, HOME_ALONE)
    load = rx(p, week_obs(1, 0.3, pain=pain, morning=morning, flare=flare, attended=attended))[0]
    assert load == pytest.approx(0.3 * factor)
    load = rx(p, week_obs(2, 0.9, pain=pain, morning=morning, flare=flare, attended=attended))[0]
    assert load == pytest.approx(0.9 * factor)  # relative to the last load


def test_pain_monitoring_reaches_a_distant_start_unless_symptoms_say_otherwise() -> None:
    p = make("pain_monitoring", start=0.6)
    assert rx(p, intake(0.3))[0] == pytest.approx(0.45)
    assert rx(p, week_obs(1, 0.45, pain=4))[0] == pytest.approx(0.6)  # still on the way to the start load
    assert rx(p, week_obs(2, 0.6, pain=1))[0] == pytest.approx(0.66)  # started: the rule applies
    p = make("pain_monitoring", start=0.6)
    rx(p, intake(0.3))
    assert rx(p, week_obs(1, 0.45, pain=8))[0] == pytest.approx(0.36)  # regression ends the start phase
    assert rx(p, week_obs(2, 0.36, pain=4))[0] == pytest.approx(0.36)


def test_graded_activity_quota_rises_by_fixed_steps_regardless_of_pain() -> None:
    p = make("graded_activity")
    assert rx(p, intake(0.3)) == (pytest.approx(0.3), 3, HOME_ALONE)  # baseline week at the initial load
    assert rx(p, week_obs(1, 0.3, pain=4))[0] == pytest.approx(0.3)  # tolerated: the quota starts there
    loads = [0.3]
    for w, (pain, flare) in enumerate([(9, True), (0, False), (8, False)], start=2):
        loads.append(rx(p, week_obs(w, loads[-1], pain=pain, flare=flare, morning=3))[0])
    assert np.diff(loads) == pytest.approx([0.05, 0.05, 0.05])  # time-contingent, absolute increments


def test_graded_activity_lowers_an_untolerated_baseline_and_caps_the_quota() -> None:
    p = make("graded_activity", cap=0.35)
    rx(p, intake(0.4))
    assert rx(p, week_obs(1, 0.4, pain=7))[0] == pytest.approx(0.32)  # 0.8 x the baseline load
    assert rx(p, week_obs(2, 0.32, pain=0))[0] == pytest.approx(0.35)  # +0.05, capped at 0.35
    assert rx(p, week_obs(3, 0.35, pain=0))[0] == pytest.approx(0.35)


@pytest.mark.parametrize(("rpe", "factor"), [(3.0, 1.1), (5.0, 1.0), (6.0, 1.0), (7.0, 1.0), (8.5, 0.9)])
def test_rpe_autoregulation_keeps_rpe_in_its_window(rpe: float, factor: float) -> None:
    p = make("rpe_autoregulation")
    assert rx(p, intake(0.3)) == (pytest.approx(0.4), 3, HOME_ALONE)
    assert rx(p, week_obs(1, 0.4, rpe=rpe, pain=3))[0] == pytest.approx(0.4 * factor)


def test_rpe_autoregulation_holds_without_sessions() -> None:
    p = make("rpe_autoregulation", start=0.3)
    rx(p, intake(0.3))
    assert rx(p, week_obs(1, 0.3, attended=0))[0] == pytest.approx(0.3)


def _glad_run(p: Protocol, weeks: int, attended: int, pain: float) -> list[tuple[float, int, int]]:
    """GLA:D over ``weeks`` weeks where the patient attends ``min(attended, prescribed)`` sessions each week."""
    out = [rx(p, intake(0.3))]
    for w in range(1, weeks):
        load, sessions, _ = out[-1]
        out.append(rx(p, week_obs(w, load, pain=pain, attended=min(attended, sessions), prescribed=sessions)))
    return out


def test_glad_moves_home_after_twelve_attended_sessions_and_progresses_levels() -> None:
    out = _glad_run(make("glad"), weeks=9, attended=2, pain=3)
    assert [o[2] for o in out[:6]] == [SUPERVISED] * 6 and [o[1] for o in out[:6]] == [2] * 6
    assert [o[0] for o in out[:6]] == pytest.approx([0.4, 0.4, 0.5, 0.5, 0.6, 0.6])  # a level every 2 weeks
    assert out[6:] == [(pytest.approx(0.6), 2, HOME_ALONE)] * 3  # 12 attended: home, at the last level


def test_glad_holds_the_level_when_pain_exceeds_five() -> None:
    out = _glad_run(make("glad"), weeks=6, attended=2, pain=6)
    assert [o[0] for o in out] == pytest.approx([0.4] * 6)


def test_glad_counts_attended_sessions_not_prescribed_ones() -> None:
    p = make("glad", max_supervised_weeks=20)
    out = _glad_run(p, weeks=14, attended=1, pain=2)
    assert [o[2] for o in out[:12]] == [SUPERVISED] * 12  # one attended a week: 12 weeks supervised
    assert out[12][1:] == (2, HOME_ALONE)
    p = make("glad")
    out = _glad_run(p, weeks=10, attended=1, pain=2)  # ... unless the supervised phase runs out (8 weeks)
    assert [o[2] for o in out] == [SUPERVISED] * 8 + [HOME_ALONE] * 2


def test_glad_prescribes_only_the_missing_supervised_sessions() -> None:
    p = make("glad", sessions=3, supervised_sessions=8)
    out = _glad_run(p, weeks=4, attended=3, pain=2)
    assert [(o[1], o[2]) for o in out] == [(3, SUPERVISED), (3, SUPERVISED), (2, SUPERVISED), (2, HOME_ALONE)]


def test_start_high_and_start_low_target_a_fraction_of_the_capacity_test() -> None:
    high, low = make("start_high"), make("start_low")
    assert rx(high, week_obs(4, 0.7, capacity_test=1.2, pain=6))[0] == pytest.approx(0.8 * 1.2)
    assert rx(low, week_obs(4, 0.5, capacity_test=1.2, pain=0))[0] == pytest.approx(0.35 * 1.2)
    assert rx(high, intake(0.3)) == (pytest.approx(0.45), 3, HOME_ALONE)  # 0.8 is beyond one week's reach
    assert rx(make("start_high", fraction=0.9, sessions=2, delivery="supervised"),
              week_obs(4, 1.0, capacity_test=1.0)) == (pytest.approx(0.9), 2, SUPERVISED)


def test_aggressive_jumps_fifty_percent_a_week_with_five_sessions_from_week_one() -> None:
    p = make("aggressive")
    out = [rx(p, intake(0.3))]
    for w in range(1, 5):
        out.append(rx(p, week_obs(w, out[-1][0], pain=8, flare=w == 2, attended=5, prescribed=5)))
    assert out[0] == (pytest.approx(0.45), 5, HOME_ALONE)
    assert [o[0] for o in out] == pytest.approx([0.45, 0.675, 1.0125, 1.2, 1.2])
    assert all(o[1] == 5 for o in out)


# ============================================================================ memory and batching
def test_memory_resets_on_episode_start_and_on_a_first_observation() -> None:
    p = make("glad")
    out = _glad_run(p, weeks=8, attended=2, pain=3)
    assert out[-1][1:] == (2, HOME_ALONE)
    after = week_obs(8, 0.6, pain=3, attended=2, prescribed=2)
    assert rx(p, after)[1:] == (2, HOME_ALONE)
    assert rx(p, after, episode_start=np.array([True])) == (pytest.approx(0.4), 2, SUPERVISED)  # a new episode
    _glad_run(p, weeks=8, attended=2, pain=3)
    assert rx(p, intake(0.6)) == (pytest.approx(0.4), 2, SUPERVISED)  # progress 0: a new episode too
    g = make("graded_activity")
    rx(g, intake(0.3))
    rx(g, week_obs(1, 0.3, pain=2))
    assert rx(g, week_obs(2, 0.3))[0] == pytest.approx(0.35)
    assert rx(g, intake(0.3))[0] == pytest.approx(0.3)  # baseline again, the quota is forgotten
    g.reset()
    assert rx(g, week_obs(1, 0.3, pain=2))[0] == pytest.approx(0.3)


def _random_episodes(rng: np.random.Generator, n: int, steps: int, weeks: int = 6) -> np.ndarray:
    """Observations ``(steps, n, n_features)`` of random reports, with episodes restarting every ``weeks``."""
    out = np.empty((steps, n, len(FEATURE_NAMES)), dtype=np.float32)
    for t in range(steps):
        for i in range(n):
            w = (t + i) % weeks
            prescribed = int(rng.integers(0, 6))
            attended = int(rng.integers(0, prescribed + 1))
            out[t, i] = week_obs(w, load=float(rng.uniform(0.05, 1.5)), pain=float(rng.integers(0, 11)),
                                 morning=float(rng.integers(-2, 3)), rpe=float(rng.integers(0, 11)),
                                 attended=attended, prescribed=prescribed, flare=bool(rng.random() < 0.2),
                                 weeks=weeks, capacity_test=float(rng.uniform(0.8, 1.6)))
    return out


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_batch_predict_equals_row_by_row(name: str) -> None:
    n, steps = 5, 14
    episodes = _random_episodes(np.random.default_rng(7), n, steps)
    batch, rows = make(name), [make(name) for _ in range(n)]
    for t in range(steps):
        actions, state = batch.predict(episodes[t], state="s", episode_start=np.zeros(n, dtype=bool))
        assert state == "s" and actions.shape == (n, 3) and actions.dtype == np.float32
        for i in range(n):
            np.testing.assert_array_equal(actions[i], rows[i].predict(episodes[t, i])[0])


# ============================================================================ parameters and configs
@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("attention_control", {"contacts": 0}, "contacts"),
        ("attention_control", {"delivery": "clinic"}, "delivery"),
        ("constant", {"load": 2.0}, "load"),
        ("constant", {"sessions": 6}, "sessions"),
        ("constant", {"sessions": 2.5}, "sessions"),
        ("linear", {"increase": -0.1}, "increase"),
        ("linear", {"start": 0.8, "cap": 0.5}, "cap"),
        ("acsm", {"increase": 0.2}, "increase"),
        ("acsm", {"rpe_target": 11}, "rpe_target"),
        ("pain_monitoring", {"progress_pain": 6.0}, "hold_pain"),
        ("pain_monitoring", {"regress": "a lot"}, "regress"),
        ("graded_activity", {"baseline_weeks": -1}, "baseline_weeks"),
        ("graded_activity", {"start_fraction": 0.0}, "start_fraction"),
        ("rpe_autoregulation", {"rpe_low": 8.0}, "rpe_high"),
        ("rpe_autoregulation", {"step": True}, "step"),
        ("glad", {"levels": ()}, "levels"),
        ("glad", {"levels": (0.4, 3.0)}, "levels"),
        ("glad", {"supervised_sessions": 0}, "supervised_sessions"),
        ("glad", {"home_delivery": "gym"}, "home_delivery"),
        ("start_high", {"fraction": 0.5}, "fraction"),
        ("start_low", {"fraction": 0.8}, "fraction"),
        ("aggressive", {"delivery": None}, "delivery"),
    ],
)
def test_bad_parameters_raise_naming_the_field(name: str, params: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        make(name, **params)


def test_every_protocol_has_a_config_with_its_fields_and_defaults() -> None:
    files = {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    assert set(PROTOCOLS) <= files
    for name, cls in PROTOCOLS.items():
        cfg = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
        assert cfg.name == name
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(cfg.keys()) == fields | {"name"}, name
        params = {k: v for k, v in cfg.items() if k != "name"}
        built = cls(**params)  # OmegaConf values (ListConfig included) build the class
        assert built == cls(), f"{name}: the config's values differ from the dataclass defaults"
        plain = OmegaConf.to_container(cfg)
        assert cls(**{k: v for k, v in plain.items() if k != "name"}).params() == cls().params()


# ============================================================================ integration with the envs
@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocols_run_in_the_envs(name: str) -> None:
    policy = make(name)
    env = Monitor(gym.make("AdaptRx/Progression-v0", weeks=8))
    env.reset(seed=3)
    rewards, lengths = evaluate_policy(policy, env, n_eval_episodes=2, return_episode_rewards=True)
    assert len(rewards) == 2 and np.isfinite(rewards).all() and all(1 <= n <= 8 for n in lengths)
    env.close()
    vec = VecMonitor(PatientVecEnv(num_envs=4, weeks=8))
    vec.seed(11)
    mean, std = evaluate_policy(policy, vec, n_eval_episodes=4)
    assert np.isfinite(mean) and np.isfinite(std)
    vec.close()
