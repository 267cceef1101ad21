"""PatientVecEnv: SB3 VecEnv semantics and identity with the single env; what-if state; shield hook."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import VecMonitor
from stable_baselines3.common.vec_env.util import obs_space_info  # noqa: F401  (SB3 import sanity)

import adaptrx  # noqa: F401
from adaptrx.envs import FEATURE_NAMES, PatientVecEnv, SafetyShield, to_units
from adaptrx.envs.episode_engine import DropoutTails
from adaptrx.envs.features import FEATURE_INDEX
from adaptrx.envs.vec_env import INFO_KEYS, StepInfos

N_ENVS = 4


def _actions(kind: str, n_steps: int, n_envs: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "discrete":
        return rng.integers(0, 12, size=(n_steps, n_envs))
    return rng.uniform(-1, 1, size=(n_steps, n_envs, 3)).astype(np.float32)


def _single_trajectories(env_id: str, seed: int, actions: np.ndarray, weeks: int) -> list[list[tuple]]:
    """Episodes of one single env seeded once, stepping through ``actions`` with resets as SB3 does."""
    env = gym.make(env_id, weeks=weeks)
    obs, info = env.reset(seed=seed)
    episodes, current = [], [("reset", obs, info)]
    for a in actions:
        obs, reward, term, trunc, info = env.step(a)
        current.append(("step", obs, reward, term, trunc, info))
        if term or trunc:
            episodes.append(current)
            obs, info = env.reset()
            current = [("reset", obs, info)]
    episodes.append(current)
    return episodes


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_vec_env_matches_single_envs_over_several_episodes(kind: str) -> None:
    weeks, n_steps = 6, 20  # several episodes per env, with auto-resets and dropouts in between
    env_id = "AdaptRx/ProgressionDiscrete-v0" if kind == "discrete" else "AdaptRx/Progression-v0"
    actions = _actions(kind, n_steps, N_ENVS)
    vec = PatientVecEnv(N_ENVS, weeks=weeks, discrete=kind == "discrete")
    assert vec.seed(100) == [100, 101, 102, 103]
    obs = vec.reset()
    for i in range(N_ENVS):
        single = _single_trajectories(env_id, 100 + i, actions[:, i], weeks)
        ep, pos = 0, 0
        np.testing.assert_array_equal(obs[i], single[0][0][1])
        assert vec.reset_infos[i]["patient"] == single[0][0][2]["patient"]
        vec_i = PatientVecEnv(N_ENVS, weeks=weeks, discrete=kind == "discrete")
        vec_i.seed(100)
        vec_i.reset()
        for t in range(n_steps):
            v_obs, v_rew, v_done, v_infos = vec_i.step(actions[t])
            pos += 1
            s = single[ep][pos]
            assert v_rew[i] == pytest.approx(s[2], abs=1e-6)
            info = dict(v_infos[i])
            terminal = info.pop("terminal_observation", None)
            truncated = info.pop("TimeLimit.truncated", None)
            assert info == s[5]
            assert bool(v_done[i]) == (s[3] or s[4])
            if v_done[i]:
                np.testing.assert_array_equal(terminal, s[1])
                assert truncated == s[4]
                ep, pos = ep + 1, 0
                np.testing.assert_array_equal(v_obs[i], single[ep][0][1])
                assert vec_i.reset_infos[i]["patient_id"] == single[ep][0][2]["patient_id"]
            else:
                np.testing.assert_array_equal(v_obs[i], s[1])
        assert ep >= 2, "expected several episodes per env"


def test_vec_env_sb3_semantics_and_monitor() -> None:
    vec = VecMonitor(PatientVecEnv(8, weeks=4))
    vec.seed(0)
    obs = vec.reset()
    assert obs.shape == (8, len(FEATURE_NAMES)) and obs.dtype == np.float32
    episodes = 0
    for _ in range(9):
        obs, rewards, dones, infos = vec.step(np.zeros((8, 3), dtype=np.float32))
        assert rewards.shape == (8,) and dones.dtype == bool
        for i in np.flatnonzero(dones):
            assert "episode" in infos[i] and "terminal_observation" in infos[i]
            episodes += 1
            # the returned observation is the first one of the next episode
            assert to_units(obs[i])["progress"] == 0.0
    assert episodes >= 16
    assert vec.get_attr("feature_names")[0] == FEATURE_NAMES
    with pytest.raises(ValueError, match="num_envs"):
        PatientVecEnv(0)
    with pytest.raises(ValueError, match="split"):
        PatientVecEnv(2, split="nope")


def test_set_options_patient_row_and_unseeded_reset_differs() -> None:
    vec = PatientVecEnv(2)
    vec.seed(3)
    vec.reset()
    row = vec.reset_infos[0]["patient"]
    vec.set_options([{}, {"patient": row}])
    vec.reset()
    assert vec.reset_infos[1]["patient_id"] == row["patient_id"]
    assert vec.reset_infos[0]["patient_id"] != row["patient_id"]


def test_what_if_rollouts_from_any_week() -> None:
    env = gym.make("AdaptRx/Progression-v0")
    env.reset(seed=12)
    for _ in range(5):
        env.step(np.array([0.1, 0.2, 0.5], dtype=np.float32))
    snapshot = env.unwrapped.get_state()

    def branch(action: np.ndarray) -> list[float]:
        env.unwrapped.set_state(snapshot)
        return [env.step(action)[1] for _ in range(6)]

    hold = np.array([0.0, 0.2, 0.5], dtype=np.float32)
    spike = np.array([1.0, 1.0, -1.0], dtype=np.float32)
    a, b, a_again = branch(hold), branch(spike), branch(hold)
    assert a == a_again
    assert a != b
    # restoring into an env that has moved on to another patient brings the patient back
    env.reset(seed=13)
    assert branch(hold) == a
    with pytest.raises(ValueError, match="state"):
        env.unwrapped.set_state({"batch": {}})
    vec = PatientVecEnv(3, weeks=10)
    vec.seed(0)
    vec.reset()
    vec.step(np.zeros((3, 3), dtype=np.float32))
    snap = vec.get_state()
    r1 = [vec.step(np.full((3, 3), 0.3, dtype=np.float32))[1] for _ in range(12)]
    vec.set_state(snap)
    r2 = [vec.step(np.full((3, 3), 0.3, dtype=np.float32))[1] for _ in range(12)]
    np.testing.assert_array_equal(np.array(r1), np.array(r2))  # auto-resets replay too (generators restored)


class _CapLoadIncrease:
    """A test shield: no more than +10 % load per week (continuous actions only)."""

    def constrain(self, obs: np.ndarray, actions: np.ndarray, discrete: bool):
        assert not discrete and obs.shape[1] == len(FEATURE_NAMES)
        out = np.array(actions, dtype=np.float32, copy=True)
        bound = out[:, 0] > 0.2
        out[bound, 0] = 0.2
        return out, [("max_load_increase",) if b else () for b in bound]


def test_shield_hook_in_wrapper_and_vec_env() -> None:
    env = SafetyShield(gym.make("AdaptRx/Progression-v0"), _CapLoadIncrease())
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1.0, 0.2, 0.5], dtype=np.float32))
    assert info["prescription"]["load"] == pytest.approx(0.3 * 1.1)
    assert info["shield_rules"] == ["max_load_increase"] and info["shield_interventions"] == 1
    _, _, _, _, info = env.step(np.array([0.0, 0.2, 0.5], dtype=np.float32))
    assert info["shield_rules"] == [] and info["shield_interventions"] == 1
    vec = PatientVecEnv(2, shield=_CapLoadIncrease())
    vec.seed(0)
    first = vec.reset()
    assert to_units(first[0])["load"] == pytest.approx(0.3, abs=1e-6)
    _, _, _, infos = vec.step(np.array([[1.0, 0.2, 0.5], [0.1, 0.2, 0.5]], dtype=np.float32))
    assert [i["shield_interventions"] for i in infos] == [1, 0]
    assert infos[0]["prescription"]["load"] == pytest.approx(0.33)
    assert FEATURE_INDEX["load"] < len(FEATURE_NAMES)
    with pytest.raises(ValueError, match="shield"):
        SafetyShield(gym.make("AdaptRx/Progression-v0"), object())


@pytest.mark.parametrize("n_envs", [1, 5, 33])
def test_every_env_replays_its_single_env_bit_for_bit(n_envs: int) -> None:
    """One run of the batched fast path (vectorised resets, lazy infos) against ``n_envs`` single envs seeded
    SB3-style: observations, rewards, dones, terminal observations, full infos and the patients met after
    auto-resets are identical, over several episodes per env."""
    weeks, n_steps = 5, 16
    actions = _actions("continuous", n_steps, n_envs, seed=n_envs)
    vec = PatientVecEnv(n_envs, weeks=weeks)
    vec.seed(40)
    obs = vec.reset()
    singles = [gym.make("AdaptRx/Progression-v0", weeks=weeks) for _ in range(n_envs)]
    starts = [env.reset(seed=40 + i) for i, env in enumerate(singles)]
    for i, (o, info) in enumerate(starts):
        np.testing.assert_array_equal(obs[i], o)
        assert vec.reset_infos[i] == info
    episodes = np.zeros(n_envs, dtype=int)
    for t in range(n_steps):
        obs, rewards, dones, infos = vec.step(actions[t])
        for i, env in enumerate(singles):
            o, r, terminated, truncated, info = env.step(actions[t, i])
            assert rewards[i] == np.float32(r) and dones[i] == (terminated or truncated)
            got = dict(infos[i])
            if dones[i]:
                np.testing.assert_array_equal(got.pop("terminal_observation"), o)
                assert got.pop("TimeLimit.truncated") is truncated
                o, start_info = env.reset()
                assert vec.reset_infos[i] == start_info  # the next patient, drawn in the batch
                episodes[i] += 1
            assert got == info
            np.testing.assert_array_equal(obs[i], o)
    assert episodes.min() >= 2


def test_lazy_infos_hold_the_contract_and_full_infos_equal_them() -> None:
    n = 6
    lazy, full = PatientVecEnv(n, weeks=3), PatientVecEnv(n, weeks=3, full_infos=True)
    for v in (lazy, full):
        v.seed(7)
        v.reset()
    action = np.full((n, 3), 0.2, dtype=np.float32)
    kept = []
    for _ in range(4):
        _, _, dones, infos = lazy.step(action)
        _, _, _, plain = full.step(action)
        assert isinstance(infos, StepInfos) and len(infos) == n
        assert all(type(p) is dict for p in plain)
        for i in range(n):
            info = infos[i]
            assert info is infos[i]  # one mapping per env and step
            assert ("terminal_observation" in info) == bool(dones[i]) == ("TimeLimit.truncated" in info)
            assert info.get("episode") is None and "episode" not in info
            assert info["week"] >= 1 and set(INFO_KEYS) <= set(info)
            assert info.keys() == plain[i].keys()
            assert {k: v for k, v in info.items() if k != "terminal_observation"} == {
                k: v for k, v in plain[i].items() if k != "terminal_observation"}
        assert infos.to_dicts()[0].keys() == plain[0].keys()
        kept.append((infos, [dict(p) for p in plain]))
    # infos read after later steps and resets still describe their own step
    for infos, plain in kept:
        for i in range(n):
            assert infos[i]["state"] == plain[i]["state"] and infos[i]["week"] == plain[i]["week"]


def test_lazy_info_mapping_semantics() -> None:
    vec = PatientVecEnv(2, weeks=1)
    vec.seed(0)
    vec.reset()
    _, _, dones, infos = vec.step(np.zeros((2, 3), dtype=np.float32))
    assert dones.all()
    info = infos[0]
    assert info.pop("TimeLimit.truncated") is True and info.pop("TimeLimit.truncated", "gone") == "gone"
    copy = info.copy()
    copy["episode"] = {"r": 1.0}
    assert "episode" not in info and copy["episode"] == {"r": 1.0}
    assert copy["pain"] == info["pain"] and isinstance(info["rewards"], dict)
    del info["cost"]
    assert "cost" not in info and "cost" in copy
    with pytest.raises(KeyError):
        info["no such key"]
    assert [len(x) for x in infos[:]] == [len(infos[0]), len(infos[1])]
    assert list(infos)[1] is infos[1] and infos[-1] is infos[1]
    with pytest.raises(IndexError):
        infos[2]


def test_dropout_tails_are_the_dict_of_lists_built_when_read() -> None:
    pain = np.arange(12, dtype=np.float64).reshape(3, 4) / 2
    index, remaining = np.array([7, 2, 9]), np.array([4, 0, 2])
    eager = {int(i): pain[j, : remaining[j]].tolist() for j, i in enumerate(index)}
    tails = DropoutTails(index, pain, remaining)
    assert tails == eager and list(tails) == list(eager) and len(tails) == 3 and dict(tails.items()) == eager
    assert 2 in tails and np.int64(9) in tails and 3 not in tails and tails[np.int64(2)] == []
    assert tails[7] is tails[7]  # one list per patient, made on first read
    with pytest.raises(KeyError):
        tails[3]
    assert repr(tails) == repr(eager) and not DropoutTails(np.array([], dtype=np.int64), pain[:0], remaining[:0])


def test_dropout_infos_and_terminal_observations_keep_their_step() -> None:
    n = 512
    vec = PatientVecEnv(n, weeks=26)
    vec.seed(3)
    vec.reset()
    action = np.ones((n, 3), dtype=np.float32)  # heavy loading: some patients drop out
    kept = []
    for _ in range(12):
        obs, _, dones, infos = vec.step(action)
        plain = infos.to_dicts()
        kept.append((infos, plain, np.flatnonzero(dones), obs.copy()))
    assert sum(len(d) for _, _, d, _ in kept) > 0
    dropped = 0
    for infos, plain, done, obs in kept:  # read after later steps and resets
        for i in range(n):
            info = infos[i]
            assert ("pain_after_dropout" in info) == ("pain_after_dropout" in plain[i]) == info["dropped_out"]
            if info["dropped_out"]:
                dropped += 1
                assert info["pain_after_dropout"] == plain[i]["pain_after_dropout"]
                assert len(info["pain_after_dropout"]) == 26 - info["week"]
        for i in done.tolist():
            terminal = infos[i]["terminal_observation"]
            np.testing.assert_array_equal(terminal, plain[i]["terminal_observation"])
            assert not np.array_equal(terminal, obs[i])  # the returned one is the next episode's first
    assert dropped > 0


def test_vec_env_api_and_generator_state_round_trip() -> None:
    vec = PatientVecEnv(3, weeks=4)
    assert vec.get_attr("feature_names", indices=[0, 2]) == [FEATURE_NAMES] * 2
    assert vec.env_method("get_images") == [[None] * 3] * 3
    vec.set_attr("render_mode", None)
    vec.seed(5)
    vec.reset()
    first = vec.reset_infos[1]
    assert vec.reset_infos[1] is first and vec.reset_infos[:][1] is first
    state = vec.get_state()
    ref = np.random.Generator(np.random.PCG64(np.random.SeedSequence(6)))
    ref.integers(0, 2**63)  # the first episode's seed
    assert state["rngs"][1] == ref.bit_generator.state
    runs = []
    for _ in range(2):
        vec.set_state(state)
        runs.append([vec.step(np.full((3, 3), 0.4, dtype=np.float32))[1] for _ in range(9)])
    np.testing.assert_array_equal(runs[0], runs[1])
