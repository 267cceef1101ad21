"""Benchmarks of the Gymnasium/SB3 adapters (``adaptrx.envs``), each measured side by side in one run.

* ``single_env``: ``step()`` throughput of ``gym.make("AdaptRx/Progression-v0")`` (one simulated week per
  step, resets included when episodes end) against ``gym.make("CartPole-v1")`` in the same process,
  alternating rounds so both see the same machine load. Target: at least 1/3 of CartPole's steps/s.
* ``batched``: patient-weeks per second of the batched simulator (``PatientSimulator.step_week``) and of
  the whole vector env (``PatientVecEnv.step``: actions, simulation, observations, rewards, infos,
  auto-resets) at 4096 patients. Target: 1,000,000 patient-weeks/s for the batched simulation.
* ``ppo``: SB3 PPO training throughput (env steps per second of training iterations: rollout collection
  plus gradient updates, as ``learn`` runs them) on ``PatientVecEnv(16)`` against ``DummyVecEnv`` over 16
  single envs, same hyperparameters (``configs/zoo/ppo.yml``), same seed, one torch thread. Target: at
  least 2x. The rollout part (the only part a vector env can speed up) and the share of time spent in
  gradient updates are printed too: the updates bound the end-to-end ratio.

Ratios in the table are target / measured for throughputs (below 1 beats the target).
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import adaptrx  # noqa: F401  (registers the env ids)
from adaptrx.agents.zoo import zoo_hyperparams
from adaptrx.envs import PatientVecEnv
from adaptrx.patient import PatientSimulator, make_cohort

NAME = "envs"
SINGLE_TARGET = 1.0 / 3.0  # of CartPole's steps/s
BATCH_TARGET = 1_000_000.0  # patient-weeks/s at 4096 patients
PPO_TARGET = 2.0  # PatientVecEnv(16) / DummyVecEnv(16)
ZOO_FILE = Path(__file__).resolve().parents[1] / "configs" / "zoo" / "ppo.yml"


def _steps_per_second(env: gym.Env, action: Any, seconds: float) -> float:
    """Steps/s of ``env.step(action)`` for about ``seconds``, resetting when an episode ends."""
    env.reset(seed=0)
    steps, t0 = 0, time.perf_counter()
    deadline = t0 + seconds
    while True:
        for _ in range(64):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        steps += 64
        now = time.perf_counter()
        if now >= deadline:
            return steps / (now - t0)


def bench_single_env(rounds: int = 5, seconds: float = 0.5) -> dict[str, float]:
    """Median steps/s of the AdaptRx env and of CartPole over alternating rounds, and their ratio."""
    ours = gym.make("AdaptRx/Progression-v0")
    cartpole = gym.make("CartPole-v1")
    hold = np.array([0.05, 0.2, 0.5], dtype=np.float32)  # slowly progressing supervised programme
    _steps_per_second(ours, hold, 0.2)  # warm-up (JIT, caches)
    _steps_per_second(cartpole, 0, 0.2)
    a, c = [], []
    gc.disable()
    try:
        for _ in range(rounds):
            a.append(_steps_per_second(ours, hold, seconds))
            c.append(_steps_per_second(cartpole, 0, seconds))
    finally:
        gc.enable()
    ours_sps, cart_sps = float(np.median(a)), float(np.median(c))
    return {"adaptrx": ours_sps, "cartpole": cart_sps, "fraction": ours_sps / cart_sps}


def bench_batched(n: int = 4096, seconds: float = 1.0) -> dict[str, float]:
    """Patient-weeks/s of the simulator and of the vector env at ``n`` patients."""
    rng = np.random.default_rng(2)
    sim = PatientSimulator(make_cohort("knee_oa", n, seed=0), seed=1)
    load, sessions, delivery = rng.uniform(0.3, 0.9, n), rng.integers(0, 6, n), rng.integers(0, 3, n)
    for _ in range(4):
        sim.step_week(load, sessions, delivery)
    start = sim.get_state()
    weeks, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(26):
            sim.step_week(load, sessions, delivery)
        weeks += 26
        sim.set_state(start)
    sim_rate = weeks * n / (time.perf_counter() - t0)

    vec = PatientVecEnv(n)
    vec.seed(0)
    vec.reset()
    actions = rng.uniform(-0.3, 0.3, size=(n, 3)).astype(np.float32)
    vec.step(actions)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        vec.step(actions)
        steps += 1
    vec_rate = steps * n / (time.perf_counter() - t0)
    return {"simulator": sim_rate, "vec_env": vec_rate}


def _ppo_kwargs() -> dict[str, Any]:
    """PPO hyperparameters of ``configs/zoo/ppo.yml`` for Progression-v0, translated as RL Zoo3 does."""
    return dict(zoo_hyperparams(ZOO_FILE, "AdaptRx/Progression-v0").kwargs)


def bench_ppo(rollouts: int = 16) -> dict[str, float]:
    """PPO on PatientVecEnv(16) and on DummyVecEnv(16 single envs): env steps/s of whole training iterations
    (rollout collection + gradient updates, what ``learn`` does), and of each part timed separately."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecMonitor

    torch.set_num_threads(1)
    kwargs = _ppo_kwargs()

    def rates(venv: Any) -> dict[str, float]:
        model = PPO("MlpPolicy", venv, seed=0, device="cpu", verbose=0, **kwargs)
        steps = rollouts * venv.num_envs * model.n_steps
        _, callback = model._setup_learn(steps, callback=None)
        callback.on_training_start(locals(), globals())
        model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)  # warm-up
        model.train()
        t_roll = t_train = 0.0
        for _ in range(rollouts):
            t0 = time.perf_counter()
            model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
            t1 = time.perf_counter()
            model.train()
            t_roll, t_train = t_roll + t1 - t0, t_train + time.perf_counter() - t1
        return {"learn": steps / (t_roll + t_train), "rollout": steps / t_roll, "train": steps / t_train}

    batched = rates(VecMonitor(PatientVecEnv(16)))
    dummy = rates(make_vec_env("AdaptRx/Progression-v0", n_envs=16, seed=0))
    return {
        "patient_vec_env": batched["learn"], "dummy_vec_env": dummy["learn"],
        "speedup": batched["learn"] / dummy["learn"],
        "rollout_patient_vec_env": batched["rollout"], "rollout_dummy_vec_env": dummy["rollout"],
        "rollout_speedup": batched["rollout"] / dummy["rollout"],
        "train_share": batched["learn"] / batched["train"],  # share of PatientVecEnv training time in updates
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    single = bench_single_env(rounds=3 if quick else 7, seconds=0.2 if quick else 0.5)
    batched = bench_batched(seconds=0.3 if quick else 1.5)
    ppo = bench_ppo(rollouts=4 if quick else 16)
    return [
        {"benchmark": "single_env", "metric": "adaptrx steps/s", "value": single["adaptrx"], "unit": "steps/s"},
        {"benchmark": "single_env", "metric": "CartPole-v1 steps/s", "value": single["cartpole"], "unit": "steps/s"},
        {"benchmark": "single_env", "metric": "adaptrx / CartPole", "value": single["fraction"], "unit": "x",
         "target": SINGLE_TARGET, "ratio": SINGLE_TARGET / single["fraction"]},
        {"benchmark": "batched n=4096", "metric": "simulator", "value": batched["simulator"],
         "unit": "patient-weeks/s", "target": BATCH_TARGET, "ratio": BATCH_TARGET / batched["simulator"]},
        {"benchmark": "batched n=4096", "metric": "PatientVecEnv.step", "value": batched["vec_env"],
         "unit": "patient-weeks/s"},
        {"benchmark": "ppo", "metric": "PatientVecEnv(16)", "value": ppo["patient_vec_env"], "unit": "steps/s"},
        {"benchmark": "ppo", "metric": "DummyVecEnv(16)", "value": ppo["dummy_vec_env"], "unit": "steps/s"},
        {"benchmark": "ppo", "metric": "speedup", "value": ppo["speedup"], "unit": "x", "target": PPO_TARGET,
         "ratio": PPO_TARGET / ppo["speedup"]},
        {"benchmark": "ppo rollouts", "metric": "PatientVecEnv(16)", "value": ppo["rollout_patient_vec_env"],
         "unit": "steps/s"},
        {"benchmark": "ppo rollouts", "metric": "DummyVecEnv(16)", "value": ppo["rollout_dummy_vec_env"],
         "unit": "steps/s"},
        {"benchmark": "ppo rollouts", "metric": "speedup", "value": ppo["rollout_speedup"], "unit": "x"},
        {"benchmark": "ppo", "metric": "updates share (PatientVecEnv)", "value": ppo["train_share"],
         "unit": "of time"},
    ]


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(quick="--quick" in sys.argv))
