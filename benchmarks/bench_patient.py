"""Benchmarks of the batched virtual patient (``adaptrx.patient``, compiled kernel).

Measures, in one run on this machine (single thread):

* ``single``: one :meth:`PatientSimulator.step_week` call for ONE patient, Python overhead included
  (median microseconds), against the 25 us target (an RL env step);
* ``week_4096``: one simulated week for 4096 patients (median and p90 over repetitions of the *same* week,
  state restored between repetitions), against the 2.5 ms target (>= 1.6 M patient-weeks/s);
* ``week_10k``: the same for 10,000 patients, against the 50 ms target of the numpy era;
* ``throughput``: patient-weeks per second at exactly n = 1, 64, 1024, 4096 and 16384 patients, one
  :meth:`PatientSimulator.step_week` call per simulated week for the whole batch (consecutive weeks, the
  batch restarted from week 4, untimed, every 26 weeks). The sizes are measured side by side: interleaved
  rounds (every size once per round, ~0.1 s each), median over rounds. The n=4096 row carries the
  target >= 1,000,000 patient-weeks/s (ratio = target / measured, below 1 beats it). The curve is saved as
  ``benchmarks/figures/scaling.png`` (log-log, with the target marked) and its path returned as a row;
* ``replace``: :meth:`PatientSimulator.replace` of 1 and 16 patients of a 4096-patient batch (an env
  reset), and ``state`` round trips (``get_state`` + ``set_state``) of 4096 patients;
* ``memory``: bytes per patient (measured at 10,000 patients) of the numpy arrays a simulator holds between
  weeks: the latent state matrix (20 float64), the parameter matrix (31 float64: cohort and derived), the
  intake observation (6 float64) and the noise-stream key (one uint64); their sum is ``held total``. The
  cohort table the simulator keeps for :attr:`PatientSimulator.cohort` (pandas, strings included, as
  ``memory_usage(deep=True)`` counts it) is reported separately, and so is the peak that one week
  allocates (its output matrix and typed copies, as numpy reports it to :mod:`tracemalloc`). The model
  constants (one small vector per batch) and Python object overhead are not counted.

The first use compiles the kernel or loads it from numba's cache; that happens before any timing.
Run it with ``python benchmarks/run.py`` (all benchmarks) or ``python benchmarks/bench_patient.py``.
"""

from __future__ import annotations

import gc
import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from adaptrx.patient import PatientSimulator, make_cohort, stream_keys

NAME = "patient"
SINGLE_TARGET_S = 25e-6  # one step_week call for one patient
WEEK_4096_TARGET_S = 2.5e-3  # one week for 4096 patients
WEEK_10K_TARGET_S = 0.050  # one week for 10,000 patients
THROUGHPUT_TARGET = 1_000_000.0  # patient-weeks/s at THROUGHPUT_TARGET_N patients
THROUGHPUT_TARGET_N = 4096
SIZES = (1, 64, 1024, 4096, 16384)
EPISODE_WEEKS = 26  # throughput runs restart the batch from its week-4 state after this many weeks
ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "benchmarks" / "figures" / "scaling.png"
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


def bench_throughput(
    sizes: tuple[int, ...] = SIZES, rounds: int = 7, seconds: float = 0.1,
) -> dict[int, dict[str, float]]:
    """Patient-weeks per second for each batch size: one ``step_week`` call per week for the whole batch.

    Every size is measured once per round for about ``seconds`` of simulation (at least 5 weeks), the sizes
    interleaved so that all see the same machine load; the batch restarts (untimed) from its week-4 state
    every 26 weeks. Returns, per size, the median rate over rounds and the lowest and highest.
    """
    runs = []
    for n in sizes:
        sim = _simulator(n)
        actions = _actions(n)
        snapshot = _warm(sim, actions)
        sim.set_state(snapshot)
        sim.step_week(*actions)  # warm-up of the timed call itself
        runs.append((n, sim, actions, snapshot, [1]))
    rates: dict[int, list[float]] = {n: [] for n in sizes}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for n, sim, actions, snapshot, week in runs:
                weeks, elapsed = 0, 0.0
                while elapsed < seconds or weeks < 5:
                    if week[0] % EPISODE_WEEKS == 0:  # keep the episode in a realistic range (half a year)
                        sim.set_state(snapshot)
                    t0 = time.perf_counter()
                    sim.step_week(*actions)
                    elapsed += time.perf_counter() - t0
                    weeks += 1
                    week[0] += 1
                rates[n].append(n * weeks / elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {
        n: {"median": float(np.median(r)), "min": float(np.min(r)), "max": float(np.max(r))}
        for n, r in rates.items()
    }


def plot_scaling(throughput: dict[int, dict[str, float]], path: Path = FIGURE) -> Path:
    """Save the throughput curve (log-x patients, log-y patient-weeks/s, the target marked) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    sizes = sorted(throughput)
    median = np.array([throughput[n]["median"] for n in sizes])
    low = np.array([throughput[n]["min"] for n in sizes])
    high = np.array([throughput[n]["max"] for n in sizes])
    fig = Figure(figsize=(6.4, 4.4), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.fill_between(sizes, low, high, color="C0", alpha=0.2, linewidth=0, label="lowest-highest round")
    ax.plot(sizes, median, "o-", color="C0", label="median over rounds")
    ax.axhline(THROUGHPUT_TARGET, color="C3", linestyle="--", linewidth=1,
               label=f"target {THROUGHPUT_TARGET:,.0f} patient-weeks/s at n={THROUGHPUT_TARGET_N}")
    ax.axvline(THROUGHPUT_TARGET_N, color="C3", linestyle=":", linewidth=1)
    ax.plot([THROUGHPUT_TARGET_N], [THROUGHPUT_TARGET], marker="x", color="C3", markersize=9, markeredgewidth=2)
    if THROUGHPUT_TARGET_N in throughput:
        rate = throughput[THROUGHPUT_TARGET_N]["median"]
        ax.annotate(f"n={THROUGHPUT_TARGET_N:,}: {rate / 1e6:.2f} M/s", (THROUGHPUT_TARGET_N, rate),
                    textcoords="offset points", xytext=(0, 14), ha="center", color="C0", fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{n:,}" for n in sizes])
    ax.set_ylim(min(low.min(), THROUGHPUT_TARGET) / 3, max(high.max(), THROUGHPUT_TARGET) * 3)
    ax.set_xlabel("patients in the batch (one step_week call per week)")
    ax.set_ylabel("patient-weeks per second")
    ax.set_title("PatientSimulator.step_week throughput (knee_oa, 1 thread)", fontsize=11)
    fig.text(0.99, 0.01, f"{platform.machine()}, {os.cpu_count()} CPUs", ha="right", va="bottom", fontsize=7,
             color="0.4")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


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
    """Bytes per patient of the arrays a simulator holds between weeks (state, parameters, intake, noise
    keys, and their sum), of the cohort table it keeps, and the peak one week allocates."""
    sim = _simulator(n)
    actions = _actions(n)
    params, state, _, keys = sim.kernel_arrays()
    intake = sim.intake_matrix()
    held = state.nbytes + params.nbytes + intake.nbytes + keys.nbytes
    cohort = int(sim.cohort.memory_usage(deep=True).sum())
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
        "held: state matrix": state.nbytes / n,
        "held: parameter matrix": params.nbytes / n,
        "held: intake observation": intake.nbytes / n,
        "held: noise key": keys.nbytes / n,
        "held total (arrays above)": held / n,
        "held: cohort table (pandas, deep)": cohort / n,
        "one week: allocation peak": (peak - base) / n,
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run every patient benchmark; one row per reported number.

    Each row: ``benchmark``, ``metric``, ``value``, ``unit``, and where a target exists ``target`` and
    ``ratio`` (value / target for times, target / value for throughputs, so < 1 is better than the target).
    Also writes ``benchmarks/figures/scaling.png`` (its path is the ``throughput`` / ``figure`` row's value).
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
    throughput = bench_throughput(rounds=3 if quick else 7, seconds=0.05 if quick else 0.1)
    for n, rate in throughput.items():
        row = {"benchmark": "throughput", "metric": f"n={n}", "value": rate["median"], "unit": "patient-weeks/s"}
        if n == THROUGHPUT_TARGET_N:  # a throughput: ratio = target / measured, below 1 beats the target
            row.update(target=THROUGHPUT_TARGET, ratio=THROUGHPUT_TARGET / rate["median"])
        rows.append(row)
    figure = plot_scaling(throughput)
    rows.append({"benchmark": "throughput", "metric": "figure", "value": figure.relative_to(ROOT).as_posix(),
                 "unit": "png"})
    for key, value in bench_replace(repeats=50 if quick else 200).items():
        rows.append({"benchmark": "replace", "metric": key.removesuffix("_s"), "value": value * 1e6, "unit": "us"})
    for key, value in bench_memory().items():
        rows.append({"benchmark": "memory n=10000", "metric": key, "value": value, "unit": "B/patient"})
    return rows


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import print_table

    print_table(run(quick="--quick" in sys.argv))
