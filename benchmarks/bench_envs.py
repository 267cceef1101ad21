"""Benchmarks of the Gymnasium/SB3 adapters (``adaptrx.envs``), each measured side by side in one run.

* ``single_env``: ``step()`` throughput of ``gym.make("AdaptRx/Progression-v0")`` (one simulated week per
  step, resets included when episodes end) against ``gym.make("CartPole-v1")`` in the same process,
  alternating rounds so both see the same machine load. Target: at least 1/3 of CartPole's steps/s.
* ``batched``: patient-weeks per second of the batched simulator (``PatientSimulator.step_week``) and of
  the whole vector env (``PatientVecEnv.step``: actions, simulation, observations, rewards, infos,
  auto-resets) at 4096 patients. Target: 1,000,000 patient-weeks/s for the batched simulation.
* ``ppo``: SB3 PPO training throughput (env steps per second of training iterations: rollout collection
  plus gradient updates, as ``learn`` runs them) on three vector envs of the same env, same hyperparameters
  (``configs/zoo/ppo.yml``), same seed, one torch thread:

  - ``PatientVecEnv(16)``: the batched vector env, 16 patients in one process (wrapped in ``VecMonitor``);
  - ``DummyVecEnv(16)``: SB3's ``DummyVecEnv`` over 16 single ``gym.make`` envs (``make_vec_env``, each in a
    ``Monitor``), stepped one after another in the training process;
  - ``SubprocVecEnv(2)``: SB3's ``SubprocVecEnv`` over 2 single envs, one worker process each
    (``start_method="fork"``, created before any model): the process-parallel baseline for a 2-core machine.
    It has ``n_envs=2``, so its rollout length is ``n_steps = 64 * 16 / 2 = 512`` instead of the zoo's 64:
    every model collects the same 1,024 transitions per update (``n_steps * n_envs``) and runs the same
    gradient updates on them (batch 256, 10 epochs), so steps/s compare like for like.

  The three models are trained side by side: one warm-up iteration each, then rounds in which every model
  runs one iteration (the order rotated each round); steps/s is 1,024 over the median iteration time. Target:
  ``PatientVecEnv(16)`` at least 2x ``DummyVecEnv(16)``; the ratio to ``SubprocVecEnv(2)`` is reported
  without a target. The rollout part (the only part a vector env can speed up) and the share of time spent
  in gradient updates are reported too: the updates bound the end-to-end ratio.

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
PPO_ENVS = 16  # envs of PatientVecEnv and DummyVecEnv (the zoo's n_envs)
SUBPROC_ENVS = 2  # worker processes (one env each) of SubprocVecEnv
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


def bench_ppo(rollouts: int = 16) -> dict[str, dict[str, float]]:
    """PPO on PatientVecEnv(16), DummyVecEnv(16 single envs) and SubprocVecEnv(2 single envs, 2 processes),
    trained side by side (interleaved iterations): env steps/s of whole training iterations (rollout
    collection + gradient updates, what ``learn`` does) and of each part, from median iteration times.

    Returns ``{vec env name: {"learn", "rollout", "train": steps/s}}``.
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecMonitor

    torch.set_num_threads(1)
    kwargs = _ppo_kwargs()
    transitions = kwargs.pop("n_steps", 64) * PPO_ENVS  # per update, the same for every vec env
    # The worker processes fork before any model exists (no torch threads or autograd state to inherit).
    venvs = {
        f"SubprocVecEnv({SUBPROC_ENVS})": make_vec_env(
            "AdaptRx/Progression-v0", n_envs=SUBPROC_ENVS, seed=0, vec_env_cls=SubprocVecEnv,
            vec_env_kwargs={"start_method": "fork"}),
        f"PatientVecEnv({PPO_ENVS})": VecMonitor(PatientVecEnv(PPO_ENVS)),
        f"DummyVecEnv({PPO_ENVS})": make_vec_env("AdaptRx/Progression-v0", n_envs=PPO_ENVS, seed=0),
    }
    try:
        runs = []
        for name, venv in venvs.items():
            assert transitions % venv.num_envs == 0
            model = PPO("MlpPolicy", venv, n_steps=transitions // venv.num_envs, seed=0, device="cpu", verbose=0,
                        **kwargs)
            _, callback = model._setup_learn((rollouts + 1) * transitions, callback=None)
            callback.on_training_start(locals(), globals())
            runs.append((name, model, callback))

        def iteration(model: Any, callback: Any) -> tuple[float, float]:
            t0 = time.perf_counter()
            model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
            t1 = time.perf_counter()
            model.train()
            return t1 - t0, time.perf_counter() - t1

        for _, model, callback in runs:  # warm-up
            iteration(model, callback)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in runs}
        for r in range(rollouts):
            for name, model, callback in runs[r % len(runs):] + runs[: r % len(runs)]:
                times[name].append(iteration(model, callback))
    finally:
        for venv in venvs.values():
            venv.close()
    out = {}
    for name, t in times.items():
        roll, train = np.array(t).T
        out[name] = {"learn": transitions / float(np.median(roll + train)),
                     "rollout": transitions / float(np.median(roll)), "train": transitions / float(np.median(train))}
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    single = bench_single_env(rounds=3 if quick else 7, seconds=0.2 if quick else 0.5)
    batched = bench_batched(seconds=0.3 if quick else 1.5)
    ppo = bench_ppo(rollouts=6 if quick else 24)
    ours, dummy, subproc = f"PatientVecEnv({PPO_ENVS})", f"DummyVecEnv({PPO_ENVS})", f"SubprocVecEnv({SUBPROC_ENVS})"
    speedup = ppo[ours]["learn"] / ppo[dummy]["learn"]
    rows = [
        {"benchmark": "single_env", "metric": "adaptrx steps/s", "value": single["adaptrx"], "unit": "steps/s"},
        {"benchmark": "single_env", "metric": "CartPole-v1 steps/s", "value": single["cartpole"], "unit": "steps/s"},
        {"benchmark": "single_env", "metric": "adaptrx / CartPole", "value": single["fraction"], "unit": "x",
         "target": SINGLE_TARGET, "ratio": SINGLE_TARGET / single["fraction"]},
        {"benchmark": "batched n=4096", "metric": "simulator", "value": batched["simulator"],
         "unit": "patient-weeks/s", "target": BATCH_TARGET, "ratio": BATCH_TARGET / batched["simulator"]},
        {"benchmark": "batched n=4096", "metric": "PatientVecEnv.step", "value": batched["vec_env"],
         "unit": "patient-weeks/s"},
    ]
    for part, benchmark in (("learn", "ppo"), ("rollout", "ppo rollouts")):
        rows += [{"benchmark": benchmark, "metric": name, "value": ppo[name][part], "unit": "steps/s"}
                 for name in (ours, dummy, subproc)]
        for name in (dummy, subproc):
            row = {"benchmark": benchmark, "metric": f"{ours} / {name}", "value": ppo[ours][part] / ppo[name][part],
                   "unit": "x"}
            if part == "learn" and name == dummy:
                row.update(target=PPO_TARGET, ratio=PPO_TARGET / speedup)
            rows.append(row)
    rows.append({"benchmark": "ppo", "metric": f"updates share ({ours})",
                 "value": ppo[ours]["learn"] / ppo[ours]["train"], "unit": "of time"})
    return rows


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(quick="--quick" in sys.argv))
