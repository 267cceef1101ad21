"""PPO learns something on ``AdaptRx/Progression-v0``: paired evaluation on held-out (val) patients.

PPO is trained on ``PatientVecEnv(16, split="train")`` with the tuned hyperparameters of
``configs/zoo/ppo.yml`` (the same file RL Zoo3 reads), then evaluated against two reference arms on the same
val patients and the same noise (common random numbers, ``vec.seed(base)``):

* ``random``: uniformly random actions from a fixed generator;
* ``none``: no exercise, i.e. zero sessions every week (action ``[0, -1, -1]``).

Returns are intention-to-treat episode returns (the dropout terminal term included). The test asserts that
the lower bound of the 95 % paired t and bootstrap confidence intervals of ``PPO - arm`` is above 0.
Run with ``-s`` to see the numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

import adaptrx  # noqa: F401  (registers the env ids)
from adaptrx.agents.zoo import zoo_hyperparams as read_zoo

ENV_ID = "AdaptRx/Progression-v0"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "zoo" / "ppo.yml"
N_TRAIN_ENVS = 16  # PatientVecEnv(16, split="train"), as the brief of this test; the yml's n_envs is 16 too
N_EVAL = 200  # val patients per arm
EVAL_SEED = 10_000  # env i of every arm gets the patient and noise of reset(seed=EVAL_SEED + i)

def zoo_hyperparams(env_id: str = ENV_ID) -> tuple[dict[str, Any], int]:
    """``PPO(...)`` keyword arguments and the number of timesteps of ``env_id`` in ``configs/zoo/ppo.yml``,
    translated as RL Zoo3 does (:func:`adaptrx.agents.zoo.zoo_hyperparams`)."""
    entry = read_zoo(CONFIG, env_id)
    assert entry.policy == "MlpPolicy"
    assert not entry.normalize, "this test assumes no VecNormalize (see configs/zoo/ppo.yml)"
    return dict(entry.kwargs), entry.n_timesteps


def first_episode_returns(policy: Callable[[np.ndarray], np.ndarray], n: int = N_EVAL,
                          base_seed: int = EVAL_SEED) -> np.ndarray:
    """Return of the first episode of each of ``n`` val envs (env ``i`` = ``reset(seed=base_seed + i)``).

    The vec env auto-resets finished envs; their later episodes are stepped but not counted.
    """
    from adaptrx.envs import PatientVecEnv

    vec = PatientVecEnv(n, split="val")
    vec.seed(base_seed)
    obs = vec.reset()
    returns = np.zeros(n)
    done = np.zeros(n, dtype=bool)
    for _ in range(vec.config.weeks + 1):
        obs, reward, dones, _ = vec.step(policy(obs))
        returns += np.where(done, 0.0, reward)
        done |= dones
        if done.all():
            break
    assert done.all(), "every first episode ends by the horizon"
    return returns


def paired_ci(diff: np.ndarray, level: float = 0.95, n_boot: int = 10_000) -> dict[str, float]:
    """Mean of paired differences with a t interval and a percentile bootstrap interval."""
    n = len(diff)
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(n))
    t = float(stats.t.ppf(0.5 + level / 2, n - 1))
    rng = np.random.default_rng(0)
    boot = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": mean, "t_lo": mean - t * se, "t_hi": mean + t * se, "boot_lo": float(lo), "boot_hi": float(hi)}


@pytest.mark.slow
def test_ppo_beats_random_and_no_exercise_on_val_patients() -> None:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor

    from adaptrx.envs import PatientVecEnv

    kwargs, n_timesteps = zoo_hyperparams()
    env = VecMonitor(PatientVecEnv(N_TRAIN_ENVS, split="train"))
    # One torch thread: a 64x64 MLP gains nothing from more, and oversubscribed threads are many times
    # slower when other tests (pytest -n 2) or processes share the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = PPO("MlpPolicy", env, seed=0, device="cpu", verbose=0, **kwargs)
        start = time.perf_counter()
        model.learn(n_timesteps)
        train_s = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)

    action_space = env.action_space
    rng = np.random.default_rng(12345)
    arms = {
        "ppo": lambda obs: model.predict(obs, deterministic=True)[0],
        "random": lambda obs: rng.uniform(action_space.low, action_space.high,
                                          size=(len(obs), *action_space.shape)).astype(np.float32),
        "none": lambda obs: np.tile(np.array([0.0, -1.0, -1.0], dtype=np.float32), (len(obs), 1)),
    }
    start = time.perf_counter()
    returns = {name: first_episode_returns(policy) for name, policy in arms.items()}
    eval_s = time.perf_counter() - start

    print(f"\nPPO {ENV_ID}: {n_timesteps} steps trained in {train_s:.1f} s; {N_EVAL} paired val episodes "
          f"per arm evaluated in {eval_s:.1f} s")
    for name, r in returns.items():
        print(f"  {name:7s} mean return {r.mean():7.3f} (sd {r.std(ddof=1):.3f})")
    for other in ("random", "none"):
        ci = paired_ci(returns["ppo"] - returns[other])
        print(f"  ppo - {other:7s} {ci['mean']:+.3f}  95% t CI [{ci['t_lo']:+.3f}, {ci['t_hi']:+.3f}]  "
              f"bootstrap [{ci['boot_lo']:+.3f}, {ci['boot_hi']:+.3f}]")
        assert ci["t_lo"] > 0 and ci["boot_lo"] > 0, f"PPO does not beat {other}: {ci}"
