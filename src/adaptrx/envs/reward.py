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
  dropout state with the patient's own noise), minus ``w_dropout``. Dropping out therefore ends the episode
  with the value of the untreated future and a loss of its own, so driving patients out of the programme is
  never a shortcut. Default ``w_dropout = 5``: the untreated tail already charges the pain a dropout keeps,
  but not what leaving care loses beyond it (the programme's remaining function gains, follow-up, the
  chance to adjust the plan; in trials, non-completers do worse than the no-exercise model of their tail
  predicts). 5 return units is what half an NRS point over a 26-week programme plus 10 function points (one
  MCID) for half of it are worth on this scale. It is the weight at which the oracle, planning for this
  reward, stops trading dropout away against population_best (measured in the model card).

The **headline objective** of the project (DESIGN section 3) is the undiscounted episode return under
these default weights: the oracle plans for it, training selects checkpoints on it, ``population_best`` is
searched on it, and trial reports lead with it; its components stay reported beside it.

**Safety cost** (``info["cost"]``, Safety-Gymnasium convention, see :func:`dropout_cost`): 1 for a week with
in-session pain above :data:`COST_PAIN_THRESHOLD` (NRS) or a flare onset, 0 otherwise. A dropout adds
:data:`DROPOUT_EVENT_COST` for the dropout itself (discontinuing a programme is an adverse outcome in its own
right, as trials count it) and :data:`DROPOUT_COST_PER_WEEK` per remaining week of the episode: a week out of
care counts like the worst week in care, so ending an episode never lowers the cost (intention to treat; a
constrained agent cannot buy safety by making patients quit).

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
    dropout: float = 5.0

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
        """Weights as ``(pain, function, flare, supervision, remote)``, the order the compiled step uses (the
        ``dropout`` weight is applied where a dropout's untreated tail is simulated)."""
        return np.array([self.pain, self.function, self.flare, self.supervision, self.remote])


#: In-session pain above this (NRS 0-10) makes a week unsafe (the pain-monitoring model's acceptable limit).
COST_PAIN_THRESHOLD = 5.0
#: Safety cost of the dropout event itself (one unsafe event, even in the episode's last week).
DROPOUT_EVENT_COST = 1.0
#: Safety cost per remaining episode week when a patient drops out (the most a week in care can cost).
DROPOUT_COST_PER_WEEK = 1.0


def dropout_cost(remaining_weeks: np.ndarray) -> np.ndarray:
    """Safety cost a dropout adds: :data:`DROPOUT_EVENT_COST` + :data:`DROPOUT_COST_PER_WEEK` x the episode's
    remaining weeks (>= 0).

    A week in care costs at most 1 (in-session pain above the threshold or a flare), so charging every week
    out of care as 1 makes the cost of an episode that ends early at least what any continuation could have
    cost (ending episodes never lowers the cost), and the event cost makes it strictly more.
    """
    return DROPOUT_EVENT_COST + DROPOUT_COST_PER_WEEK * np.maximum(np.asarray(remaining_weeks, dtype=np.float64), 0.0)


_jit = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")


@_jit
def outcome_components(weights: np.ndarray, pain: float, function: float, flare: bool) -> tuple[float, float, float]:
    """``(pain, function, flare)`` components of one week: mean true pain (NRS 0-10), true function
    (0-100), a flare onset; ``weights`` as :meth:`RewardWeights.vector`."""
    return -weights[0] * pain / 10.0, weights[1] * function / 100.0, -weights[2] if flare else 0.0
