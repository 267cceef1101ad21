"""``PatientVecEnv``: an SB3 ``VecEnv`` that steps all its patients in one batched simulator call.

It is an :class:`~adaptrx.envs.batch.EpisodeBatch` of ``num_envs`` patients behind SB3's vector-env API:
SB3-style auto-reset (the returned observation of a finished env is the first one of its next episode;
the last one is in ``infos[i]["terminal_observation"]``, and ``infos[i]["TimeLimit.truncated"]`` tells a
horizon from a dropout). Seeding follows SB3: ``vec.seed(s)`` then ``reset()`` gives env ``i`` the patient
and noise of a single env's ``reset(seed=s + i)``, and later episodes of env ``i`` are those the single
env would meet on its following ``reset()`` calls, so per-patient results are identical to the single env.

Wrap it in :class:`stable_baselines3.common.vec_env.VecMonitor` for episode statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from adaptrx.envs.actions import MOVES
from adaptrx.envs.batch import EPISODE_SEED_HIGH, EpisodeBatch, env_config, episode_patient
from adaptrx.envs.shield import Shield
from adaptrx.patient import ModelConstants


class PatientVecEnv(VecEnv):
    """``num_envs`` progression episodes stepped together.

    Args:
        num_envs: number of parallel patients (>= 1).
        condition, split, weeks, modality, reward, initial_load: as for ``AdaptRx/Progression-v0``.
        discrete: use the named clinical moves of ``ProgressionDiscrete-v0`` instead of the Box action.
        **kwargs: further env settings (:class:`~adaptrx.envs.batch.EnvConfig`: ``initial_load``, ``belief``,
            ``belief_particles``, ...).
        shield: optional safety shield applied to every action (see :mod:`adaptrx.envs.shield`).
        constants: model constants (default: the calibrated ones).
        render_mode: only ``None`` is supported (render single envs instead).
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
        **kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs: must be a positive integer, got {num_envs!r}")
        if render_mode is not None:
            raise ValueError("render_mode: PatientVecEnv does not render; render a single env instead")
        self.render_mode = None
        self.config = env_config(condition=condition, split=split, weeks=weeks, modality=modality, reward=reward,
                                **kwargs)
        self.batch = EpisodeBatch(int(num_envs), self.config, constants)
        self.discrete = bool(discrete)
        self.shield = shield
        self.feature_names: tuple[str, ...] = self.config.feature_names
        self._rngs: list[np.random.Generator | None] = [None] * int(num_envs)
        self._actions: np.ndarray | None = None
        self.shield_interventions = np.zeros(int(num_envs), dtype=np.int64)
        action_space: spaces.Space = (spaces.Discrete(len(MOVES)) if self.discrete
                                      else spaces.Box(-1.0, 1.0, (3,), dtype=np.float32))
        super().__init__(int(num_envs), spaces.Box(*self.config.observation_bounds, dtype=np.float32), action_space)

    # ---------------------------------------------------------------- episodes
    def _start(self, index: list[int]) -> np.ndarray:
        """Draw (or take from options) the next patient of each env in ``index`` and start its episode."""
        rows, seeds = [], np.empty(len(index), dtype=np.uint64)
        for j, i in enumerate(index):
            if self._rngs[i] is None or self._seeds[i] is not None:
                self._rngs[i], _ = seeding.np_random(self._seeds[i])
            seeds[j] = int(self._rngs[i].integers(0, EPISODE_SEED_HIGH))
            rows.append(episode_patient(self.config, self._options[i], int(seeds[j])))
            self._seeds[i] = None
            self._options[i] = {}
        obs = self.batch.reset(np.asarray(index), rows, seeds)
        self.shield_interventions[index] = 0
        for i in index:
            self.reset_infos[i] = self.batch.reset_info(i)
        return obs

    def reset(self) -> np.ndarray:
        index = list(range(self.num_envs))
        obs = self._start(index)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait: call step_async first")
        actions, self._actions = self._actions, None
        rules: list[tuple[str, ...]] = []
        if self.shield is not None:
            actions, rules = self.shield.constrain(self.batch.features.observation(), actions, self.discrete)
        b = self.batch
        out = b.step_actions(actions, self.discrete)
        infos = b.infos(out, range(self.num_envs))
        if self.shield is not None:
            self.shield_interventions += np.array([len(r) > 0 for r in rules])
            for i, info in enumerate(infos):
                info["shield_rules"] = list(rules[i])
                info["shield_interventions"] = int(self.shield_interventions[i])
        dones = out.terminated | out.truncated
        obs = out.obs
        if dones.any():
            done_idx = np.flatnonzero(dones).tolist()
            for i in done_idx:
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["TimeLimit.truncated"] = bool(out.truncated[i])
            obs[done_idx] = self._start(done_idx)
        return obs, out.reward.astype(np.float32), dones, infos

    # ------------------------------------------------------------- VecEnv API
    def close(self) -> None:
        return None

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
            "rngs": [None if g is None else g.bit_generator.state for g in self._rngs],
            "shield_interventions": self.shield_interventions.copy(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Resume from a :meth:`get_state` snapshot."""
        try:
            self.batch.set_state(state["batch"])
            for i, g in enumerate(state["rngs"]):
                if g is None:
                    self._rngs[i] = None
                else:
                    self._rngs[i] = np.random.Generator(getattr(np.random, g["bit_generator"])())
                    self._rngs[i].bit_generator.state = g
            self.shield_interventions = np.array(state["shield_interventions"], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"state: missing key {exc.args[0]!r}") from None
