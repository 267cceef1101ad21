"""The policy interface shared by clinical protocols, trained agents and the oracle (``DESIGN.md`` 6).

Every policy offers :meth:`Policy.reset` and SB3's
``predict(obs, state=None, episode_start=None, deterministic=True) -> (action, state)``: one observation
``(n_features,)`` or a batch ``(n_envs, n_features)`` in, one ``Progression-v0`` Box action ``(3,)`` or a
batch ``(n_envs, 3)`` out. ``stable_baselines3.common.evaluation.evaluate_policy`` therefore evaluates a
protocol exactly as it evaluates a trained agent.

:class:`Protocol` is the base of the rule-based clinical protocols. A protocol decides only from what the
observation shows (it reads it in clinical units through :func:`adaptrx.envs.features.to_units`), keeps a
small per-env memory (weeks into the programme and whatever the rule needs), and returns a
*prescription*: the target load (baseline-capacity units), sessions this week (0-5) and delivery.
:func:`encode_prescription` turns that into the Box action: the load change is relative to the last
prescribed load the observation shows, so a target more than +50 % (or -50 %) away is reached over several
weeks at the contract's largest step, as a clinician constrained to the same action would.

A new episode starts where ``episode_start`` says so, or where the observation's ``progress`` is 0 (the
first observation of an episode), so memory resets even when a caller passes no ``episode_start``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, is_dataclass
from typing import Any, ClassVar

import numpy as np

from adaptrx.envs.actions import LOAD_MAX, LOAD_MIN
from adaptrx.envs.belief import BELIEF_FEATURES
from adaptrx.envs.features import FEATURE_NAMES, to_units
from adaptrx.patient import HOME_ALONE, REMOTE, SUPERVISED

#: Delivery names accepted by protocol parameters, and their simulator codes.
DELIVERY: dict[str, int] = {"home": HOME_ALONE, "remote": REMOTE, "supervised": SUPERVISED}
#: ``a[2]`` of the Box action that selects each delivery code.
_DELIVERY_ACTION = np.array([-1.0, 0.0, 1.0])

Units = dict[str, np.ndarray]
Memory = dict[str, np.ndarray]
Prescription = tuple[np.ndarray, np.ndarray, np.ndarray]


class Policy(ABC):
    """What every policy offers (``DESIGN.md`` section 6)."""

    def reset(self) -> None:  # noqa: B027 - stateless policies have nothing to forget
        """Forget all per-env memory (the next call starts fresh episodes)."""

    @abstractmethod
    def predict(
        self,
        obs: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """SB3's signature: actions for one observation ``(n_features,)`` or a batch ``(n_envs, n_features)``."""


def batch_obs(obs: Any) -> tuple[np.ndarray, bool]:
    """``obs`` as float64 ``(n, n_features)`` (the clinical records: an env's belief features, if any, are
    dropped; rule-based protocols read records only) and whether a single observation was given."""
    x = np.asarray(obs, dtype=np.float64)
    single = x.ndim == 1
    x = np.atleast_2d(x)
    d = len(FEATURE_NAMES)
    if x.ndim != 2 or x.shape[1] not in (d, d + len(BELIEF_FEATURES)):
        raise ValueError(f"obs: expected shape ({d},) or (n_envs, {d}) (+{len(BELIEF_FEATURES)} belief features), "
                         f"got {np.shape(obs)}")
    x = x[:, :d]
    if not np.isfinite(x).all():
        raise ValueError("obs: must be finite")
    return x, single


def episode_starts(u: Units, episode_start: Any = None) -> np.ndarray:
    """Which envs start a new episode, bool ``(n,)``: where SB3's ``episode_start`` says so (one flag or one per
    env) or where the observation ``u`` (clinical units) is the first of an episode (``progress`` 0)."""
    start = u["progress"] == 0.0
    if episode_start is not None:
        flags = np.asarray(episode_start, dtype=bool).reshape(-1)
        if flags.size not in (1, len(start)):
            raise ValueError(f"episode_start: expected {len(start)} flag(s), got shape {np.shape(episode_start)}")
        start |= flags
    return start


def encode_prescription(load: np.ndarray, sessions: np.ndarray, delivery: np.ndarray,
                        last_load: np.ndarray) -> np.ndarray:
    """Box actions ``(n, 3)`` float32 that prescribe ``load`` (baseline-capacity units, clipped to the
    action's reach ``last_load`` x [0.5, 1.5] and to [0.05, 1.5]), ``sessions`` (0-5) and ``delivery`` codes."""
    last = np.maximum(np.asarray(last_load, dtype=np.float64), LOAD_MIN)
    target = np.clip(np.asarray(load, dtype=np.float64), LOAD_MIN, LOAD_MAX)
    a = np.empty((len(last), 3), dtype=np.float32)
    a[:, 0] = np.clip(2.0 * (target / last - 1.0), -1.0, 1.0)
    a[:, 1] = (np.clip(np.rint(sessions), 0, 5) - 2.5) / 2.5
    a[:, 2] = _DELIVERY_ACTION[np.asarray(delivery, dtype=np.int64)]
    return a


class Protocol(Policy):
    """A rule-based clinical protocol (subclasses are dataclasses of their parameters).

    Subclasses set :attr:`name`, validate their parameters in :meth:`validate` and implement
    :meth:`prescribe`; per-env memory beyond the week counter comes from :meth:`initial_memory`.
    """

    name: ClassVar[str] = "protocol"

    def __post_init__(self) -> None:
        self.validate()
        self._memory: Memory | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the parameter when one is out of range."""

    def initial_memory(self, n: int) -> Memory:
        """Per-env memory at the start of an episode: name -> array ``(n,)``. ``week`` (the number of
        weeks already prescribed in this episode) is always there."""
        return {}

    @abstractmethod
    def prescribe(self, u: Units, m: Memory) -> Prescription:
        """This week's ``(load, sessions, delivery)`` arrays ``(n,)`` from last week's observation ``u`` (clinical
        units, :func:`~adaptrx.envs.features.to_units`) and memory ``m`` (which may be updated in place)."""

    def reset(self) -> None:
        self._memory = None

    def _fresh(self, n: int) -> Memory:
        memory = {"week": np.zeros(n, dtype=np.int64)}
        memory.update(self.initial_memory(n))
        return memory

    def predict(
        self,
        obs: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        x, single = batch_obs(obs)
        n = len(x)
        u = to_units(x)
        start = episode_starts(u, episode_start)
        if self._memory is None or len(self._memory["week"]) != n:
            self._memory = self._fresh(n)
        elif start.any():
            fresh = self._fresh(n)
            for key, values in self._memory.items():
                values[start] = fresh[key][start]
        load, sessions, delivery = self.prescribe(u, self._memory)
        self._memory["week"] += 1
        n_ones = np.ones(n)
        actions = encode_prescription(load * n_ones, sessions * n_ones, delivery * n_ones, u["load"])
        return (actions[0] if single else actions), state

    def params(self) -> dict[str, Any]:
        """The protocol's parameters (what its config file sets)."""
        return asdict(self) if is_dataclass(self) else {}


# ------------------------------------------------------------------ parameter checks
def check_delivery(name: str, value: Any) -> int:
    """The code of a delivery name (``home``, ``remote``, ``supervised``), else a ``ValueError``."""
    if value not in DELIVERY:
        raise ValueError(f"{name}: must be one of {sorted(DELIVERY)}, got {value!r}")
    return DELIVERY[value]
