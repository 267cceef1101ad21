"""Benchmarks of the batched virtual patient (``adaptrx.patient``, compiled kernel).

Measures, in one run on this machine (single thread):

* ``single``: one :meth:`PatientSimulator.step_week` call for ONE patient, Python overhead included
  (median microseconds), against the 25 us target (an RL env step);
* ``week_4096``: one simulated week for 4096 patients (median and p90 over repetitions of the *same* week,
  state restored between repetitions), against the 2.5 ms target (>= 1.6 M patient-weeks/s);
* ``week_10k``: the same for 10,000 patients, against the 50 ms target of the numpy era;
* ``throughput``: patient-weeks per second at 1, 64, 1024, 4096 and 16384 patients;
* ``replace``: :meth:`PatientSimulator.replace` of 1 and 16 patients of a 4096-patient batch (an env
  reset), and ``state`` round trips (``get_state`` + ``set_state``) of 4096 patients;
* ``memory``: bytes per patient held in the latent state, the parameter matrix and the noise keys, and the
  bytes a week allocates (its output array, as numpy reports it to :mod:`tracemalloc`).

The first use compiles the kernel or loads it from numba's cache; that happens before any timing.
Run it with ``python benchmarks/run.py`` (all benchmarks) or ``python benchmarks/bench_patient.py``.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from adaptrx.patient import PatientSimulator, make_cohort, stream_keys

NAME = "patient"
SINGLE_TARGET_S = 25e-6  # one step_week call for one patient
WEEK_4096_TARGET_S = 2.5e-3  # one week for 4096 patients
WEEK_10K_TARGET_S = 0.050  # one week for 10,000 patients
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


def _warm(sim: PatientSimulator, actions: tuple[Any, Any, Any]) -> dict[str, np.ndarray]:
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


def bench_single(repeats: int = 2000) -> dict[str, float]:
    """Seconds of one step_week call for one patient (scalar actions, as an env passes them)."""
    sim = _simulator(1)
    snapshot = _warm(sim, (0.5, 3, 2))
    steps = [0]

    def reset() -> None:
        steps[0] += 1
        if steps[0] % 26 == 0:  # keep the episode in a realistic range (half a year)
            sim.set_state(snapshot)

    t = _time_repeated(lambda: sim.step_week(0.5, 3, 2), reset, repeats)
    return {"median_s": float(np.median(t)), "p90_s": float(np.percentile(t, 90))}


def bench_week(n: int, repeats: int = 30) -> dict[str, float]:
    """Median and p90 seconds of one week for ``n`` patients (same week each repetition)."""
    sim = _simulator(n)
    actions = _actions(n)
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


def bench_replace(n: int = 4096, repeats: int = 200) -> dict[str, float]:
    """Median seconds of replace() for 1 and 16 patients (column mappings, as an env reset passes them),
    and of a get_state + set_state round trip of ``n`` patients."""
    sim = _simulator(n)
    pool = make_cohort("knee_oa", 64, seed=COHORT_SEED + 1)
    rng = np.random.default_rng(ACTION_SEED)
    out: dict[str, float] = {}
    for m in (1, 16):
        rows = pool.iloc[:m]
        columns = {c: rows[c].to_numpy() for c in rows.columns}
        keys = stream_keys(rows["patient_id"], NOISE_SEED)
        index = rng.choice(n, size=m, replace=False)
        sim.replace(index, columns, keys)  # warm-up
        t = _time_repeated(lambda: sim.replace(index, columns, keys), lambda: None, repeats)  # noqa: B023
        out[f"replace_{m}_s"] = float(np.median(t))
    snapshot = sim.get_state()
    t = _time_repeated(lambda: sim.set_state(sim.get_state()), lambda: None, max(10, repeats // 10))
    out["state_round_trip_s"] = float(np.median(t))
    sim.set_state(snapshot)
    return out


def bench_memory(n: int = 10_000) -> dict[str, float]:
    """Bytes per patient: latent state, parameter matrix (cohort and derived), noise keys, a week's output."""
    sim = _simulator(n)
    actions = _actions(n)
    state = sum(v.nbytes for v in sim.get_state().values())
    params = sim.p.matrix.nbytes
    keys = sim.noise.keys.nbytes
    sim.step_week(*actions)
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    result = sim.step_week(*actions)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return {
        "state_B": state / n,
        "params_B": params / n,
        "keys_B": keys / n,
        "total_B": (state + params + keys) / n,
        "week_peak_B": (peak - base) / n,
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run every patient benchmark; one row per reported number.

    Each row: ``benchmark``, ``metric``, ``value``, ``unit``, and where a target exists ``target`` and
    ``ratio`` (value / target for times, so < 1 is better than the target).
    """
    repeats = 10 if quick else 30
    rows: list[dict[str, Any]] = []
    single = bench_single(500 if quick else 2000)
    for key in ("median_s", "p90_s"):
        rows.append({
            "benchmark": "single", "metric": key.removesuffix("_s"), "value": single[key] * 1e6, "unit": "us",
            "target": SINGLE_TARGET_S * 1e6, "ratio": single[key] / SINGLE_TARGET_S,
        })
    for name, n, target in (("week_4096", 4096, WEEK_4096_TARGET_S), ("week_10k", 10_000, WEEK_10K_TARGET_S)):
        week = bench_week(n, repeats)
        for key in ("median_s", "p90_s"):
            rows.append({
                "benchmark": name, "metric": key.removesuffix("_s"), "value": week[key] * 1e3, "unit": "ms",
                "target": target * 1e3, "ratio": week[key] / target,
            })
        rows.append({"benchmark": name, "metric": "rate", "value": n / week["median_s"], "unit": "patient-weeks/s"})
    for n, rate in bench_throughput(min_seconds=0.15 if quick else 0.4).items():
        rows.append({"benchmark": "throughput", "metric": f"n={n}", "value": rate, "unit": "patient-weeks/s"})
    for key, value in bench_replace(repeats=50 if quick else 200).items():
        rows.append({"benchmark": "replace", "metric": key.removesuffix("_s"), "value": value * 1e6, "unit": "us"})
    for key, value in bench_memory().items():
        rows.append({"benchmark": "memory", "metric": key.removesuffix("_B"), "value": value, "unit": "B/patient"})
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(quick="--quick" in sys.argv))
