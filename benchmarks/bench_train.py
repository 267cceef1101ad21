"""Benchmark of ``adaptrx-train`` (``adaptrx.experiments.train.app``): time to quality of the quick preset.

* ``time_to_quality``: wall time, from the start of the process, of ``adaptrx-train experiment=quick`` (oracle
  distillation by DAgger on knee OA, 5 rounds of 300 train patients, an evaluation on 300 ``val`` patients
  after every round, the selected policy compared on 1000 ``test`` patients with the protocols and the oracle)
  until its periodic val evaluation first beats ``population_best``.
  No target (the issue asks to report it).

How the app evaluates: its callback (``ClinicalEvalCallback`` in ``adaptrx/experiments/train/training.py``) plays
the live agent on the same ``val`` patients with the same noise at every evaluation (paired, intention to
treat) and writes the clinical metrics to TensorBoard (``clinical/*`` scalars, dumped when the evaluation ends,
so their ``wall_time`` is when its result exists) and to ``evaluations.csv``; model selection uses the mean
val return. The app never plays ``population_best`` on val (only the final paired comparison on ``test``
does, as :mod:`adaptrx.experiments.train.policy_card`), so it has no definition of beating it on val. This
benchmark plays ``population_best`` on the run's evaluation patients (same cohort, noise and reward;
:class:`~adaptrx.experiments.train.training.ClinicalEvaluator` of the same composed config, hence paired with every
evaluation of the run) and reads the agent's numbers from the run's ``evaluations.csv`` and their times from
its TensorBoard event file.

"Beats" uses the **composite** the app reports (``clinical/composite``: mean weekly pain + flare weeks +
2 for a dropout, per patient, lower is better; the policy card's comparison with ``population_best`` and the
choice of the shipped variant use it): the first evaluation whose mean composite is below
``population_best``'s. Gaps are agent minus ``population_best`` (composite: below 0 beats). Reported too:
the same for the mean val **return** (the app's selection metric and the objective ``population_best`` was
searched by; above 0 beats). Not beaten within the run: the time is NaN and the row names the best gap.

Rows: total wall time of the run (process start to exit, the test comparison included), startup (process
start to the first TensorBoard event, i.e. imports, numba cache, env and model built), the time of every
evaluation with its gaps, time to beat and env steps at that point, best and final (last evaluation) gap.

The run is a subprocess into a temporary directory (nothing is written into the repository) with
``progress=false`` (no progress bars; not a setting of the preset). ``--quick`` overrides the budget:
2 rounds of 150 patients, no test comparison (a smoke run; the normal mode is the preset as is).

* ``large_batch_ppo``: PPO with ``experiment=ppo_large_batch`` (512 envs x 32 steps = 16,384 transitions per
  update, minibatch 2,048, 5 epochs; ``adaptrx-train``'s env: ``ProgrammeEnd``, ``VecMonitor``,
  ``VecNormalize`` of observations) on the app's ``PatientVecEnv(512)`` and on SB3's ``DummyVecEnv`` over 512
  single ``AdaptRx/Progression-v0`` envs, same hyperparameters, network and seed, one torch thread. The two
  models are trained in alternation, one update each per round (rollout + gradient steps; the training time
  counts only these), and after every ``EVAL_EVERY`` updates both deterministic policies are played (untimed)
  on the same ``EVAL_PATIENTS`` val patients and noise (``ClinicalEvaluator``, paired). **Quality** is a mean
  val return at least ``population_best``'s minus ``QUALITY_MARGIN`` (population_best: the best fixed
  protocol, searched on train patients; the gap is in return units, i.e. summed weekly reward per patient).
  Rows: steps/s of training (whole updates) and of the rollouts alone, the time and env steps to quality of
  each env and their ratio, and the val return reached. Both models see identical patients in the same order
  (the per-env results of ``PatientVecEnv`` are those of the single envs), so they reach the same returns at the
  same step counts up to torch's floating point; the time ratio is the speed of the env side.
"""

from __future__ import annotations

import csv
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

import adaptrx  # noqa: F401  (registers the env ids)
from adaptrx.envs.programme_end import ProgrammeEnd
from adaptrx.experiments.train.callbacks import SB3Policy
from adaptrx.experiments.train.training import ClinicalEvaluator, _new_model, make_train_env
from adaptrx.protocols import get

NAME = "train"
LARGE_BATCH = ["experiment=ppo_large_batch"]
EVAL_PATIENTS = 300  # val patients of the large-batch PPO comparison (paired: the same for both vec envs)
EVAL_EVERY = 2  # updates between its evaluations
QUALITY_MARGIN = 1.0  # quality: val return >= population_best's - QUALITY_MARGIN (return units)
PRESET = ["experiment=quick", "progress=false"]
QUICK_BUDGET = ["algo.kwargs.rounds=2", "algo.kwargs.episodes=150", "budget.test_patients=0"]
#: (metric of evaluations.csv, +1 if higher is better else -1)
CRITERIA: tuple[tuple[str, int], ...] = (("composite", -1), ("return", +1))


def _command() -> list[str]:
    script = Path(sys.executable).parent / "adaptrx-train"
    if script.exists():
        return [str(script)]
    found = shutil.which("adaptrx-train")
    return [found] if found else [sys.executable, "-m", "adaptrx.experiments.train.app"]


def _config(overrides: list[str]) -> Any:
    """The composed, validated :class:`TrainConfig` of ``overrides`` (what the app composes)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from adaptrx.experiments.train.config import register_schema, validate

    register_schema()
    with initialize_config_module("adaptrx.configs", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    validate(cfg)
    return OmegaConf.to_object(cfg)


def reference_metrics(cfg: Any) -> dict[str, float]:
    """``population_best``'s clinical metrics on the run's val evaluation patients (paired with its evaluations)."""
    from adaptrx.experiments.train.training import ClinicalEvaluator
    from adaptrx.protocols import get

    policy = get("population_best", condition=cfg.env.condition)
    return ClinicalEvaluator(cfg).run(policy, name="population_best").metrics


def event_times(tb_dir: Path, tag: str = "clinical/composite") -> tuple[float, dict[int, float]]:
    """Wall time (epoch s) of the first event of the TensorBoard log and of each step's ``tag`` scalar."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    files = sorted(tb_dir.rglob("events.out.tfevents.*"))
    if not files:
        raise RuntimeError(f"no TensorBoard event file under {tb_dir}")
    first, times = math.inf, {}
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            first = min(first, event.wall_time)
            if any(v.tag == tag for v in event.summary.value):
                times[int(event.step)] = event.wall_time
    return first, times


def read_evaluations(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def run_quick_preset(overrides: list[str], run_dir: Path) -> tuple[float, float]:
    """Run ``adaptrx-train`` into ``run_dir``; returns (epoch time at process start, wall seconds to exit)."""
    log = run_dir.parent / "train.out"
    cmd = [*_command(), *overrides, f"hydra.run.dir={run_dir}"]
    with log.open("w") as out:
        t_epoch, t0 = time.time(), time.perf_counter()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=run_dir.parent, check=False,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        total = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{tail}")
    return t_epoch, total


def _global_rng_state() -> tuple[Any, Any, Any]:
    """The global torch, numpy and ``random`` generator states (SB3 draws from them)."""
    return torch.get_rng_state(), np.random.get_state(), random.getstate()  # noqa: NPY002 (SB3 draws from it)


def _set_global_rng_state(state: tuple[Any, Any, Any]) -> None:
    torch.set_rng_state(state[0])
    np.random.set_state(state[1])  # noqa: NPY002 (restores what SB3 draws from)
    random.setstate(state[2])


def _large_batch_envs(cfg: Any) -> dict[str, tuple[Any, Any]]:
    """``adaptrx-train``'s training env on ``PatientVecEnv`` and the same stack on ``DummyVecEnv`` of single envs:
    name -> (env, its VecNormalize or None)."""
    e, n = cfg.env, cfg.budget.n_envs
    kwargs = e.env_kwargs()
    dummy = DummyVecEnv([lambda: gym.make("AdaptRx/Progression-v0", **kwargs)] * n)
    dummy.seed(cfg.seed)  # env i: reset(seed=cfg.seed + i), the patients of PatientVecEnv.seed(cfg.seed)
    env: Any = VecMonitor(ProgrammeEnd(dummy) if e.programme_end else dummy)
    norm = None
    if e.normalize_obs or e.normalize_reward:
        norm = env = VecNormalize(env, norm_obs=e.normalize_obs, norm_reward=e.normalize_reward,
                                  gamma=float(cfg.algo.kwargs.get("gamma", 0.99)))
    return {f"PatientVecEnv({n})": make_train_env(cfg), f"DummyVecEnv({n})": (env, norm)}


def bench_large_batch(max_updates: int, overrides: list[str] | None = None) -> dict[str, Any]:
    """Large-batch PPO on PatientVecEnv vs DummyVecEnv (see the module doc): per env, the training times and
    val returns after every ``EVAL_EVERY`` updates, up to quality or ``max_updates`` updates."""
    cfg = _config(LARGE_BATCH + (overrides or []))
    torch.set_num_threads(cfg.budget.torch_threads)
    evaluator = ClinicalEvaluator(cfg, n=EVAL_PATIENTS)
    reference = evaluator.run(get("population_best", condition=cfg.env.condition), name="population_best")
    threshold = reference.metrics["return"] - QUALITY_MARGIN
    runs = {}
    for name, (env, norm) in _large_batch_envs(cfg).items():
        model = _new_model(cfg, env, None)
        _, callback = model._setup_learn(max_updates * model.n_steps * env.num_envs, callback=None)
        callback.on_training_start(locals(), globals())
        runs[name] = {"model": model, "callback": callback, "norm": norm, "roll": [], "train": [], "evals": [],
                      "reached": None}
        # SB3 samples actions and minibatches from the global torch and numpy generators: each model keeps its
        # own copy of them, so that alternating the two does not change either's draws
        runs[name]["rng"] = _global_rng_state()
    for update in range(1, max_updates + 1):
        for run in runs.values():
            if run["reached"] is not None:
                continue
            model = run["model"]
            _set_global_rng_state(run["rng"])
            t0 = time.perf_counter()
            model.collect_rollouts(model.env, run["callback"], model.rollout_buffer, model.n_steps)
            t1 = time.perf_counter()
            model.train()
            run["roll"].append(t1 - t0)
            run["train"].append(time.perf_counter() - t1)
            run["rng"] = _global_rng_state()
            if update % EVAL_EVERY == 0 or update == max_updates:
                ret = evaluator.run(SB3Policy(model, run["norm"])).metrics["return"]
                run["evals"].append((sum(run["roll"]) + sum(run["train"]), model.num_timesteps, ret))
                if ret >= threshold:
                    run["reached"] = run["evals"][-1]
        if all(run["reached"] is not None for run in runs.values()):
            break
    for run in runs.values():
        run["model"].env.close()
    return {"threshold": threshold, "reference": reference.metrics["return"], "runs": runs}


def large_batch_rows(quick: bool) -> list[dict[str, Any]]:
    """Rows of :func:`bench_large_batch`: up to 48 updates (786,432 env steps; quick: 4)."""
    result = bench_large_batch(max_updates=4 if quick else 48)
    runs, rows = result["runs"], []
    names = list(runs)
    bench = "large_batch_ppo"
    for name in names:
        run = runs[name]
        steps = run["model"].n_steps * run["model"].env.num_envs
        learn = steps / float(np.median(np.add(run["roll"], run["train"])))
        rows += [
            {"benchmark": bench, "metric": f"{name} training steps/s (rollout + updates)", "value": learn,
             "unit": "steps/s"},
            {"benchmark": bench, "metric": f"{name} rollout steps/s", "value": steps / float(np.median(run["roll"])),
             "unit": "steps/s"},
        ]
        reached = run["reached"]
        label = f"val return >= {result['threshold']:.2f} (population_best {result['reference']:.2f} - " \
                f"{QUALITY_MARGIN:g})"
        if reached is None:
            best = max(run["evals"], key=lambda e: e[2])
            rows += [{"benchmark": bench, "metric": f"{name} time to {label}: not within {len(run['roll'])} updates",
                      "value": float("nan"), "unit": "s"},
                     {"benchmark": bench, "metric": f"{name} best val return (at {best[1]:,} steps, {best[0]:.0f} s)",
                      "value": best[2], "unit": "return"}]
        else:
            rows += [{"benchmark": bench, "metric": f"{name} time to {label}", "value": reached[0], "unit": "s"},
                     {"benchmark": bench, "metric": f"{name} env steps to quality (val return {reached[2]:.2f})",
                      "value": reached[1], "unit": "steps"}]
    ours, dummy = (runs[n] for n in names)
    if ours["reached"] is not None and dummy["reached"] is not None:
        rows.append({"benchmark": bench, "metric": f"time to quality: {names[1]} / {names[0]}",
                     "value": dummy["reached"][0] / ours["reached"][0], "unit": "x"})
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    return time_to_quality_rows(quick) + large_batch_rows(quick)


def time_to_quality_rows(quick: bool = False) -> list[dict[str, Any]]:
    overrides = PRESET + (QUICK_BUDGET if quick else [])
    cfg = _config(overrides)
    ref = reference_metrics(cfg)  # also loads (or compiles into numba's cache) the kernels before the timed run
    with tempfile.TemporaryDirectory(prefix="adaptrx-bench-train-") as tmp:
        run_dir = Path(tmp) / "run"
        t_epoch, total = run_quick_preset(overrides, run_dir)
        evals = read_evaluations(run_dir / "evaluations.csv")
        first, times = event_times(run_dir / "tb")
    missing = [int(e["step"]) for e in evals if int(e["step"]) not in times]
    if missing:
        raise RuntimeError(f"no clinical/composite TensorBoard event for the evaluations at steps {missing}")

    b = cfg.budget
    label = (f"{b.total_timesteps:,} steps, eval every {b.eval_freq:,} on {b.eval_patients} val patients, "
             f"{b.test_patients} test")
    rows: list[dict[str, Any]] = [
        {"benchmark": "time_to_quality", "metric": f"total wall time of the run ({label})", "value": total,
         "unit": "s"},
        {"benchmark": "time_to_quality", "metric": "startup (process start to training start)",
         "value": first - t_epoch, "unit": "s"},
    ]
    for i, e in enumerate(evals, 1):
        gaps = ", ".join(f"{m} gap {e[m] - ref[m]:+.3f}" for m, _ in CRITERIA)
        rows.append({"benchmark": "time_to_quality", "metric": f"eval {i} at {int(e['step']):,} steps: {gaps}",
                     "value": times[int(e["step"])] - t_epoch, "unit": "s"})
    for k, (metric, sign) in enumerate(CRITERIA):
        gaps = [e[metric] - ref[metric] for e in evals]
        beaten = [i for i, g in enumerate(gaps) if sign * g > 0]
        best = max(range(len(gaps)), key=lambda i: sign * gaps[i])
        better = "below" if sign < 0 else "above"
        name = f"beats population_best on val {metric} ({better} {ref[metric]:.3f})"
        if k > 0:
            name += " [secondary]"
        if beaten:
            i = beaten[0]
            step = int(evals[i]["step"])
            rows += [
                {"benchmark": "time_to_quality", "metric": f"time to: {name}, gap {gaps[i]:+.3f}",
                 "value": times[step] - t_epoch, "unit": "s"},
                {"benchmark": "time_to_quality", "metric": f"env steps to: {name}", "value": step, "unit": "steps"},
            ]
        else:
            rows += [
                {"benchmark": "time_to_quality", "metric": f"time to: {name}: not within the run",
                 "value": float("nan"), "unit": "s"},
                {"benchmark": "time_to_quality",
                 "metric": f"best {metric} gap (agent - population_best), at {int(evals[best]['step']):,} steps",
                 "value": gaps[best], "unit": metric},
            ]
        rows.append({"benchmark": "time_to_quality",
                     "metric": f"final {metric} gap (agent - population_best), last evaluation",
                     "value": gaps[-1], "unit": metric})
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
