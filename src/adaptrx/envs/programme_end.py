"""The programme's last week as the end of the objective, for value-based training.

A progression episode is a programme of ``weeks`` weeks; the env reports its last week as ``truncated``
(Gymnasium's time limit) and SB3's on-policy algorithms then bootstrap the value of the final observation, as
if the patient's future after the programme counted. When the objective is the outcome of the programme (the
headline return of ``DESIGN.md`` section 3 sums the programme's weeks; a dropout's untreated future is already
in its terminal reward), nothing lies beyond week ``weeks``: :class:`ProgrammeEnd` makes SB3 treat it as a
terminal state by removing ``TimeLimit.truncated`` from those infos (the ``terminal_observation`` stays for
anyone who reads it). ``adaptrx-train`` applies it unless ``env.programme_end=false``.
"""

from __future__ import annotations

from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn


class ProgrammeEnd(VecEnvWrapper):
    """Episodes that end at the programme's last week are terminal for SB3 (no bootstrapped value)."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        #: episodes whose time-limit flag was removed since the wrapper was made (a count, for tests and logs)
        self.programme_ends = 0

    def reset(self):
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if info.pop("TimeLimit.truncated", False):
                self.programme_ends += 1
        return obs, rewards, dones, infos
