"""Observation wrappers for agents without memory."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class HistoryStack(gym.ObservationWrapper):
    """Concatenate the last ``k`` observations into one flat vector (oldest first, zeros before week 0).

    The plain observation already carries four weeks of key records (:mod:`adaptrx.envs.features`); use this
    when an agent without memory needs more. Feature names become ``<name>_t-<j>`` (``j = 0`` is the latest).
    """

    def __init__(self, env: gym.Env, k: int = 4) -> None:
        super().__init__(env)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: must be a positive integer, got {k!r}")
        base = env.observation_space
        if not isinstance(base, spaces.Box) or len(base.shape) != 1:
            raise ValueError("env: HistoryStack needs a flat Box observation space")
        self.k = k
        self.observation_space = spaces.Box(np.tile(np.minimum(base.low, 0), k), np.tile(np.maximum(base.high, 0), k),
                                            dtype=base.dtype)
        names = getattr(env.unwrapped, "feature_names", [f"x{i}" for i in range(base.shape[0])])
        self.feature_names = tuple(f"{n}_t-{j}" for j in range(k - 1, -1, -1) for n in names)
        self._frames = np.zeros((k, base.shape[0]), dtype=base.dtype)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._frames[:] = 0
        self._frames[-1] = obs
        return self._frames.reshape(-1).copy(), info

    def observation(self, observation: np.ndarray) -> np.ndarray:
        self._frames = np.roll(self._frames, -1, axis=0)
        self._frames[-1] = observation
        return self._frames.reshape(-1).copy()
