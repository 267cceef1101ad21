"""Drawing next patients ahead in the worker thread, and handing dropout tails to it, change no result."""

from __future__ import annotations

import copy
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from adaptrx.common.worker import Worker
from adaptrx.envs import PatientVecEnv, episode_engine, next_patients
from adaptrx.envs.episode_engine import env_config, new_patients
from adaptrx.envs.next_patients import NextPatients


def _assert_same_patients(got: episode_engine.NewPatients, want: episode_engine.NewPatients) -> None:
    np.testing.assert_array_equal(got.draws.seeds, want.draws.seeds)
    np.testing.assert_array_equal(got.draws.values, want.draws.values)  # bit for bit
    assert got.draws.names == want.draws.names
    assert got.draws.categorical.keys() == want.draws.categorical.keys()
    for name, labels in want.draws.categorical.items():
        assert got.draws.categorical[name].tolist() == labels.tolist(), name
    assert got.ids.tolist() == want.ids.tolist()
    np.testing.assert_array_equal(got.keys, want.keys)


def test_taken_patients_are_those_of_the_seeds_whether_drawn_ahead_or_not() -> None:
    config = env_config(condition="chronic_low_back_pain", split="val")
    worker = Worker()
    store = NextPatients(80, config, worker.submit)
    rng = np.random.default_rng(4)
    slots = np.arange(0, 80, 2)  # 40 slots, above MIN_BATCH: one background draw
    ahead = rng.integers(0, 2**63, len(slots)).astype(np.uint64)
    store.draw_ahead(slots, ahead)
    store.collect()
    assert store.ready[slots].all() and not store.ready[1::2].any()
    # half of the slots reset with the seed drawn ahead, half with another one (a reseed): all are exact
    index = np.concatenate([slots[:20], slots[20:], np.array([1, 3])])
    seeds = np.concatenate([ahead[:20], ahead[20:] + np.uint64(1), np.array([7, 2**63 + 9], dtype=np.uint64)])
    _assert_same_patients(store.take(index, seeds), new_patients(config, seeds))
    assert not store.ready[index].any()  # used
    worker.close()


def test_small_requests_wait_for_a_batch_and_no_submit_draws_nothing_ahead() -> None:
    config = env_config()
    calls: list[int] = []

    def submit(fn: Callable[..., Any], *args: Any) -> Future[Any]:  # a recording stand-in for Worker.submit
        calls.append(len(args[1]))
        return Worker().submit(fn, *args)

    store = NextPatients(64, config, submit)
    for k in range(next_patients.MIN_BATCH - 1):
        store.draw_ahead(np.array([k]), np.array([k], dtype=np.uint64))
    assert calls == []  # fewer than MIN_BATCH wanted: nothing handed over yet
    store.draw_ahead(np.array([40]), np.array([40], dtype=np.uint64))
    assert calls == [next_patients.MIN_BATCH]
    store.collect()
    assert store.ready.sum() == next_patients.MIN_BATCH
    idle = NextPatients(64, config)
    idle.draw_ahead(np.arange(64), np.arange(64, dtype=np.uint64))
    assert not idle.ready.any()


def test_worker_runs_in_order_and_restarts_after_close() -> None:
    worker = Worker("adaptrx-test")
    seen: list[int] = []
    futures = [worker.submit(seen.append, k) for k in range(5)]
    names = worker.submit(lambda: threading.current_thread().name).result()
    assert [f.result() for f in futures] == [None] * 5 and seen == [0, 1, 2, 3, 4]
    assert names.startswith("adaptrx-test") and names != threading.main_thread().name
    worker.close()
    assert worker.submit(sum, [1, 2]).result() == 3  # a new thread
    worker.close()
    worker.close()  # idempotent


def _run(vec: PatientVecEnv, actions: np.ndarray) -> list[Any]:
    """Steps with a reseed and a restored snapshot part-way; everything observable, per step."""
    trace = []
    vec.seed(11)
    trace.append(vec.reset())
    snapshot = None
    for t, a in enumerate(actions):
        if t == 6:
            snapshot = vec.get_state()
        if t == 14:
            vec.seed(12)  # drawn-ahead patients of the old seeds must not be used
        if t == 20:
            vec.set_state(snapshot)
        obs, rewards, dones, infos = vec.step(a)
        trace.append((obs, rewards, dones, infos.to_dicts(), [vec.reset_infos[i] for i in np.flatnonzero(dones)]))
    vec.close()
    return trace


def test_vec_env_with_worker_equals_vec_env_without(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step of a vector env whose worker draws every next patient ahead and runs every dropout's tail
    equals that of the one-thread env: observations, rewards, dones, full infos (tails included), patients."""
    monkeypatch.setattr(episode_engine, "MIN_SUBMITTED_TAIL_WEEKS", 1)
    monkeypatch.setattr(next_patients, "MIN_BATCH", 1)
    threads: dict[str, set[str]] = {"tails": set(), "draws": set()}

    def spy(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any) -> Any:
            threads[name].add(threading.current_thread().name)
            return fn(*args)
        return wrapped

    monkeypatch.setattr(episode_engine, "_tails", spy("tails", episode_engine._tails))
    monkeypatch.setattr(next_patients, "new_patients", spy("draws", next_patients.new_patients))
    n, weeks = 48, 8
    actions = np.random.default_rng(5).uniform(0.2, 1.0, size=(30, n, 3)).astype(np.float32)  # heavy: dropouts
    with_worker = _run(PatientVecEnv(n, weeks=weeks), actions)
    assert any(name != threading.main_thread().name for name in threads["tails"])
    assert any(name != threading.main_thread().name for name in threads["draws"])
    alone = _run(PatientVecEnv(n, weeks=weeks, draw_ahead=False), actions)
    np.testing.assert_array_equal(with_worker[0], alone[0])
    dropouts = 0
    for (o1, r1, d1, i1, p1), (o2, r2, d2, i2, p2) in zip(with_worker[1:], alone[1:], strict=True):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
        for a, b in zip(i1, i2, strict=True):
            terminal_a, terminal_b = a.pop("terminal_observation", None), b.pop("terminal_observation", None)
            np.testing.assert_array_equal(terminal_a, terminal_b)
            assert a == b
            dropouts += "pain_after_dropout" in a
        assert p1 == p2
    assert dropouts > 0


def test_vec_env_with_a_busy_worker_pickles_and_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vector env whose worker has run (and may hold a pending draw) pickles and deep-copies; each copy gets
    its own worker and continues exactly as the original."""
    monkeypatch.setattr(next_patients, "MIN_BATCH", 1)
    n = 40
    vec = PatientVecEnv(n, weeks=6)
    vec.seed(2)
    vec.reset()
    actions = np.random.default_rng(9).uniform(0.0, 1.0, size=(12, n, 3)).astype(np.float32)
    for a in actions[:4]:
        vec.step(a)
    copies = [pickle.loads(pickle.dumps(vec)), copy.deepcopy(vec)]
    for a in actions[4:]:
        want = vec.step(a)
        for clone in copies:
            got = clone.step(a)
            for x, y in zip(got[:3], want[:3], strict=True):
                np.testing.assert_array_equal(x, y)
    assert copies[0]._worker is not vec._worker and copies[0]._worker._executor is not vec._worker._executor
    for env in (vec, *copies):
        env.close()
