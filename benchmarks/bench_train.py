"""Benchmark of ``adaptrx-train`` (``adaptrx.experiments.train``): time to quality of the quick preset.

* ``time_to_quality``: wall time, from the start of the process, of ``adaptrx-train experiment=quick`` (oracle
  distillation by DAgger on knee OA, 5 rounds of 300 train patients, an evaluation on 300 ``val`` patients
  after every round, the selected policy compared on 1000 ``test`` patients with the protocols and the oracle)
  until its periodic val evaluation first beats ``population_best``.
  No target (the issue asks to report it).

How the app evaluates: its callback (``ClinicalEvalCallback`` in ``adaptrx/experiments/training.py``) plays
the live agent on the same ``val`` patients with the same noise at every evaluation (paired, intention to
treat) and writes the clinical metrics to TensorBoard (``clinical/*`` scalars, dumped when the evaluation ends,
so their ``wall_time`` is when its result exists) and to ``evaluations.csv``; model selection uses the mean
val return. The app never plays ``population_best`` on val (only the final paired comparison on ``test``
does, as :mod:`adaptrx.experiments.policy_card`), so it has no definition of beating it on val. This
benchmark plays ``population_best`` on the run's evaluation patients (same cohort, noise and reward;
:class:`~adaptrx.experiments.training.ClinicalEvaluator` of the same composed config, hence paired with every
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
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAME = "train"
PRESET = ["experiment=quick", "progress=false"]
QUICK_BUDGET = ["algo.kwargs.rounds=2", "algo.kwargs.episodes=150", "budget.test_patients=0"]
#: (metric of evaluations.csv, +1 if higher is better else -1)
CRITERIA: tuple[tuple[str, int], ...] = (("composite", -1), ("return", +1))


def _command() -> list[str]:
    script = Path(sys.executable).parent / "adaptrx-train"
    if script.exists():
        return [str(script)]
    found = shutil.which("adaptrx-train")
    return [found] if found else [sys.executable, "-m", "adaptrx.experiments.train"]


def _config(overrides: list[str]) -> Any:
    """The composed, validated :class:`TrainConfig` of ``overrides`` (what the app composes)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from adaptrx.experiments.train_config import register_schema, validate

    register_schema()
    with initialize_config_module("adaptrx.configs", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    validate(cfg)
    return OmegaConf.to_object(cfg)


def reference_metrics(cfg: Any) -> dict[str, float]:
    """``population_best``'s clinical metrics on the run's val evaluation patients (paired with its evaluations)."""
    from adaptrx.experiments.training import ClinicalEvaluator
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


def run(quick: bool = False) -> list[dict[str, Any]]:
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
