"""``PatientVecEnv``: an SB3 ``VecEnv`` that steps all its patients in one batched simulator call.

It is an :class:`~adaptrx.envs.episode_engine.EpisodeBatch` of ``num_envs`` patients behind SB3's vector-env API:
SB3-style auto-reset (the returned observation of a finished env is the first one of its next episode;
the last one is in ``infos[i]["terminal_observation"]``, and ``infos[i]["TimeLimit.truncated"]`` tells a
horizon from a dropout). Seeding follows SB3: ``vec.seed(s)`` then ``reset()`` gives env ``i`` the patient
and noise of a single env's ``reset(seed=s + i)``, and later episodes of env ``i`` are those the single
env would meet on its following ``reset()`` calls, so per-patient results are identical to the single env.

Speed (``benchmarks/bench_envs.py``): a step costs the compiled env step plus work that does not grow with
the number of Python objects per env:

* **Infos are lazy.** ``step`` returns :class:`StepInfos`, a sequence of ``num_envs`` mappings
  (:class:`StepInfo`) that hold what SB3 reads every step (``terminal_observation`` and
  ``TimeLimit.truncated`` for finished envs; wrappers add ``episode``) and build the clinical keys of the
  info contract (``pain``, ``function``, ``sessions_prescribed``, ``sessions_attended``, ``flare``,
  ``dropped_out``, ``rewards``, ``cost``, ``state``, ``week``, ``prescription``, ``pain_after_dropout`` on
  dropout, ``shield_rules`` and ``shield_interventions`` with a shield) the first time one of them is read,
  from a snapshot of the step; values are those of the step whenever they are read. The mapping objects
  themselves are made only when an env's info is indexed or iterated. ``dict(infos[i])`` is the full info of
  env ``i``; ``infos.to_dicts()`` all of them as plain dicts in one pass; ``PatientVecEnv(full_infos=True)``
  returns such a list from every step (slower: a few microseconds per env).
* **Resets are batched.** The next patients of all finished envs are started in one call, with each env's
  generator kept as a PCG64 state array and advanced by :mod:`adaptrx.patient.generators`: the same numbers as
  the per-env ``numpy`` Generators that the single env uses. ``reset_infos[i]`` (true parameters, intake) is
  built when read.
* **Patients are drawn ahead.** An env's next patient depends only on its generator, so right after a reset
  the patients of the reset envs' *next* episodes are drawn in a worker thread
  (:class:`~adaptrx.envs.next_patients.NextPatients`: the copula, scipy's inverse beta CDF, which dominates,
  and the noise-stream keys) while the main thread steps the simulator with the GIL released. A reset uses a
  drawn-ahead patient only if it was drawn for the seed the reset actually uses. The same worker runs a step's
  dropout tails (the ``dropout`` reward term, :meth:`EpisodeBatch.step_actions` with ``submit``) while the main
  thread resets the finished envs. Results are the same with ``draw_ahead=False`` (everything on the calling
  thread); small batches (under 32 resets, under 256 patient-weeks of tails) skip the worker.

Wrap it in :class:`stable_baselines3.common.vec_env.VecMonitor` for episode statistics. SB3 makes and reads every
env's info each step (``VecMonitor`` copies the list, the rollout asks each info for ``episode``): at thousands of
envs that is a few ms of Python per step, and the short-lived objects trigger full garbage collections over the
whole heap; call ``gc.freeze()`` once the model is built (``adaptrx-train`` does) to keep those cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import Future
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from adaptrx.common.worker import Worker
from adaptrx.envs import compiled_step as engine
from adaptrx.envs.actions import MOVES
from adaptrx.envs.episode_engine import EpisodeBatch, env_config, episode_patient, info_dicts
from adaptrx.envs.next_patients import NextPatients
from adaptrx.envs.shield import Shield
from adaptrx.patient import ModelConstants
from adaptrx.patient.generators import (
    entropy_words,
    generator_state,
    next_episode_seeds,
    pcg64_states,
    random_entropy,
    state_dict,
)

#: The keys every info of a step has once built (``DESIGN.md`` section 3), in their order.
INFO_KEYS: tuple[str, ...] = ("pain", "function", "sessions_prescribed", "sessions_attended", "flare",
                              "dropped_out", "rewards", "cost", "state", "week", "prescription")
_INFO_KEYS = frozenset(INFO_KEYS)
_SHIELD_KEYS = frozenset(("shield_rules", "shield_interventions"))
_LAZY_KEYS = _INFO_KEYS | _SHIELD_KEYS | {"pain_after_dropout"}  # every key a StepInfo may build on demand
_MISSING = object()


class StepInfos(Sequence["StepInfo"]):
    """The ``infos`` of one :meth:`PatientVecEnv.step`: ``num_envs`` :class:`StepInfo` mappings, made when read.

    It holds a snapshot of the step (work block, latent state, weeks, dropout tails, shield rules, final
    observations), so an info read later still describes this step. ``to_dicts()`` gives every info as a plain
    ``dict`` in one vectorised pass.
    """

    def __init__(self, work: np.ndarray, latent: np.ndarray, weeks: np.ndarray, tails: Mapping[int, list[float]],
                 done_idx: np.ndarray, truncated: np.ndarray, terminal: np.ndarray,
                 rules: list[tuple[str, ...]] | None, interventions: np.ndarray | None) -> None:
        """``done_idx``: the finished envs (ascending); ``terminal``: their final observations, one row each in
        that order; ``truncated``: per env."""
        self.n = work.shape[1]
        self._work, self._latent, self._weeks, self._tails = work, latent, weeks, tails
        self._done = dict(zip(done_idx.tolist(), range(len(done_idx)), strict=True))  # env -> row of terminal
        self._truncated, self._terminal = truncated, terminal
        self._rules, self._interventions = rules, interventions
        self._items: list[StepInfo | None] = [None] * self.n
        self._all = False

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self._every()[i]
        item = self._items[i]
        if item is None:
            j = range(self.n)[i]  # normalised; IndexError out of range
            item = self._items[j] = StepInfo(self, j)
        return item

    def __iter__(self) -> Iterator[StepInfo]:
        return iter(self._every())

    def _every(self) -> list[StepInfo]:
        items = self._items
        if not self._all:
            done = self._done  # the envs that finished hold SB3's keys; the others start empty
            self._items = items = [(StepInfo(self, i, {} if i not in done else None) if item is None else item)
                                   for i, item in enumerate(items)]
            self._all = True
        return items

    def sb3_keys(self, i: int) -> dict[str, Any]:
        """What SB3 reads of env ``i``: ``terminal_observation`` and ``TimeLimit.truncated`` if it finished."""
        row = self._done.get(i)
        if row is None:
            return {}
        return {"terminal_observation": self._terminal[row], "TimeLimit.truncated": bool(self._truncated[i])}

    def has_clinical(self, i: int, key: str) -> bool:
        """Whether ``key`` is one of env ``i``'s clinical keys (built on demand)."""
        return (key in _INFO_KEYS or (key == "pain_after_dropout" and i in self._tails)
                or (self._rules is not None and key in _SHIELD_KEYS))

    def clinical(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The clinical infos of envs ``indices`` (the info contract's keys, shield keys with a shield)."""
        infos = info_dicts(self._work, self._latent, self._weeks, self._tails, indices)
        if self._rules is not None:
            assert self._interventions is not None
            counts = self._interventions.tolist()
            for i, info in zip(indices, infos, strict=True):
                info["shield_rules"] = list(self._rules[i])
                info["shield_interventions"] = counts[i]
        return infos

    def to_dicts(self) -> list[dict[str, Any]]:
        """Every env's full info as a plain ``dict`` (keys set on the mappings included), one pass."""
        infos = self.clinical(range(self.n))
        for i, info in enumerate(infos):
            item = self._items[i]
            info.update(self.sb3_keys(i) if item is None else item._data)
        return infos


class StepInfo(MutableMapping[str, Any]):
    """The ``info`` of one env after a step: SB3's keys at once, the clinical keys built when first read.

    Reading, iterating or comparing a clinical key builds them all (``StepInfos.clinical``); setting and deleting
    keys works as on a dict (``VecMonitor`` adds ``episode`` to a ``copy()``, ``ProgrammeEnd`` pops
    ``TimeLimit.truncated``).
    """

    __slots__ = ("_data", "_full", "_i", "_src")

    def __init__(self, src: StepInfos, i: int, data: dict[str, Any] | None = None, full: bool = False) -> None:
        self._src, self._i, self._full = src, i, full
        self._data = src.sb3_keys(i) if data is None else data

    def _load(self) -> dict[str, Any]:
        if not self._full:
            data = self._src.clinical((self._i,))[0]
            data.update(self._data)
            self._data, self._full = data, True
        return self._data

    def __getitem__(self, key: str) -> Any:
        data = self._data
        if key in data:
            return data[key]
        if self._full or not self._src.has_clinical(self._i, key):
            raise KeyError(key)
        return self._load()[key]

    def get(self, key: str, default: Any = None) -> Any:
        data = self._data
        if key in data:
            return data[key]
        # SB3 asks every env's info for keys it may not have ("episode", "is_success") every step: answered
        # without a call
        if self._full or key not in _LAZY_KEYS or not self._src.has_clinical(self._i, key):
            return default
        return self._load()[key]

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        data = self._data
        if key in data:
            return data.pop(key)
        if not self._full and self._src.has_clinical(self._i, key):
            return self._load().pop(key)
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __contains__(self, key: object) -> bool:
        return key in self._data or (not self._full and isinstance(key, str) and self._src.has_clinical(self._i,
                                                                                                          key))

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self._data:
            self._load()
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def copy(self) -> StepInfo:
        """A shallow copy (still lazy)."""
        return StepInfo(self._src, self._i, dict(self._data), self._full)

    def __repr__(self) -> str:
        return repr(self._load())


class ResetInfos(Sequence[dict[str, Any]]):
    """``PatientVecEnv.reset_infos``: env ``i``'s reset info (``patient``, ``patient_id``, ``intake``, ``week``) of
    its current episode, built when first read in that episode (then the same dict until its next reset)."""

    def __init__(self, batch: EpisodeBatch) -> None:
        self._batch = batch
        self.episode = np.zeros(batch.n, dtype=np.int64)  # episodes started per env (a reset bumps it)
        self._cache: dict[int, tuple[int, dict[str, Any]]] = {}

    def __len__(self) -> int:
        return self._batch.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = range(self._batch.n)[i]
        episode = int(self.episode[i])
        hit = self._cache.get(i)
        if hit is None or hit[0] != episode:
            hit = self._cache[i] = (episode, self._batch.reset_info(i))
        return hit[1]

    def __setitem__(self, i: int, value: dict[str, Any]) -> None:
        i = range(self._batch.n)[i]
        self._cache[i] = (int(self.episode[i]), value)


class PatientVecEnv(VecEnv):
    """``num_envs`` progression episodes stepped together.

    Args:
        num_envs: number of parallel patients (>= 1).
        condition, split, weeks, modality, reward, initial_load: as for ``AdaptRx/Progression-v0``.
        discrete: use the named clinical moves of ``ProgressionDiscrete-v0`` instead of the Box action.
        **kwargs: further env settings (:class:`~adaptrx.envs.episode_engine.EnvConfig`: ``initial_load``, ``belief``,
            ``belief_particles``, ...).
        shield: optional safety shield applied to every action (see :mod:`adaptrx.envs.shield`).
        constants: model constants (default: the calibrated ones).
        render_mode: only ``None`` is supported (render single envs instead).
        full_infos: return every step's infos as a list of plain dicts with all keys (slower) instead of the
            lazy :class:`StepInfos` (same keys and values, built when read).
        draw_ahead: draw each env's next patient in a worker thread during its episode (same results; False
            keeps everything on the calling thread).
    """

    def __init__(
        self,
        num_envs: int = 16,
        condition: str = "knee_oa",
        split: str = "train",
        weeks: int = 26,
        modality: str = "resistance",
        reward: dict[str, float] | None = None,
        discrete: bool = False,
        shield: Shield | None = None,
        constants: ModelConstants | None = None,
        render_mode: str | None = None,
        full_infos: bool = False,
        draw_ahead: bool = True,
        **kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs: must be a positive integer, got {num_envs!r}")
        if render_mode is not None:
            raise ValueError("render_mode: PatientVecEnv does not render; render a single env instead")
        n = int(num_envs)
        self.render_mode = None
        self.config = env_config(condition=condition, split=split, weeks=weeks, modality=modality, reward=reward,
                                 **kwargs)
        self.batch = EpisodeBatch(n, self.config, constants)
        self.discrete = bool(discrete)
        self.shield = shield
        self.full_infos = bool(full_infos)
        # one worker thread (made at first use) draws patients ahead and runs the dropouts' tails during resets
        self._worker: Worker | None = Worker() if draw_ahead else None
        self._next = NextPatients(n, self.config, self._submit if draw_ahead else None)
        self.feature_names: tuple[str, ...] = self.config.feature_names
        # each env's generator (np_random of a single env) as a PCG64 state: (state_hi, state_lo, inc_hi, inc_lo)
        self._rng_states = np.zeros((n, 4), dtype=np.uint64)
        self._rng_live = np.zeros(n, dtype=bool)  # generator made (else made at the env's next reset)
        self._seed_words, self._seed_lengths = entropy_words(np.zeros(n, dtype=np.uint64))
        self._seed_pending = np.zeros(n, dtype=bool)  # seed() given, not yet used by a reset
        self._option_pending = np.zeros(n, dtype=bool)  # set_options() given, not yet used by a reset
        self._actions: np.ndarray | None = None
        self.shield_interventions = np.zeros(n, dtype=np.int64)
        action_space: spaces.Space = (spaces.Discrete(len(MOVES)) if self.discrete
                                      else spaces.Box(-1.0, 1.0, (3,), dtype=np.float32))
        super().__init__(n, spaces.Box(*self.config.observation_bounds, dtype=np.float32), action_space)
        self.reset_infos = ResetInfos(self.batch)  # type: ignore[assignment]

    # ---------------------------------------------------------------- seeding
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """SB3 seeding: env ``i`` gets ``seed + i`` (a random ``seed`` if None), used at its next reset."""
        seeds = super().seed(seed)
        self._seed_words, self._seed_lengths = entropy_words(list(seeds))
        self._seed_pending[:] = True
        return seeds

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        super().set_options(options)
        self._option_pending = np.array([bool(o) for o in self._options], dtype=bool)

    def _reset_seeds(self) -> None:
        super()._reset_seeds()
        self._seed_pending[:] = False

    def _reset_options(self) -> None:
        super()._reset_options()
        self._option_pending[:] = False

    # ---------------------------------------------------------------- episodes
    def _start(self, index: np.ndarray) -> np.ndarray:
        """Draw (or take from options) the next patient of each env in ``index`` and start its episode."""
        index = np.asarray(index, dtype=np.int64)
        fresh = index[self._seed_pending[index] | ~self._rng_live[index]]
        if len(fresh):  # seeding.np_random(seed): PCG64(SeedSequence(seed)), fresh OS entropy if no seed
            seeded = self._seed_pending[fresh]
            words, lengths = self._seed_words[fresh[seeded]], self._seed_lengths[fresh[seeded]]
            self._rng_states[fresh[seeded]] = pcg64_states(words, lengths)
            if not seeded.all():
                self._rng_states[fresh[~seeded]] = pcg64_states(*random_entropy(int((~seeded).sum())))
            self._rng_live[fresh] = True
            self._seed_pending[fresh] = False
        seeds = next_episode_seeds(self._rng_states, index)
        b = self.batch
        obs = np.empty((len(index), self.observation_space.shape[0]), dtype=np.float32)
        given = self._option_pending[index]
        if given.any():  # options={"patient": row}: those rows (validated one by one; rare)
            j = np.flatnonzero(given)
            envs = index[j].tolist()
            rows = [episode_patient(self.config, self._options[i], int(s)) for i, s in zip(envs, seeds[j].tolist(),
                                                                                          strict=True)]
            obs[j] = b.reset(index[j], rows, seeds[j])
            for i in envs:
                self._options[i] = {}
            self._option_pending[index[j]] = False
        drawn = np.flatnonzero(~given)
        if len(drawn):
            obs[drawn] = b.reset_drawn(index[drawn], self._next.take(index[drawn], seeds[drawn]))
        if self._worker is not None:  # the next episodes' seeds, from a copy of the generators as they stand
            self._next.draw_ahead(index, next_episode_seeds(self._rng_states[index], np.arange(len(index))))
        self.shield_interventions[index] = 0
        self.reset_infos.episode[index] += 1
        return obs

    def reset(self) -> np.ndarray:
        obs = self._start(np.arange(self.num_envs))
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait: call step_async first")
        actions, self._actions = self._actions, None
        rules: list[tuple[str, ...]] | None = None
        interventions = None
        if self.shield is not None:
            actions, rules = self.shield.constrain(self.batch.features.observation(), actions, self.discrete)
        b = self.batch
        out = b.step_actions(actions, self.discrete, self._submit if self._worker is not None else None)
        if rules is not None:
            self.shield_interventions += np.fromiter(map(bool, rules), dtype=bool, count=self.num_envs)
            interventions = self.shield_interventions.copy()
        truncated = out.truncated
        dones = out.terminated | truncated
        obs = out.obs  # this step's observations (fresh): the finished envs' rows become their first ones below
        done_idx = np.flatnonzero(dones)
        terminal = obs[done_idx]  # a copy: the final observations of the finished envs
        latent, weeks = b.sim.kernel_arrays()[1].copy(), b.E[engine.E_WEEK].copy()  # before the resets
        if len(done_idx):
            obs[done_idx] = self._start(done_idx)  # meanwhile the worker runs the dropouts' untreated tails
        b.settle(out)
        infos = StepInfos(out.work, latent, weeks, out.pain_after_dropout, done_idx, truncated, terminal, rules,
                          interventions)
        return obs, out.reward.astype(np.float32), dones, infos.to_dicts() if self.full_infos else infos

    # ------------------------------------------------------------- VecEnv API
    def close(self) -> None:
        """Stop the worker thread (after its pending work; a later step starts it again)."""
        self._next.collect()
        if self._worker is not None:
            self._worker.close()

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        assert self._worker is not None
        return self._worker.submit(fn, *args)

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None] * self.num_envs

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    # -------------------------------------------------------- what-if rollouts
    def get_state(self) -> dict[str, Any]:
        """Snapshot of every episode, generator and shield counter (deep copies)."""
        return {
            "batch": self.batch.get_state(),
            "rngs": [state_dict(s) if live else None
                     for s, live in zip(self._rng_states, self._rng_live.tolist(), strict=True)],
            "shield_interventions": self.shield_interventions.copy(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Resume from a :meth:`get_state` snapshot."""
        try:
            rngs = list(state["rngs"])
            if len(rngs) != self.num_envs:
                raise ValueError(f"state.rngs: expected {self.num_envs} generator states, got {len(rngs)}")
            states = [generator_state(g) if g is not None else np.zeros(4, dtype=np.uint64) for g in rngs]
            self.batch.set_state(state["batch"])
            self._rng_states = np.array(states, dtype=np.uint64).reshape(self.num_envs, 4)
            self._rng_live = np.array([g is not None for g in rngs], dtype=bool)
            self.shield_interventions = np.array(state["shield_interventions"], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"state: missing key {exc.args[0]!r}") from None
        self.reset_infos.episode += 1  # the patients may have changed
