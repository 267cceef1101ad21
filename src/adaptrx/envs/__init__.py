"""Gymnasium and SB3 adapters of the virtual patient (``DESIGN.md`` section 3).

``import adaptrx`` registers ``AdaptRx/Progression-v0`` and ``AdaptRx/ProgressionDiscrete-v0``
(idempotently; :mod:`adaptrx.registration`, re-exported here). :class:`PatientVecEnv` (an SB3 ``VecEnv``) is
imported lazily so that importing the package does not import torch.
"""

from __future__ import annotations

from typing import Any

from adaptrx.envs.actions import MOVE_NAMES, MOVES, decode_continuous, decode_discrete, encode_continuous
from adaptrx.envs.episodes import CohortEpisodes, EpisodeOutcomes, Rollout, rollout
from adaptrx.envs.features import FEATURE_NAMES, FEATURES, to_units
from adaptrx.envs.progression import ProgressionDiscreteEnv, ProgressionEnv
from adaptrx.envs.reward import COMPONENTS, RewardWeights
from adaptrx.envs.shield import SafetyShield, Shield
from adaptrx.envs.wrappers import HistoryStack
from adaptrx.registration import ENV_IDS, register_envs


def __getattr__(name: str) -> Any:
    if name == "PatientVecEnv":
        from adaptrx.envs.vec_env import PatientVecEnv

        return PatientVecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COMPONENTS",
    "ENV_IDS",
    "FEATURES",
    "FEATURE_NAMES",
    "MOVES",
    "MOVE_NAMES",
    "CohortEpisodes",
    "EpisodeOutcomes",
    "HistoryStack",
    "PatientVecEnv",
    "ProgressionDiscreteEnv",
    "ProgressionEnv",
    "RewardWeights",
    "Rollout",
    "SafetyShield",
    "Shield",
    "decode_continuous",
    "decode_discrete",
    "encode_continuous",
    "register_envs",
    "rollout",
    "to_units",
]
