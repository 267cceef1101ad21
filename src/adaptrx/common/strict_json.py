"""Strict JSON parsing for everything adaptrx reads from outside (policy manifests, clinic histories).

:func:`loads` is :func:`json.loads` that also rejects duplicate object keys and the non-standard constants
``NaN``, ``Infinity`` and ``-Infinity`` (Python's parser accepts both by default), raising ``ValueError``.
Nothing is evaluated.
"""

from __future__ import annotations

import json
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def loads(text: str | bytes) -> Any:
    """Parse JSON ``text`` strictly (see the module docstring); ``ValueError`` (or ``RecursionError`` for
    absurdly deep nesting) on anything else."""
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
