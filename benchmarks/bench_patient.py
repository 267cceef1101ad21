"""Benchmarks of the batched virtual patient (``adaptrx.patient``).

Measures, in one run on this machine:

* ``week_10k``: one simulated week (:meth:`PatientSimulator.step_week`) for 10,000 patients; median and p90
  over repeated runs of the *same* week (state restored between repetitions), against the 50 ms target;
* ``throughput``: patient-weeks per second at 1, 64, 1024, 4096 and 16384 patients;
* ``memory``: bytes per patient held in the latent state, the parameter arrays and the noise keys, and the
  peak of the temporary arrays a week allocates (numpy reports its allocations to :mod:`tracemalloc`);
* ``noise_share``: share of the week spent generating random numbers (the same
  :class:`NoiseStreams` calls that ``step_week`` makes, timed alone).

Run it with ``python benchmarks/run.py`` (all benchmarks) or ``python benchmarks/bench_patient.py``.
"""

from __future__ import annotations

import dataclasses
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from adaptrx.patient import NoiseStreams, PatientSimulator, make_cohort
from adaptrx.patient import simulator as _simulator_module

# The per-day channels step_week draws (private names of the simulator; fall back to today's lists).
_DAY_UNIFORMS = list(getattr(_simulator_module, "_DAY_UNIFORMS", ["attend", "flare", "diary_missing"]))
_DAY_NORMALS = list(
    getattr(
        _simulator_module, "_DAY_NORMALS", ["eta", "flare_size", "obs_session", "obs_morning", "obs_diary", "obs_rpe"]
    )
)

NAME = "patient"
WEEK_TARGET_S = 0.050  # one week for 10,000 patients
N_WEEK = 10_000
SIZES = (1, 64, 1024, 4096, 16384)
COHORT_SEED, NOISE_SEED, ACTION_SEED = 0, 1, 2
WARMUP_WEEKS = 4


def _actions(n: int, seed: int = ACTION_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A realistic mix of prescriptions: loads 0.3-0.9 of baseline capacity, 0-5 sessions, any delivery."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 0.9, n), rng.integers(0, 6, n), rng.integers(0, 3, n)


def _simulator(n: int) -> PatientSimulator:
    cohort = make_cohort("knee_oa", n, seed=COHORT_SEED)
    return PatientSimulator(cohort, seed=NOISE_SEED)


def _warm(sim: PatientSimulator, actions: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    for _ in range(WARMUP_WEEKS):
        sim.step_week(*actions)
    return sim.get_state()


def _time_repeated(fn: Callable[[], Any], reset: Callable[[], None], repeats: int) -> np.ndarray:
    """Seconds of ``fn()`` per repetition, with ``reset()`` (untimed) before each; GC off while timing."""
    out = np.empty(repeats)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            reset()
            t0 = time.perf_counter()
            fn()
            out[i] = time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


def bench_week(repeats: int = 30) -> dict[str, float]:
    """Median and p90 seconds of one week for 10,000 patients (same week each repetition)."""
    sim = _simulator(N_WEEK)
    actions = _actions(N_WEEK)
    snapshot = _warm(sim, actions)
    for _ in range(3):  # warm-up of the timed call itself
        sim.set_state(snapshot)
        sim.step_week(*actions)
    t = _time_repeated(lambda: sim.step_week(*actions), lambda: sim.set_state(snapshot), repeats)
    return {"median_s": float(np.median(t)), "p90_s": float(np.percentile(t, 90)), "min_s": float(t.min())}


def bench_throughput(sizes: tuple[int, ...] = SIZES, min_seconds: float = 0.4) -> dict[int, float]:
    """Patient-weeks per second for each batch size (consecutive weeks, restarted from week 4)."""
    out: dict[int, float] = {}
    for n in sizes:
        sim = _simulator(n)
        actions = _actions(n)
        snapshot = _warm(sim, actions)
        sim.set_state(snapshot)
        weeks, elapsed = 0, 0.0
        while elapsed < min_seconds or weeks < 5:
            if weeks % 26 == 0:  # keep the episode in a realistic range (half a year)
                sim.set_state(snapshot)
            t0 = time.perf_counter()
            sim.step_week(*actions)
            elapsed += time.perf_counter() - t0
            weeks += 1
        out[n] = n * weeks / elapsed
    return out


def _nbytes(obj: Any) -> int:
    return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray))


def bench_memory(n: int = N_WEEK) -> dict[str, float]:
    """Bytes per patient: latent state, parameters (+ derived per-patient arrays), noise keys, week peak."""
    sim = _simulator(n)
    actions = _actions(n)
    state = sum(v.nbytes for v in sim.get_state().values())
    params = sum(getattr(sim.p, f.name).nbytes for f in dataclasses.fields(sim.p))
    derived = sum(
        v.nbytes for k, v in vars(sim).items() if isinstance(v, np.ndarray) and v.shape == (n,) and k != "state"
    )
    keys = sim.noise.keys.nbytes
    sim.step_week(*actions)
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    sim.step_week(*actions)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "state_B": state / n,
        "params_B": (params + derived) / n,
        "keys_B": keys / n,
        "total_B": (state + params + derived + keys) / n,
        "week_peak_B": (peak - base) / n,
    }


def bench_noise_share(repeats: int = 30) -> dict[str, float]:
    """Seconds spent in the NoiseStreams calls of one week (same shapes as step_week) vs the whole week."""
    sim = _simulator(N_WEEK)
    actions = _actions(N_WEEK)
    snapshot = _warm(sim, actions)
    noise: NoiseStreams = sim.noise
    day = sim.state.day.copy()

    def draws() -> None:
        noise.uniform(_DAY_UNIFORMS, day, 7)
        noise.normal(_DAY_NORMALS, day, 7)
        noise.uniform(["dropout"], day, 1)
        noise.normal(["obs_function", "obs_capacity"], day, 1)

    for _ in range(3):
        draws()
    t_noise = _time_repeated(draws, lambda: None, repeats)
    t_week = _time_repeated(lambda: sim.step_week(*actions), lambda: sim.set_state(snapshot), repeats)
    med_noise, med_week = float(np.median(t_noise)), float(np.median(t_week))
    return {"noise_s": med_noise, "week_s": med_week, "share": med_noise / med_week}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run every patient benchmark; one row per reported number.

    Each row: ``benchmark``, ``metric``, ``value``, ``unit``, and where a target exists ``target`` and
    ``ratio`` (value / target for times, so < 1 is better than the target).
    """
    repeats = 10 if quick else 30
    rows: list[dict[str, Any]] = []
    week = bench_week(repeats)
    for key in ("median_s", "p90_s"):
        rows.append({
            "benchmark": "week_10k", "metric": key.removesuffix("_s"), "value": week[key] * 1e3, "unit": "ms",
            "target": WEEK_TARGET_S * 1e3, "ratio": week[key] / WEEK_TARGET_S,
        })
    for n, rate in bench_throughput(min_seconds=0.15 if quick else 0.4).items():
        rows.append({"benchmark": "throughput", "metric": f"n={n}", "value": rate, "unit": "patient-weeks/s"})
    for key, value in bench_memory().items():
        rows.append({"benchmark": "memory", "metric": key.removesuffix("_B"), "value": value, "unit": "B/patient"})
    share = bench_noise_share(repeats)
    rows.append({"benchmark": "noise_share", "metric": "noise", "value": share["noise_s"] * 1e3, "unit": "ms"})
    rows.append({"benchmark": "noise_share", "metric": "week", "value": share["week_s"] * 1e3, "unit": "ms"})
    rows.append({"benchmark": "noise_share", "metric": "share", "value": 100 * share["share"], "unit": "% of week"})
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(quick="--quick" in sys.argv))
