"""Benchmark of ``adaptrx-trial`` (``adaptrx.experiments.trial.app``): the paper preset's paired trial.

* ``trial_9_policies``: wall time of the simulation of the committed knee-OA trial (the shipped agent,
  ``population_best``, five clinical protocols, ``none`` and the oracle with the preset's planner settings) on
  2000 test patients, ``n_jobs=2`` (the oracle's patients split over two worker processes). Target: under
  60 s. Measured side by side in the same run: the 8 non-oracle policies alone, and the statistics (summary,
  paired mean differences with sign-flip/Holm p-values and probability of improvement, the safety comparison,
  subgroups; 2000 bootstrap replicates).

``--quick`` uses 500 patients (a smoke run; the target is for 2000).
"""

from __future__ import annotations

import time
from typing import Any

from hydra import compose, initialize_config_module

from adaptrx.experiments.trial.analysis import SAFETY, compare, subgroups, summarize
from adaptrx.experiments.trial.config import policy_specs, register_schema, validate
from adaptrx.experiments.trial.runner import run_trial

NAME = "trial"
TARGET_S = 60.0


def _cfg(n: int, *overrides: str) -> Any:
    register_schema()
    with initialize_config_module("adaptrx.configs", version_base="1.3"):
        return validate(compose("trial", overrides=["preset=paper", f"cohort.n={n}", "progress=false",
                                                    *overrides]))


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 500 if quick else 2000
    cfg = _cfg(n)
    specs = policy_specs(cfg)
    protocols_only = [s for s in specs if s.target != "oracle"]
    run_trial(cfg, protocols_only[:1])  # warm-up: numba kernels, imports
    t0 = time.perf_counter()
    run_trial(cfg, protocols_only)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = run_trial(cfg, specs)
    t_all = time.perf_counter() - t0
    t0 = time.perf_counter()
    summarize(data.results, n_boot=cfg.stats.n_boot)
    compare(data.results, cfg.stats.reference, n_boot=cfg.stats.n_boot, n_perm=cfg.stats.n_perm)
    compare(data.results, cfg.stats.safety_reference, SAFETY, n_boot=cfg.stats.n_boot, n_perm=cfg.stats.n_perm)
    subgroups(data.results, cfg.stats.reference, n_boot=1000)
    t_stats = time.perf_counter() - t0
    label = f"{len(specs)} policies x {n} patients"
    target = None if quick else TARGET_S  # the target is for 2000 patients
    return [
        {"benchmark": "trial_9_policies", "metric": f"simulation, {label}, n_jobs=2", "value": t_all, "unit": "s",
         "target": target, "ratio": None if target is None else t_all / target},
        {"benchmark": "trial_9_policies", "metric": f"the {len(protocols_only)} non-oracle policies alone",
         "value": t_fast, "unit": "s"},
        {"benchmark": "trial_9_policies", "metric": "oracle share of the simulation", "value": 1 - t_fast / t_all,
         "unit": "fraction"},
        {"benchmark": "trial_9_policies", "metric": "statistics (2000 bootstrap replicates)", "value": t_stats,
         "unit": "s"},
        {"benchmark": "trial_9_policies", "metric": "simulation + statistics", "value": t_all + t_stats, "unit": "s",
         "target": target, "ratio": None if target is None else (t_all + t_stats) / target},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
