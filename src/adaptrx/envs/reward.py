"""Reward components of the progression environments (``DESIGN.md`` section 3).

Each week yields named components whose sum is the reward (``info["rewards"]``):

* ``pain``: ``-w_pain * mean true daily pain / 10`` (every week, in or out of the programme);
* ``function``: ``+w_function * true function / 100``. The default ``w_function = 2`` makes 10 function
  points (the usual MCID of WOMAC/KOOS function, ~10/100) worth as much as 2 NRS points (the pain MCID);
* ``flare``: ``-w_flare`` per week with a flare onset. Default 0.1, about a one-point NRS week: a flare's
  pain is already in ``pain``; this adds what it costs beyond pain (missed work, lost trust, rescue care);
* ``supervision``: ``-w_supervision`` per attended supervised session. Default 0.01: a physiotherapy visit
  (~EUR 50) against a QALY-like scale on which a whole NRS point for a week is 0.1;
* ``remote``: ``-w_remote`` per week of remote monitoring with sessions (app, wearable, check-in calls).
  Default 0.005;
* ``dropout``: when the patient drops out, the sum over the remaining weeks of the ``pain``, ``function``
  and ``flare`` components the patient will have without exercise (simulated forward from the
  dropout state with the patient's own noise). Dropping out therefore ends the episode with the value of
  the untreated future, so driving patients out of the programme is never a shortcut.

Evaluation is intention-to-treat: the same forward simulation gives ``info["pain_after_dropout"]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from numba import njit

#: Component names in the order they appear in ``info["rewards"]``.
COMPONENTS: tuple[str, ...] = ("pain", "function", "flare", "supervision", "remote", "dropout")


@dataclass(frozen=True)
class RewardWeights:
    """Non-negative weights of the reward components (see the module docstring for the rationale)."""

    pain: float = 1.0
    function: float = 2.0
    flare: float = 0.1
    supervision: float = 0.01
    remote: float = 0.005

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
                raise ValueError(f"reward.{f.name}: must be a finite number >= 0, got {value!r}")

    @classmethod
    def parse(cls, value: RewardWeights | dict[str, Any] | None) -> RewardWeights:
        """Weights from ``None`` (defaults), a mapping of overrides or an instance; unknown keys are errors."""
        if value is None:
            return cls()
        if isinstance(value, RewardWeights):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"reward: expected a mapping of weights, got {type(value).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"reward: unknown weight(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in value.items()})

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def vector(self) -> np.ndarray:
        """Weights as ``(pain, function, flare, supervision, remote)``, the order the compiled step uses."""
        return np.array([self.pain, self.function, self.flare, self.supervision, self.remote])


_jit = njit(cache=True, fastmath=False, error_model="numpy")


@_jit
def outcome_components(weights: np.ndarray, pain: float, function: float, flare: bool) -> tuple[float, float, float]:
    """``(pain, function, flare)`` components of one week: mean true pain (NRS 0-10), true function
    (0-100), a flare onset; ``weights`` as :meth:`RewardWeights.vector`."""
    return -weights[0] * pain / 10.0, weights[1] * function / 100.0, -weights[2] if flare else 0.0
