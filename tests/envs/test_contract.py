"""The env contract of DESIGN.md section 3: action mapping, observation, info, reward, dropout, rendering."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import adaptrx  # noqa: F401
from adaptrx.envs import COMPONENTS, FEATURE_NAMES, MOVE_NAMES, decode_continuous, encode_continuous, to_units
from adaptrx.envs.episode_engine import patient_from_seed
from adaptrx.envs.features import FEATURES
from adaptrx.patient import PatientSimulator, make_cohort

INFO_KEYS = {"pain", "sessions_prescribed", "sessions_attended", "flare", "dropped_out", "rewards", "cost", "state"}


def test_continuous_action_mapping_is_the_contract() -> None:
    last = np.array([0.3, 0.3, 0.3, 1.2, 0.06, 0.3])
    a = np.array([[0, 0, 0], [-1, -1, -1], [1, 1, 1], [1, 0.2, 0.34], [-1, 0.19, -0.34], [0.5, -0.61, 0.3333]])
    load, sessions, delivery = decode_continuous(a, last)
    np.testing.assert_allclose(load, [0.3, 0.15, 0.45, 1.5, 0.05, 0.375])
    # round(2.5 + 2.5 a1): 2.5 -> 2 (banker's), 0 -> 0, 5 -> 5, 3.0 -> 3, 2.975 -> 3, 0.975 -> 1
    np.testing.assert_array_equal(sessions, [2, 0, 5, 3, 3, 1])
    np.testing.assert_array_equal(delivery, [1, 0, 2, 2, 0, 1])
    with pytest.raises(ValueError, match="action"):
        decode_continuous(np.array([[np.nan, 0, 0]]), last[:1])
    for factor, n, d in [(0.5, 0, 0), (1.0, 3, 1), (1.5, 5, 2), (1.2, 2, 2)]:
        load, sessions, delivery = decode_continuous(encode_continuous(factor, n, d)[None], np.array([0.4]))
        assert load[0] == pytest.approx(0.4 * factor) and sessions[0] == n and delivery[0] == d


def test_first_week_starts_from_initial_load_and_load_carries_over_rest_weeks() -> None:
    env = gym.make("AdaptRx/Progression-v0", initial_load=0.4)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.5, 0.2, -1], dtype=np.float32))
    assert info["prescription"] == {"load": pytest.approx(0.5), "sessions": 3, "delivery": 0}
    _, _, _, _, info = env.step(np.array([0.0, -1.0, -1], dtype=np.float32))  # no sessions, load held
    assert info["sessions_prescribed"] == 0 and info["sessions_attended"] == 0
    _, _, _, _, info = env.step(np.array([-1.0, 0.2, 1], dtype=np.float32))
    assert info["prescription"]["load"] == pytest.approx(0.25) and info["prescription"]["delivery"] == 2


def test_discrete_moves_are_named_and_change_the_plan() -> None:
    env = gym.make("AdaptRx/ProgressionDiscrete-v0")
    assert env.action_space.n == len(MOVE_NAMES) and "hold" in MOVE_NAMES and "rest" in MOVE_NAMES
    env.reset(seed=0)
    moves = {name: i for i, name in enumerate(MOVE_NAMES)}
    seq = [("progress_20", 0.36, 3, 0), ("rest", 0.36, 0, 0), ("add_session", 0.36, 4, 0),
           ("supervise", 0.36, 4, 2), ("regress_50", 0.18, 4, 2), ("hold", 0.18, 4, 2)]
    for name, load, sessions, delivery in seq:
        *_, info = env.step(moves[name])
        assert info["prescription"] == {"load": pytest.approx(load), "sessions": sessions, "delivery": delivery}, name
    with pytest.raises(ValueError, match="action"):
        env.unwrapped.step(len(MOVE_NAMES))


def test_observation_is_clinic_data_in_documented_ranges() -> None:
    env = gym.make("AdaptRx/Progression-v0")
    assert env.unwrapped.feature_names == FEATURE_NAMES and len(FEATURE_NAMES) == env.observation_space.shape[0]
    obs, info = env.reset(seed=4)
    units = to_units(obs)
    assert units["intake_age"] == pytest.approx(info["patient"]["age"], abs=1e-4)
    assert units["intake_pain"] == pytest.approx(info["intake"]["pain"], abs=1e-5)
    assert units["load"] == pytest.approx(0.3, abs=1e-6) and units["progress"] == 0.0
    latent = set(info["patient"]) - {"age", "preferred_sessions"}
    assert not latent & {name.split("_lag")[0] for name in FEATURE_NAMES}
    env.action_space.seed(0)
    for week in range(1, 27):
        obs, _, term, trunc, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        units = to_units(obs)
        assert units["progress"] == pytest.approx(week / 26, abs=1e-6)
        assert units["sessions_attended"] == pytest.approx(info["sessions_attended"], abs=1e-5)
        assert units["sessions"] == pytest.approx(info["sessions_prescribed"], abs=1e-5)
        if term or trunc:
            break


def test_info_keys_reward_components_and_cost() -> None:
    env = gym.make("AdaptRx/Progression-v0")
    env.reset(seed=8)
    rng = np.random.default_rng(0)
    for _ in range(26):
        action = rng.uniform(-1, 1, 3).astype(np.float32)
        _, reward, term, trunc, info = env.step(action)
        assert INFO_KEYS <= set(info)
        assert set(info["rewards"]) == set(COMPONENTS)
        assert sum(info["rewards"].values()) == pytest.approx(reward, abs=1e-12)
        assert info["rewards"]["pain"] == pytest.approx(-info["pain"] / 10)
        assert info["rewards"]["function"] == pytest.approx(2.0 * info["function"] / 100)
        assert info["rewards"]["flare"] == (-0.1 if info["flare"] else 0.0)
        supervised = info["prescription"]["delivery"] == 2
        assert info["rewards"]["supervision"] == pytest.approx(-0.01 * info["sessions_attended"] * supervised)
        assert info["cost"] in (0.0, 1.0)
        if info["flare"]:
            assert info["cost"] == 1.0
        assert {"capacity", "sensitization", "fear"} <= set(info["state"])
        assert 0 <= info["sessions_attended"] <= info["sessions_prescribed"] <= 5
        if term or trunc:
            break


def test_reward_weights_are_configurable_and_validated() -> None:
    env = gym.make("AdaptRx/Progression-v0", reward={"function": 0.0, "pain": 2.0})
    env.reset(seed=1)
    *_, info = env.step(np.zeros(3, dtype=np.float32))
    assert info["rewards"]["function"] == 0.0
    assert info["rewards"]["pain"] == pytest.approx(-2.0 * info["pain"] / 10)
    with pytest.raises(ValueError, match="reward: unknown weight"):
        gym.make("AdaptRx/Progression-v0", reward={"pian": 1.0})
    with pytest.raises(ValueError, match=r"reward\.flare"):
        gym.make("AdaptRx/Progression-v0", reward={"flare": -1.0})


@pytest.mark.filterwarnings("ignore:.*render_mode='video'")
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"condition": "gout"}, "condition"), ({"split": "dev"}, "split"), ({"weeks": 0}, "weeks"),
     ({"modality": "yoga"}, "modality"), ({"render_mode": "video"}, "render_mode"), ({"initial_load": 3.0},
                                                                                     "initial_load")],
)
def test_bad_kwargs_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        gym.make("AdaptRx/Progression-v0", **kwargs)


def test_reset_with_a_given_patient_row_uses_it() -> None:
    cohort = make_cohort("fibromyalgia", 3, seed=2, split="test")
    env = gym.make("AdaptRx/Progression-v0", condition="fibromyalgia")
    _, info = env.reset(seed=0, options={"patient": cohort.iloc[1]})
    assert info["patient_id"] == cohort.patient_id[1]
    assert info["patient"]["sensitization"] == pytest.approx(cohort.sensitization[1])
    bad = cohort.iloc[1].to_dict()
    del bad["envelope"]
    with pytest.raises(ValueError, match="envelope"):
        env.reset(options={"patient": bad})
    with pytest.raises(ValueError, match="options"):
        env.reset(options={"patinet": cohort.iloc[1]})


def test_reset_seed_selects_a_split_patient_deterministically() -> None:
    env = gym.make("AdaptRx/Progression-v0", split="val")
    _, info = env.reset(seed=21)
    assert info["patient"]["split"] == "val"
    assert info["patient"] == env.reset(seed=21)[1]["patient"]


def _until_dropout(max_seeds: int = 400) -> tuple[gym.Env, dict, int]:
    """An episode that ends in dropout: high load, many unsupervised sessions."""
    for seed in range(max_seeds):
        env = gym.make("AdaptRx/Progression-v0")
        env.reset(seed=seed)
        for week in range(1, 27):
            snapshot = env.unwrapped.get_state()
            _, reward, term, trunc, info = env.step(np.array([1.0, 1.0, -1.0], dtype=np.float32))
            if term:
                return env, {"info": info, "reward": reward, "snapshot": snapshot}, week
            if trunc:
                break
    raise AssertionError("no dropout in 400 aggressive episodes")


def test_dropout_terminates_with_the_forward_simulated_untreated_future() -> None:
    env, out, week = _until_dropout()
    info = out["info"]
    assert info["dropped_out"]
    tail = info["pain_after_dropout"]
    assert len(tail) == 26 - week
    # Recompute the tail independently: same patient, same noise, state restored, no exercise to week 26.
    u = env.unwrapped
    b = u.batch
    sim = PatientSimulator(make_cohort("knee_oa", 1).assign(**{k: [v] for k, v in b.patients[0].items()}),
                           keys=b.keys.copy())
    sim.set_state(b.sim.get_state())
    pains, value = [], 0.0
    for _ in range(26 - week):
        r = sim.step_week(0.0, 0, 0)
        pains.append(float(r.pain[0]))
        value += -r.pain[0] / 10 + 2.0 * r.function[0] / 100 - 0.1 * (r.flares[0] > 0)
    np.testing.assert_allclose(tail, pains, rtol=0, atol=1e-12)
    # Dropout is not a shortcut: the terminal term is worth what the untreated weeks are worth, minus the
    # dropout's own weight (RewardWeights.dropout, default 5)
    assert info["rewards"]["dropout"] == pytest.approx(value - 5.0, abs=1e-9)
    # ... and the safety cost counts every remaining week as unsafe (intention to treat)
    assert info["cost"] >= 1 + 26 - week


def test_patient_from_seed_is_a_split_row() -> None:
    from adaptrx.envs.episode_engine import EnvConfig

    row = patient_from_seed(EnvConfig(condition="knee_oa", split="ood"), 5)
    assert row["split"] == "ood" and row["condition"] == "knee_oa"


def test_render_ansi_and_rgb() -> None:
    env = gym.make("AdaptRx/Progression-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(np.array([0.2, 0.2, 0.5], dtype=np.float32))
    line = env.render()
    assert "week  1" in line and "pain" in line and "supervised" in line and line.endswith("\n")
    env = gym.make("AdaptRx/Progression-v0", render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    for _ in range(5):
        env.step(np.array([0.2, 0.2, 0.5], dtype=np.float32))
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.shape[0] >= 200
    assert (img != first).mean() > 0.01  # the plot shows the weeks so far
    assert len(FEATURES) == len(FEATURE_NAMES)


def test_explicit_prescriptions_step_like_actions_and_ended_episodes_refuse_steps() -> None:
    from adaptrx.envs.episode_engine import EnvConfig, EpisodeBatch

    config = EnvConfig(weeks=3)
    rows = [patient_from_seed(config, s) for s in (1, 2)]
    a, b = EpisodeBatch(2, config), EpisodeBatch(2, config)
    for batch in (a, b):
        batch.reset(np.arange(2), rows, np.array([1, 2], dtype=np.uint64))
    actions = np.array([[0.4, 0.2, 0.5], [-0.2, -0.6, -0.9]])
    load, sessions, delivery = decode_continuous(actions, a.last_load)
    by_action, by_prescription = a.step_actions(actions, discrete=False), b.step(load, sessions, delivery)
    np.testing.assert_array_equal(by_action.work, by_prescription.work)
    np.testing.assert_array_equal(by_action.obs, by_prescription.obs)
    np.testing.assert_array_equal(by_action.result.pain, by_action.out[0])
    for _ in range(2):
        a.step_actions(actions, discrete=False)
    assert a.done.all() and (a.week == 3).all()
    with pytest.raises(RuntimeError, match="reset"):
        a.step_actions(actions, discrete=False)
    env = gym.make("AdaptRx/Progression-v0", weeks=1)
    env.reset(seed=0)
    assert env.step(np.zeros(3, dtype=np.float32))[3]  # truncated after one week
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(3, dtype=np.float32))


def test_unknown_keyword_is_named() -> None:
    with pytest.raises(ValueError, match="intial_load"):
        gym.make("AdaptRx/Progression-v0", intial_load=0.3)
    from adaptrx.envs import PatientVecEnv

    with pytest.raises(ValueError, match="wekes"):
        PatientVecEnv(2, wekes=3)
