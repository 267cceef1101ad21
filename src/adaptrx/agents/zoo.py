"""Read RL Zoo3 hyperparameter files (``configs/zoo/<algo>.yml``) into SB3 constructor arguments.

The translation is RL Zoo3's: the zoo-only keys (``n_envs``, ``n_timesteps``, ``normalize``, ...) are
taken out, ``lin_<x>`` strings become linear schedules from ``x`` to 0, and the ``policy_kwargs`` string is
read, but never executed: it is parsed as a Python expression made only of ``dict(...)`` calls with keyword
arguments, literals, lists and ``nn.<Module>`` names of ``torch.nn``. Anything else is an error naming it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: RL Zoo3 keys that are not arguments of the algorithm's constructor.
ZOO_ONLY_KEYS = frozenset({"n_envs", "n_timesteps", "normalize", "env_kwargs", "policy", "env_wrapper",
                           "vec_env_wrapper", "frame_stack", "callback", "monitor_kwargs"})


@dataclass(frozen=True)
class ZooHyperparams:
    """One env's entry of a zoo file: constructor arguments plus the zoo-only settings."""

    kwargs: dict[str, Any]  # algorithm constructor arguments (policy excluded)
    policy: str
    n_envs: int
    n_timesteps: int
    normalize: bool


def _linear(initial: float) -> Callable[[float], float]:
    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


def _policy_kwargs(text: str) -> dict[str, Any]:
    from torch import nn

    def build(node: ast.AST) -> Any:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            return {kw.arg: build(kw.value) for kw in node.keywords}
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nn":
            if not isinstance(getattr(nn, node.attr, None), type):
                raise ValueError(f"policy_kwargs: torch.nn has no module {node.attr!r}")
            return getattr(nn, node.attr)
        if isinstance(node, ast.List | ast.Tuple):
            return [build(e) for e in node.elts]
        if isinstance(node, ast.Constant):
            return node.value
        raise ValueError(f"policy_kwargs: only dict(...), literals, lists and nn.<Module> allowed, got "
                         f"{ast.unparse(node)!r}")

    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"policy_kwargs: not an expression: {text!r}") from exc
    value = build(tree.body)
    if not isinstance(value, dict):
        raise ValueError(f"policy_kwargs: must be a dict(...), got {text!r}")
    return value


def zoo_hyperparams(path: str | Path, env_id: str) -> ZooHyperparams:
    """The entry of ``env_id`` in the zoo file at ``path``, translated as RL Zoo3 does."""
    entries = yaml.safe_load(Path(path).read_text())
    if not isinstance(entries, dict) or env_id not in entries:
        raise ValueError(f"{path}: no entry for env id {env_id!r}")
    entry = dict(entries[env_id])
    kwargs = {k: v for k, v in entry.items() if k not in ZOO_ONLY_KEYS}
    for key, value in list(kwargs.items()):
        if isinstance(value, str) and value.startswith("lin_"):
            kwargs[key] = _linear(float(value.removeprefix("lin_")))
    if isinstance(kwargs.get("policy_kwargs"), str):
        kwargs["policy_kwargs"] = _policy_kwargs(kwargs["policy_kwargs"])
    return ZooHyperparams(kwargs=kwargs, policy=str(entry.get("policy", "MlpPolicy")),
                          n_envs=int(entry.get("n_envs", 1)), n_timesteps=int(float(entry["n_timesteps"])),
                          normalize=bool(entry.get("normalize", False)))
