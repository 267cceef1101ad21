"""The safety-shield hook of the progression environments.

A shield sits between a policy and the patient: it sees the clinic's observation and the proposed
action, returns the action it allows and the names of the rules that changed it (an empty tuple when the
action passed untouched). The clinical rules themselves (``DESIGN.md`` section 4: maximum weekly load
increase, no progression after a painful or unsettled week, regress after a flare, session bounds) live
in :mod:`adaptrx.protocols`; anything with a matching ``constrain`` method plugs in here.

* :class:`SafetyShield` wraps a single Gymnasium env;
* :class:`~adaptrx.envs.vec_env.PatientVecEnv` takes ``shield=`` directly.

Both put ``shield_rules`` (the rules that bound this week's action) and ``shield_interventions`` (weeks
with a binding rule so far in the episode) into ``info``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Shield(Protocol):
    """What a safety shield offers."""

    def constrain(
        self, obs: np.ndarray, actions: np.ndarray, discrete: bool
    ) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """Constrain a batch of actions.

        Args:
            obs: observations the actions were chosen on, shape ``(n, n_features)`` (scaled features of
                :mod:`adaptrx.envs.features`; :func:`~adaptrx.envs.features.to_units` converts them).
            actions: shape ``(n, 3)`` for ``Progression-v0`` or ``(n,)`` move indices when ``discrete``.
            discrete: whether ``actions`` are move indices of ``ProgressionDiscrete-v0``.

        Returns:
            The allowed actions (same shape and kind) and, per row, the names of the rules that bound.
        """
        ...


class SafetyShield(gym.Wrapper):
    """Apply a :class:`Shield` to every action of a single progression env and count its interventions."""

    def __init__(self, env: gym.Env, shield: Shield) -> None:
        super().__init__(env)
        if not isinstance(shield, Shield):
            raise ValueError("shield: must have a constrain(obs, actions, discrete) method")
        self.shield = shield
        self.discrete = isinstance(env.action_space, gym.spaces.Discrete)
        self._obs: np.ndarray | None = None
        self.interventions = 0

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._obs, self.interventions = obs, 0
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("step: call reset() first")
        batch = np.asarray(action).reshape((1,) if self.discrete else (1, -1))
        allowed, rules = self.shield.constrain(self._obs[None, :], batch, self.discrete)
        allowed = np.asarray(allowed)
        new_action = allowed.reshape(()) if self.discrete else allowed.reshape(-1).astype(np.float32)
        obs, reward, terminated, truncated, info = self.env.step(new_action)
        self.interventions += bool(rules[0])
        info["shield_rules"] = list(rules[0])
        info["shield_interventions"] = self.interventions
        self._obs = obs
        return obs, reward, terminated, truncated, info
