"""The validation helpers every input boundary uses: protocol and shield parameters, policy manifests, the
clinic's session logs and the Hydra apps' configs.

Each check takes the field's name and value and returns the value in its checked type, or raises
:class:`InvalidField`, a ``ValueError`` whose message starts with the field (``"sessions: must be an integer
in 0-5, got 7"``), so a command line prints it as one line and a web API returns it in a 4xx body.
:func:`as_number` and :func:`as_flag` are the lenient readers under them: they return ``None`` instead of
raising, for parsers that collect every problem of a document before reporting (the clinic's history).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

#: Texts read as true / false by :func:`as_flag` (lower case, surrounding blanks ignored).
TRUE_TEXTS = frozenset({"true", "yes", "y", "1"})
FALSE_TEXTS = frozenset({"false", "no", "n", "0"})


class InvalidField(ValueError):
    """A value that fails its check; ``str()`` is ``"<field>: <problem>"``.

    Attributes:
        field: the field's name as the user wrote it (e.g. ``observation_space.low`` or ``sessions``).
        problem: what is wrong, with the value that was given.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def require(condition: bool, field: str, problem: str, error: type[InvalidField] = InvalidField) -> None:
    """Raise ``error(field, problem)`` unless ``condition``."""
    if not condition:
        raise error(field, problem)


def as_number(value: Any, text: bool = False) -> float | None:
    """``value`` as a finite float, or ``None`` if it is not one. Booleans are not numbers; numeric texts
    (``"4.5"``) count only with ``text=True`` (CSV cells)."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float's range
            return None
    elif text and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_flag(value: Any, text: bool = False) -> bool | None:
    """``value`` as a bool, or ``None``; with ``text=True`` also the texts of :data:`TRUE_TEXTS` and
    :data:`FALSE_TEXTS`."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if text and isinstance(value, str):
        low = value.strip().lower()
        if low in TRUE_TEXTS:
            return True
        if low in FALSE_TEXTS:
            return False
    return None


def number(field: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    """``value`` as a finite float in ``[low, high]``."""
    x = as_number(value)
    bounded = math.isfinite(low) or math.isfinite(high)
    if x is None:
        raise InvalidField(field, f"must be a number in [{low}, {high}], got {value!r}" if bounded
                           else f"must be a finite number, got {value!r}")
    if not low <= x <= high:
        raise InvalidField(field, f"must be in [{low}, {high}], got {value!r}")
    return x


def integer(field: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``low..high`` (a bool or a float is not an integer)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer) or not low <= int(value) <= high:
        raise InvalidField(field, f"must be an integer in {low}-{high}, got {value!r}")
    return int(value)


def flag(field: str, value: Any) -> bool:
    """``value`` if it is a bool."""
    x = as_flag(value)
    if x is None:
        raise InvalidField(field, f"must be true or false, got {value!r}")
    return x


def choice(field: str, value: Any, allowed: Collection[Any]) -> Any:
    """``value`` if it is one of ``allowed`` (listed in the error, in their order)."""
    try:
        ok = value in allowed
    except TypeError:  # an unhashable value against a set
        ok = False
    if not ok:
        raise InvalidField(field, f"unknown {value!r} (allowed: {', '.join(map(str, allowed))})")
    return value


def text(field: str, value: Any, max_len: int = 1000) -> str:
    """``value`` if it is a non-empty string of at most ``max_len`` characters."""
    if not isinstance(value, str) or not 0 < len(value) <= max_len:
        raise InvalidField(field, f"must be a non-empty string of at most {max_len} characters, got {value!r}")
    return value


def mapping(field: str, value: Any, required: Sequence[str] = (), optional: Sequence[str] | None = None
            ) -> dict[str, Any]:
    """``value`` if it is a mapping with every ``required`` key and (unless ``optional`` is ``None``) no key
    outside ``required`` and ``optional``."""
    if not isinstance(value, Mapping):
        raise InvalidField(field, f"must be a JSON object, got {type(value).__name__}")
    missing = [k for k in required if k not in value]
    if missing:
        raise InvalidField(field, f"missing field(s) {missing}")
    if optional is not None:
        unknown = sorted(set(value) - set(required) - set(optional))
        if unknown:
            raise InvalidField(field, f"unknown field(s) {unknown}")
    return dict(value)
