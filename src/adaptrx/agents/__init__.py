"""RL agents for the AdaptRx environments.

* :mod:`adaptrx.agents.factory`: the SB3 algorithm factory (``ppo``, ``a2c``, ``sac``, ``td3``,
  ``recurrent_ppo``) used by ``adaptrx-train``;
* :mod:`adaptrx.agents.export`: the safe policy format (``policy.safetensors`` + ``manifest.json``) and
  :func:`load_policy`, which returns a shipped policy behind the policy interface (no pickle anywhere);
* :mod:`adaptrx.protocols.oracle`: the upper-bound planner (also ``adaptrx.protocols.get("oracle", env=env)``);
* :mod:`adaptrx.agents.zoo`: the tuned RL Zoo3 hyperparameters.

Shipped policies live in the repository's ``agents/<name>/`` folders (e.g. ``agents/dagger-knee_oa-v0``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_policy"]


def load_policy(path: Any, **spaces: Any) -> Any:
    """Load a shipped policy directory (see :func:`adaptrx.agents.export.load_policy`; keyword arguments
    ``observation_space``, ``action_space`` and ``feature_names`` are the env's, checked against the manifest)."""
    from adaptrx.agents.export import load_policy as _load

    return _load(path, **spaces)
