"""Conformance of the AdaptRx Gymnasium envs: env checkers, determinism, import, pickling, subprocesses."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import SubprocVecEnv

import adaptrx

ENV_IDS = ["AdaptRx/Progression-v0", "AdaptRx/ProgressionDiscrete-v0"]


def _policy_actions(env: gym.Env, seed: int, n: int) -> list:
    space = env.action_space
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def _rollout(env: gym.Env, seed: int, weeks: int = 26) -> list[tuple]:
    """(obs, reward, terminated, truncated, info) of a whole episode under fixed pseudo-random actions."""
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False, info)]
    for action in _policy_actions(env, 1234, weeks):
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return out


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_and_sb3_checkers_pass_without_warnings(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id)
        gym_check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(env.unwrapped, warn=True)
        for mode in ("ansi", "rgb_array"):
            gym_check_env(gym.make(env_id, render_mode=mode).unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_episode_including_infos(env_id: str) -> None:
    a = _rollout(gym.make(env_id), seed=11)
    b = _rollout(gym.make(env_id), seed=11)
    assert len(a) == len(b) > 1
    assert _same(a, b)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_different_seeds_give_different_patients_and_noise(env_id: str) -> None:
    a = _rollout(gym.make(env_id), seed=1)
    b = _rollout(gym.make(env_id), seed=2)
    assert a[0][4]["patient_id"] != b[0][4]["patient_id"]
    assert not np.array_equal(a[0][0], b[0][0])
    assert [x[1] for x in a] != [x[1] for x in b]
    # the same patient under two seeds meets different noise
    env = gym.make(env_id)
    _, info = env.reset(seed=1)
    obs_1 = [env.step(env.action_space.sample())[0] for _ in range(3)]
    env.reset(seed=99, options={"patient": info["patient"]})
    env.action_space.seed(0)
    obs_2 = [env.step(env.action_space.sample())[0] for _ in range(3)]
    assert not all(np.array_equal(x, y) for x, y in zip(obs_1, obs_2, strict=True))


def test_reset_without_seed_continues_the_generator() -> None:
    env = gym.make("AdaptRx/Progression-v0")
    ids = [env.reset(seed=5)[1]["patient_id"]] + [env.reset()[1]["patient_id"] for _ in range(3)]
    assert len(set(ids)) == 4
    again = [env.reset(seed=5)[1]["patient_id"]] + [env.reset()[1]["patient_id"] for _ in range(3)]
    assert ids == again


def test_import_twice_is_safe_and_registers_once() -> None:
    importlib.reload(adaptrx)
    importlib.reload(adaptrx.envs)
    adaptrx.envs.register_envs()
    for env_id in ENV_IDS:
        assert env_id in gym.registry
        gym.make(env_id).reset(seed=0)
    code = "import adaptrx, adaptrx, importlib; importlib.reload(adaptrx); import gymnasium as g; " \
           "g.make('AdaptRx/Progression-v0').reset(seed=0); import sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", "import adaptrx must not import torch"


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_envs_pickle_mid_episode_and_resume_identically(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=3)
    actions = _policy_actions(env, 7, 12)
    for action in actions[:4]:
        env.step(action)
    clone = pickle.loads(pickle.dumps(env))
    for action in actions[4:]:
        a, b = env.step(action), clone.step(action)
        assert _same(list(a), list(b))
        if a[2] or a[3]:
            break


def _make(env_id: str):
    def thunk() -> gym.Env:
        import adaptrx  # noqa: F401  (registers the ids in the worker)

        return gym.make(env_id)

    return thunk


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_subproc_vec_env_with_two_workers_runs(env_id: str) -> None:
    vec = SubprocVecEnv([_make(env_id) for _ in range(2)], start_method="spawn")
    try:
        vec.seed(10)
        obs = vec.reset()
        assert obs.shape == (2, len(adaptrx.envs.FEATURE_NAMES))
        dones_seen = 0
        for _ in range(30):
            actions = np.array([vec.action_space.sample() for _ in range(2)])
            obs, rewards, dones, infos = vec.step(actions)
            assert np.isfinite(rewards).all() and obs.shape[0] == 2
            dones_seen += int(dones.sum())
            for i in np.flatnonzero(dones):
                assert "terminal_observation" in infos[i]
        assert dones_seen >= 2  # 26-week episodes ended and auto-reset in both workers
        single = gym.make(env_id)
        first = single.reset(seed=10)[0]
        vec.seed(10)
        np.testing.assert_array_equal(vec.reset()[0], first)
    finally:
        vec.close()
