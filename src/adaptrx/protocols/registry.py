"""The policy registry: every policy a trial, a card or the clinic can name (see :mod:`adaptrx.protocols`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adaptrx.protocols.base import Policy
from adaptrx.protocols.clinical import PROTOCOLS, make
from adaptrx.protocols.oracle import BeliefPlanner, OraclePolicy
from adaptrx.protocols.population_best import best_protocol

#: Every name :func:`get` accepts.
NAMES: tuple[str, ...] = (*PROTOCOLS, "population_best", "oracle", "belief_planner")


def get(name: str, **params: Any) -> Policy:
    """The policy called ``name`` with parameters ``params`` (a ``ValueError`` names a bad one)."""
    if name in PROTOCOLS:
        return make(name, **params)
    if name == "population_best":
        unknown = sorted(set(params) - {"condition"})
        if unknown:
            raise ValueError(f"population_best: unknown parameter(s) {unknown}; known: ['condition']")
        best, best_params = best_protocol(params.get("condition", "knee_oa"))
        return make(best, **best_params)
    if name == "oracle":
        if "env" not in params:
            raise ValueError("oracle: needs the env it controls: get('oracle', env=env)")
        return OraclePolicy(**params)
    if name == "belief_planner":
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
