"""Fixed clinical protocols, the safety shield and the two references (``DESIGN.md`` sections 4-6).

``get(name, **params)`` returns a policy with ``reset()`` and SB3's ``predict``:

* clinical protocols (:mod:`adaptrx.protocols.clinical`): ``none``, ``attention_control``, ``constant``,
  ``linear``, ``acsm``, ``pain_monitoring``, ``graded_activity``, ``rpe_autoregulation``, ``glad``,
  ``start_high``, ``start_low``, ``aggressive``; parameters as in ``configs/policy/protocol/<name>.yaml``;
* ``population_best``: the single best of those on the train cohort
  (:mod:`adaptrx.protocols.population_best`; ``condition=`` picks the stored search, default knee OA);
* ``oracle``: the planner that knows the true parameters and state (:mod:`adaptrx.protocols.oracle`), built
  with the env it controls: ``get("oracle", env=env)``.
* ``belief_planner``: the oracle's planner over posterior particles of the env's belief filter instead of
  the true patient (:class:`adaptrx.protocols.oracle.BeliefPlanner`), built with an env with ``belief=True``:
  ``get("belief_planner", env=env)``.

:class:`~adaptrx.protocols.safety_rules.SafetyRules` is the shield of section 4 and
:class:`~adaptrx.protocols.safety_rules.ShieldedPolicy` puts it around any policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adaptrx.protocols.base import Policy, Protocol
from adaptrx.protocols.clinical import PROTOCOLS
from adaptrx.protocols.safety_rules import RULES, SafetyRules, ShieldedPolicy

#: Every name :func:`get` accepts.
NAMES: tuple[str, ...] = (*PROTOCOLS, "population_best", "oracle", "belief_planner")


def get(name: str, **params: Any) -> Policy:
    """The policy called ``name`` with parameters ``params`` (a ``ValueError`` names a bad one)."""
    if name in PROTOCOLS:
        cls = PROTOCOLS[name]
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"{name}: unknown parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**params)
    if name == "population_best":
        from adaptrx.protocols.population_best import best_protocol

        unknown = sorted(set(params) - {"condition"})
        if unknown:
            raise ValueError(f"population_best: unknown parameter(s) {unknown}; known: ['condition']")
        best, best_params = best_protocol(params.get("condition", "knee_oa"))
        return get(best, **best_params)
    if name == "oracle":
        from adaptrx.protocols.oracle import OraclePolicy

        if "env" not in params:
            raise ValueError("oracle: needs the env it controls: get('oracle', env=env)")
        return OraclePolicy(**params)
    if name == "belief_planner":
        from adaptrx.protocols.oracle import BeliefPlanner

        if "env" not in params:
            raise ValueError("belief_planner: needs the env it controls (with belief=True): "
                             "get('belief_planner', env=env)")
        return BeliefPlanner(**params)
    raise ValueError(f"name: unknown protocol {name!r}; known: {', '.join(NAMES)}")


def from_config(config: Mapping[str, Any], **extra: Any) -> Policy:
    """A policy from a ``configs/policy/protocol/*.yaml`` mapping (``name`` plus parameters)."""
    params = dict(config)
    if "name" not in params:
        raise ValueError("config: missing 'name'")
    name = params.pop("name")
    return get(name, **params, **extra)


__all__ = ["NAMES", "RULES", "Policy", "Protocol", "SafetyRules", "ShieldedPolicy", "from_config", "get"]
