"""Gymnasium environments for adaptive exercise progression (``DESIGN.md`` section 3).

``AdaptRx/Progression-v0``
    One virtual patient, one episode of ``weeks`` weekly prescriptions.

    * Action space: ``Box(-1, 1, (3,), float32)``: load change, sessions this week, delivery (the contract
      of :mod:`adaptrx.envs.actions`).
    * Observation space: ``Box(float32)`` of the clinic's records (:mod:`adaptrx.envs.features`), names in
      ``env.unwrapped.feature_names``.
    * Reward: named weekly components (:mod:`adaptrx.envs.reward`), in ``info["rewards"]``.
    * Episode end: ``terminated`` when the patient drops out (with the untreated future as a terminal
      reward term), ``truncated`` after ``weeks`` weeks.
    * Starting state: ``reset(seed=s)`` samples a patient of the split from ``s``;
      ``reset(options={"patient": row})`` uses a given cohort row. ``info["patient"]`` holds the true
      parameters (research and paired analysis only; never give it to an agent).

``AdaptRx/ProgressionDiscrete-v0``
    The same patient and reward with ``Discrete(len(MOVES))`` named clinical moves
    (:data:`adaptrx.envs.actions.MOVES`): rest, regress 50/20 %, hold, progress 10/20/30 %, add or drop a
    session, switch delivery.

``info`` after each step: ``pain`` (true mean daily pain), ``function``, ``sessions_prescribed``,
``sessions_attended``, ``flare`` (a flare onset this week: the weekly record holds at most one),
``dropped_out``, ``rewards``, ``cost``, ``state`` (latent variables), ``week``, ``prescription``, and on
dropout ``pain_after_dropout`` (weekly no-exercise pain over the remaining weeks).

``info["cost"]`` is the Safety-Gymnasium-style safety cost of the step, in unsafe weeks (>= 0): 1.0 for a
week with in-session pain above 5 (NRS) or a flare onset, else 0.0; in the week a patient drops out it adds
1.0 for the dropout itself and 1.0 for every remaining week of the episode
(:func:`adaptrx.envs.reward.dropout_cost`), the most those weeks could have cost in care. An episode's
summed cost is therefore intention-to-treat, and making patients quit never lowers it.
"""

from __future__ import annotations

import operator
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from adaptrx.envs.actions import MOVE_NAMES, MOVES
from adaptrx.envs.compiled_step import R_REWARD, R_TERMINATED, R_TRUNCATED, W_RECORD
from adaptrx.envs.episode_engine import (
    EPISODE_SEED_HIGH,
    EpisodeBatch,
    StepBatch,
    env_config,
    episode_patient,
)
from adaptrx.envs.render import AnsiRenderer, render_rgb
from adaptrx.patient import ModelConstants

_FIRST = range(1)
_END_ROWS = operator.itemgetter(W_RECORD + R_REWARD, W_RECORD + R_TERMINATED, W_RECORD + R_TRUNCATED)


def env_spaces(discrete: bool = False, belief: bool = False) -> tuple[spaces.Box, spaces.Space]:
    """The observation and action spaces of ``AdaptRx/Progression-v0`` (``AdaptRx/ProgressionDiscrete-v0`` when
    ``discrete``; with the belief features when ``belief``), e.g. to check that a loaded policy was trained for
    them."""
    action = spaces.Discrete(len(MOVES)) if discrete else spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    return spaces.Box(*env_config(belief=belief).observation_bounds, dtype=np.float32), action


class ProgressionEnv(gym.Env[np.ndarray, np.ndarray]):
    """Weekly exercise prescription for one virtual patient (continuous actions).

    Args:
        condition: patient prior, default ``"knee_oa"``.
        split: ``train`` (default), ``val``, ``test`` or ``ood``.
        weeks: episode length (default 26).
        modality: ``resistance`` (default), ``aerobic``, ``mind_body`` or ``mixed``.
        reward: reward weights (mapping of overrides of :class:`~adaptrx.envs.reward.RewardWeights`).
        render_mode: ``None``, ``"ansi"`` or ``"rgb_array"``.
        initial_load: last load before week 1 (default 0.3 x baseline capacity).
        belief: add the ``belief_*`` features of an online particle filter (:mod:`adaptrx.envs.belief`).
        constants: model constants (default: the calibrated ones).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    _discrete = False  # Box actions (the discrete subclass overrides)

    def __init__(
        self,
        condition: str = "knee_oa",
        split: str = "train",
        weeks: int = 26,
        modality: str = "resistance",
        reward: dict[str, float] | None = None,
        render_mode: str | None = None,
        initial_load: float = 0.3,
        constants: ModelConstants | None = None,
        **kwargs: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: must be None, 'ansi' or 'rgb_array', got {render_mode!r}")
        self.config = env_config(condition=condition, split=split, weeks=weeks, modality=modality, reward=reward,
                                initial_load=initial_load, **kwargs)
        self.render_mode = render_mode
        self.batch = EpisodeBatch(1, self.config, constants)
        self.observation_space = env_spaces(belief=self.config.belief)[0]
        self.action_space = self._action_space()
        self.feature_names: tuple[str, ...] = self.config.feature_names
        self._renderer = AnsiRenderer()
        self._trace: list[dict[str, float]] = []
        self._index = np.zeros(1, dtype=np.int64)

    def _action_space(self) -> spaces.Space:
        return env_spaces(discrete=False)[1]

    def _check_action(self, action: Any) -> Any:
        if np.shape(action) != (3,):
            raise ValueError(f"action: expected shape (3,), got {np.shape(action)}")
        return action

    # ------------------------------------------------------------------ API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(0, EPISODE_SEED_HIGH))
        row = episode_patient(self.config, options, episode_seed)
        obs = self.batch.reset(self._index, [row], np.array([episode_seed], dtype=np.uint64))[0]
        self._trace = []
        return obs, self.batch.reset_info(0)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        out = self.batch.step_actions(self._check_action(action), self._discrete)
        info = self.batch.infos(out, _FIRST)[0]
        reward, terminated, truncated = _END_ROWS(out.work[:, 0].tolist())
        if self.render_mode is not None:
            self._record(out, info)
        return out.obs[0], reward, terminated != 0.0, truncated != 0.0, info

    def _record(self, out: StepBatch, info: dict[str, Any]) -> None:
        self._trace.append({
            "week": info["week"], "pain": info["pain"], "load": float(out.load[0]),
            "sessions": info["sessions_prescribed"], "attended": info["sessions_attended"],
            "delivery": int(out.delivery[0]), "flare": info["flare"], "reward": float(out.reward[0]),
            "dropped_out": info["dropped_out"], "function": info["function"],
        })

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return self._renderer.line(self._trace, self.batch.patients[0]["patient_id"])
        if self.render_mode == "rgb_array":
            return render_rgb(self._trace, self.config.weeks)
        return None

    # -------------------------------------------------------- what-if rollouts
    def get_state(self) -> dict[str, Any]:
        """A deep copy of everything the episode depends on (patient, latent state, records, generator)."""
        return {"batch": self.batch.get_state(), "np_random": self.np_random.bit_generator.state,
                "trace": [dict(t) for t in self._trace]}

    def set_state(self, state: dict[str, Any]) -> None:
        """Resume from a :meth:`get_state` snapshot: the next steps replay exactly as from that point."""
        try:
            self.batch.set_state(state["batch"])
            self.np_random.bit_generator.state = state["np_random"]
            self._trace = [dict(t) for t in state["trace"]]
        except KeyError as exc:
            raise ValueError(f"state: missing key {exc.args[0]!r}") from None


class ProgressionDiscreteEnv(ProgressionEnv):
    """The progression env with named clinical moves (``Discrete(len(MOVES))``).

    Moves change the current plan (load, planned sessions/week, delivery); ``rest`` skips one week's
    sessions and keeps the plan. The first week starts from ``initial_load`` (default 0.3),
    ``initial_sessions`` (3) and ``initial_delivery`` (0, home alone).
    """

    move_names: tuple[str, ...] = MOVE_NAMES
    _discrete = True

    def _action_space(self) -> spaces.Space:
        return env_spaces(discrete=True)[1]

    def _check_action(self, action: Any) -> Any:
        if np.size(action) != 1:
            raise ValueError(f"action: expected one move index, got shape {np.shape(action)}")
        return action
