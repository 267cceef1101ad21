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

from adaptrx.agents.export import load_policy

__all__ = ["load_policy"]
