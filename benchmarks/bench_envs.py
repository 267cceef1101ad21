"""Benchmarks of the Gymnasium/SB3 adapters (``adaptrx.envs``), each measured side by side in one run.

* ``single_env``: ``step()`` throughput of ``gym.make("AdaptRx/Progression-v0")`` (one simulated week per
  step, resets included when episodes end) against ``gym.make("CartPole-v1")`` in the same process,
  alternating rounds so both see the same machine load. Target: at least 0.4 of CartPole's steps/s.
* ``vec_env scaling``: patient-weeks per second of the raw kernel (``PatientSimulator.step_week``, fixed
  prescriptions) and of the whole vector env (``PatientVecEnv.step``: action decoding, simulation,
  observations, rewards, dropout tails, lazy infos, auto-resets of finished envs with new patients; fixed
  random Box actions per env) at 1 ... 4096 patients, side by side in interleaved rounds (median of rounds), and
  their ratio; ``figures/vec_scaling.png``. The vector env draws its next patients and runs its dropouts'
  untreated tails in one worker thread, overlapping its main thread (a second core does that work); the same
  env with ``draw_ahead=False`` (everything on one thread) is measured in the same rounds and reported
  beside it. Targets at 4096: the vector env >= 1,000,000 patient-weeks/s and >= 0.5 x the kernel's rate of the
  same run; the kernel >= 1,000,000.
* ``vec_env step n=4096``: where a step goes (ms per step, mean of 40 steps after 30 warm-up steps, each
  component timed inside the real step): on the main thread the compiled env step (kernel + features + reward
  + cost), of which the raw kernel's week (measured alongside on its own patients; the difference is labelled
  features + reward), the resets (generators, the drawn-ahead patients, ``replace``, first observations), the
  wait for the dropouts' untreated tails (the ``dropout`` reward term) and the rest (the lazy infos' snapshot,
  dones, rewards); in the worker thread, overlapped with those, the tails and the next patients' draws; and
  what building every info dict would add (``infos.to_dicts()``, the old eager infos; not part of a step).
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
import threading
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import adaptrx  # noqa: F401  (registers the env ids)
from adaptrx.agents.zoo import zoo_hyperparams
from adaptrx.envs import PatientVecEnv, episode_engine, next_patients
from adaptrx.envs import compiled_step as engine
from adaptrx.envs.episode_engine import EpisodeBatch
from adaptrx.patient import PatientSimulator, make_cohort

NAME = "envs"
SINGLE_TARGET = 0.4  # of CartPole's steps/s (the issue: 1/3 with margin)
BATCH_TARGET = 1_000_000.0  # patient-weeks/s at 4096 patients (kernel and vector env)
VEC_RATIO_TARGET = 0.5  # PatientVecEnv.step / kernel rate at 4096 patients
SCALING_SIZES = (1, 16, 64, 256, 1024, 4096)
FIGURE = Path(__file__).resolve().parent / "figures" / "vec_scaling.png"
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


def _kernel_setup(n: int) -> tuple[Any, tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
    """The raw kernel's workload at ``n`` patients: a simulator, fixed prescriptions, its week-4 state."""
    rng = np.random.default_rng(2)
    sim = PatientSimulator(make_cohort("knee_oa", n, seed=0), seed=1)
    rx = rng.uniform(0.3, 0.9, n), rng.integers(0, 6, n), rng.integers(0, 3, n)
    for _ in range(4):
        sim.step_week(*rx)
    return sim, rx, sim.get_state()


def _vec_setup(n: int, draw_ahead: bool = True) -> tuple[PatientVecEnv, np.ndarray]:
    """The vector env's workload at ``n`` patients: seeded, reset, fixed Box actions (each env its own)."""
    vec = PatientVecEnv(n, draw_ahead=draw_ahead)
    vec.seed(0)
    vec.reset()
    actions = np.random.default_rng(2).uniform(-0.3, 0.3, size=(n, 3)).astype(np.float32)
    for _ in range(30):  # past the first episodes' synchronised ends: resets spread over the steps
        vec.step(actions)
    return vec, actions


def _rate(step: Any, n: int, seconds: float) -> float:
    """Patient-weeks/s of calling ``step()`` (``n`` patient-weeks each) for about ``seconds`` (>= 5 calls)."""
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or calls < 5:
        step()
        calls += 1
    return calls * n / (time.perf_counter() - t0)


def bench_scaling(sizes: tuple[int, ...] = SCALING_SIZES, rounds: int = 5,
                  seconds: float = 0.2) -> dict[int, dict[str, float]]:
    """Patient-weeks/s of the raw kernel (``PatientSimulator.step_week``, restarted from its week-4 state every
    26 weeks), of ``PatientVecEnv.step`` (auto-resets included; next patients drawn ahead in its worker thread)
    and of ``PatientVecEnv(draw_ahead=False).step`` (everything on the calling thread) at each size, side by
    side: every round runs the three at every size for about ``seconds`` each. Returns per size the median
    rates and the medians of the per-round ratios to the kernel (``ratio``, ``ratio_one_thread``)."""
    runs = [(n, *_kernel_setup(n), _vec_setup(n), _vec_setup(n, draw_ahead=False)) for n in sizes]
    rates: dict[int, dict[str, list[float]]] = {n: {"kernel": [], "vec": [], "one": []} for n in sizes}
    gc.disable()
    try:
        for _ in range(rounds):
            for n, sim, rx, start, (vec, actions), (one, _) in runs:
                weeks = [0]

                def kernel_week(sim: Any = sim, rx: Any = rx, start: Any = start, weeks: list[int] = weeks) -> None:
                    if weeks[0] and weeks[0] % 26 == 0:
                        sim.set_state(start)  # untimed would be fairer; it is ~1 % of 26 weeks
                    sim.step_week(*rx)
                    weeks[0] += 1

                rates[n]["kernel"].append(_rate(kernel_week, n, seconds))
                rates[n]["vec"].append(_rate(lambda vec=vec, actions=actions: vec.step(actions), n, seconds))
                rates[n]["one"].append(_rate(lambda one=one, actions=actions: one.step(actions), n, seconds))
    finally:
        gc.enable()
        for *_, (vec, _), _one in runs:
            vec.close()
    out = {}
    for n, r in rates.items():
        out[n] = {"kernel": float(np.median(r["kernel"])), "vec": float(np.median(r["vec"])),
                  "one": float(np.median(r["one"])),
                  "ratio": float(np.median(np.divide(r["vec"], r["kernel"]))),
                  "ratio_one_thread": float(np.median(np.divide(r["one"], r["kernel"])))}
    return out


class _Timer:
    """Wraps ``owner.name`` (a function) to add its wall time to ``totals[label]`` until ``restore()``; time
    spent in other threads than the main one goes to ``totals[label + " (worker)"]``."""

    def __init__(self, owner: Any, name: str, totals: dict[str, float], label: str) -> None:
        self.owner, self.name, self.original = owner, name, getattr(owner, name)
        original = self.original

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                key = label if threading.current_thread() is threading.main_thread() else label + " (worker)"
                totals[key] = totals.get(key, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)

    def restore(self) -> None:
        setattr(self.owner, self.name, self.original)


def bench_breakdown(n: int = 4096, steps: int = 40) -> dict[str, float]:
    """Where a ``PatientVecEnv.step`` at ``n`` patients goes, in ms per step (means over ``steps`` steps, after 30
    warm-up steps), with the raw kernel's week at the same size measured in the same loop. On the main thread:
    the compiled env step (kernel + features + reward + cost), the resets (generators, taking the drawn-ahead
    patients, ``replace``, first observations), settling the dropouts (waiting for their untreated tails, the
    ``dropout`` reward term) and the rest (the lazy infos' snapshot, dones, rewards). In the worker thread,
    overlapping the main thread: the dropouts' untreated tails and the next patients' draws. And what building
    every info dict would add (``infos.to_dicts()``, the old eager infos; not part of a step)."""
    sim, rx, start = _kernel_setup(n)
    vec, actions = _vec_setup(n)
    totals: dict[str, float] = {}
    timers = [_Timer(engine, "step_continuous", totals, "engine"),
              _Timer(episode_engine, "_tails", totals, "tails"),
              _Timer(next_patients, "new_patients", totals, "draws"),
              _Timer(EpisodeBatch, "settle", totals, "settle"),
              _Timer(PatientVecEnv, "_start", totals, "resets")]
    kernel_s = step_s = 0.0
    resets, kept = 0, []
    gc.disable()
    try:
        for week in range(steps):
            if week % 26 == 0:
                sim.set_state(start)
            t0 = time.perf_counter()
            sim.step_week(*rx)
            t1 = time.perf_counter()
            _, _, dones, infos = vec.step(actions)
            kernel_s, step_s = kernel_s + t1 - t0, step_s + time.perf_counter() - t1
            resets += int(dones.sum())
            kept.append(infos)
        vec.close()  # waits for the worker's last draws
        t0 = time.perf_counter()  # after the steps: the worker's timings stay clear of this pure-Python pass
        for infos in kept:
            infos.to_dicts()
        full_s = time.perf_counter() - t0
    finally:
        gc.enable()
        for timer in timers:
            timer.restore()
    ms = 1e3 / steps
    main = {key: totals.get(key, 0.0) * ms for key in ("engine", "resets", "settle")}
    return {"step": step_s * ms, "kernel": kernel_s * ms, **main,
            "features+reward": main["engine"] - kernel_s * ms, "resets per step": resets / steps,
            "rest": step_s * ms - sum(main.values()),
            "worker tails": totals.get("tails (worker)", 0.0) * ms,
            "worker draws": totals.get("draws (worker)", 0.0) * ms,
            "main draws": totals.get("draws", 0.0) * ms,
            "full infos": full_s * ms}


def _sb3_info_reads(infos: Any) -> None:
    """What SB3's on-policy rollout reads of every env's info each step (``_update_info_buffer``)."""
    for info in infos:
        info.get("episode")
        info.get("is_success")


def bench_sb3_infos(n: int = 4096, steps: int = 60) -> dict[str, float]:
    """ms per step of ``PatientVecEnv(n).step`` alone and of the same env under SB3's ``VecMonitor`` followed by
    the info reads of SB3's rollout (every env's info is made and read each step), side by side on the same
    patients and actions (steps alternated), then the same with ``gc.freeze()`` (the objects alive at that point
    moved out of the collector's reach; undone afterwards). The difference is what SB3's per-env info handling
    adds to a step at ``n`` envs; the frozen run shows the garbage collector's share of it."""
    from stable_baselines3.common.vec_env import VecMonitor

    raw, actions = _vec_setup(n)
    monitored = VecMonitor(_vec_setup(n)[0])
    out: dict[str, float] = {}
    for label in ("", " frozen"):
        if label:
            gc.freeze()
        raw_s = monitored_s = 0.0
        try:
            for _ in range(steps):
                t0 = time.perf_counter()
                raw.step(actions)
                t1 = time.perf_counter()
                _sb3_info_reads(monitored.step(actions)[3])
                raw_s, monitored_s = raw_s + t1 - t0, monitored_s + time.perf_counter() - t1
        finally:
            gc.unfreeze()
        out["raw" + label], out["sb3" + label] = raw_s * 1e3 / steps, monitored_s * 1e3 / steps
    raw.close()
    monitored.close()
    return out


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


def plot_scaling(scaling: dict[int, dict[str, float]], path: Path = FIGURE) -> Path:
    """Save the kernel's and the vector env's patient-weeks/s against the number of patients (log-log)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    sizes = sorted(scaling)
    fig = Figure(figsize=(6.4, 4.4), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(sizes, [scaling[n]["kernel"] for n in sizes], "o-", color="C0",
            label="raw kernel (PatientSimulator.step_week)")
    ax.plot(sizes, [scaling[n]["vec"] for n in sizes], "s-", color="C1",
            label="PatientVecEnv.step (resets, infos included)")
    ax.plot(sizes, [scaling[n]["one"] for n in sizes], "^:", color="C2",
            label="PatientVecEnv(draw_ahead=False): one thread")
    ax.axhline(BATCH_TARGET, color="C3", linestyle="--", linewidth=1, label="target 1,000,000 at n=4,096")
    for n in sizes:
        ax.annotate(f"{scaling[n]['ratio']:.2f}", (n, scaling[n]["vec"]), textcoords="offset points",
                    xytext=(-6, 6), ha="right", color="C1", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(sizes))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{n:,}" for n in sizes])
    ax.set_xlabel("patients (envs) stepped together")
    ax.set_ylabel("patient-weeks per second")
    ax.set_title("Vector env vs raw kernel (numbers: vec / kernel, same run)", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def run(quick: bool = False) -> list[dict[str, Any]]:
    single = bench_single_env(rounds=3 if quick else 9, seconds=0.2 if quick else 0.5)
    scaling = bench_scaling(rounds=3 if quick else 7, seconds=0.05 if quick else 0.25)
    parts = bench_breakdown(steps=10 if quick else 40)
    sb3_infos = bench_sb3_infos(steps=10 if quick else 60)
    ppo = bench_ppo(rollouts=6 if quick else 24)
    ours, dummy, subproc = f"PatientVecEnv({PPO_ENVS})", f"DummyVecEnv({PPO_ENVS})", f"SubprocVecEnv({SUBPROC_ENVS})"
    speedup = ppo[ours]["learn"] / ppo[dummy]["learn"]
    rows = [
        {"benchmark": "single_env", "metric": "adaptrx steps/s", "value": single["adaptrx"], "unit": "steps/s"},
        {"benchmark": "single_env", "metric": "CartPole-v1 steps/s", "value": single["cartpole"], "unit": "steps/s"},
        {"benchmark": "single_env", "metric": "adaptrx / CartPole", "value": single["fraction"], "unit": "x",
         "target": SINGLE_TARGET, "ratio": SINGLE_TARGET / single["fraction"]},
    ]
    big = max(scaling)
    for n, r in scaling.items():
        kernel = {"benchmark": "vec_env scaling", "metric": f"n={n} raw kernel", "value": r["kernel"],
                  "unit": "patient-weeks/s"}
        vec = {"benchmark": "vec_env scaling", "metric": f"n={n} PatientVecEnv.step", "value": r["vec"],
               "unit": "patient-weeks/s"}
        ratio = {"benchmark": "vec_env scaling", "metric": f"n={n} PatientVecEnv / kernel", "value": r["ratio"],
                 "unit": "x"}
        if n == big:
            kernel.update(target=BATCH_TARGET, ratio=BATCH_TARGET / r["kernel"])
            vec.update(target=BATCH_TARGET, ratio=BATCH_TARGET / r["vec"])
            ratio.update(target=VEC_RATIO_TARGET, ratio=VEC_RATIO_TARGET / r["ratio"])
        one = {"benchmark": "vec_env scaling", "metric": f"n={n} PatientVecEnv(draw_ahead=False).step",
               "value": r["one"], "unit": "patient-weeks/s"}
        one_ratio = {"benchmark": "vec_env scaling", "metric": f"n={n} PatientVecEnv(draw_ahead=False) / kernel",
                     "value": r["ratio_one_thread"], "unit": "x"}
        rows += [kernel, vec, ratio, one, one_ratio]
    rows.append({"benchmark": "vec_env scaling", "metric": "figure",
                 "value": plot_scaling(scaling).relative_to(Path(__file__).resolve().parents[1]).as_posix(),
                 "unit": "png"})
    bench = f"vec_env step n={big}"
    labels = {"step": "whole step", "kernel": "raw kernel week (alongside, own patients)",
              "engine": "compiled env step (kernel + features + reward + cost)",
              "features+reward": "  of which features + reward (env step - raw kernel)",
              "resets": f"resets ({parts['resets per step']:.0f} envs per step: generators, drawn-ahead patients, "
                        "replace, first observations)",
              "settle": "dropouts settled (waiting for their untreated tails, written into reward and cost)",
              "rest": "rest (lazy infos' snapshot, dones, rewards)",
              "worker tails": "worker thread, overlapped: dropout tails (untreated future of this week's dropouts)",
              "worker draws": "worker thread, overlapped: next patients' draws (copula, inverse beta CDF, keys)",
              "main draws": "patients drawn on the main thread (not drawn ahead: first episodes, reseeds)",
              "full infos": "building every info dict (infos.to_dicts(); not in a step)"}
    rows += [{"benchmark": bench, "metric": label, "value": parts[key], "unit": "ms/step"}
             for key, label in labels.items()]
    labels = {"raw": "PatientVecEnv.step alone (alternated with the next)",
              "sb3": "VecMonitor(PatientVecEnv).step + SB3's per-env info reads (every info made and read)",
              "raw frozen": "PatientVecEnv.step alone, after gc.freeze()",
              "sb3 frozen": "VecMonitor(PatientVecEnv).step + SB3's info reads, after gc.freeze()"}
    rows += [{"benchmark": f"sb3 infos n={big}", "metric": label, "value": sb3_infos[key], "unit": "ms/step"}
             for key, label in labels.items()]
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
