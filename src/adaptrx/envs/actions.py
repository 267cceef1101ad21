"""Action contracts: the continuous ``Progression-v0`` mapping and the named moves of the discrete env.

Both decode a batch of actions into a week's prescription ``(load, sessions, delivery)`` for the patient
simulator (:meth:`adaptrx.patient.PatientSimulator.step_week`). The continuous mapping is the contract of
``DESIGN.md`` section 3, also used by evaluation code outside the project:

* ``a[0]`` load change: ``load = last_load * (1 + 0.5 * a[0])`` clipped to ``[0.05, 1.5]`` baseline-capacity
  units (``a[0] = 0`` holds, ``-1`` halves, ``+1`` is +50 %);
* ``a[1]`` sessions this week: ``round(2.5 + 2.5 * a[1])``, 0-5;
* ``a[2]`` delivery: supervised if ``a[2] > 1/3``, home with remote monitoring if ``-1/3 < a[2] <= 1/3``,
  home alone otherwise.

The "last load" is the last *prescribed* load; a week with zero sessions still carries its load forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from adaptrx.patient import HOME_ALONE, REMOTE, SUPERVISED

#: Bounds of a prescribed load (baseline-capacity units).
LOAD_MIN, LOAD_MAX = 0.05, 1.5
DELIVERY_NAMES: tuple[str, ...] = ("home", "remote", "supervised")


_jit = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")


@_jit
def decode_continuous_into(actions: np.ndarray, last_load: np.ndarray, load: np.ndarray, sessions: np.ndarray,
                           delivery: np.ndarray) -> int:
    """Compiled core of :func:`decode_continuous`, writing into float arrays ``(n,)``.

    Returns 0, or 1 without writing anything if an action is not finite.
    """
    n = actions.shape[0]
    for i in range(n):
        for j in range(3):
            if not np.isfinite(actions[i, j]):
                return 1
    for i in range(n):
        a0 = min(max(actions[i, 0], -1.0), 1.0)
        a1 = min(max(actions[i, 1], -1.0), 1.0)
        a2 = min(max(actions[i, 2], -1.0), 1.0)
        load[i] = min(max(last_load[i] * (1.0 + 0.5 * a0), LOAD_MIN), LOAD_MAX)
        sessions[i] = np.rint(2.5 + 2.5 * a1)
        delivery[i] = SUPERVISED if a2 > 1.0 / 3.0 else (REMOTE if a2 > -1.0 / 3.0 else HOME_ALONE)
    return 0


def decode_continuous(action: np.ndarray, last_load: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map a batch of ``Progression-v0`` actions to prescriptions.

    Args:
        action: shape ``(n, 3)``, values in ``[-1, 1]`` (values outside are clipped, as SB3 does).
        last_load: last prescribed load per patient, shape ``(n,)``, baseline-capacity units.

    Returns:
        ``(load, sessions, delivery)`` as float arrays: loads in ``[0.05, 1.5]``, sessions 0-5 (whole numbers),
        delivery codes (0 home alone, 1 remote, 2 supervised).
    """
    a = np.ascontiguousarray(action, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"action: expected shape (n, 3), got {a.shape}")
    last = np.ascontiguousarray(last_load, dtype=np.float64)
    if last.shape != (a.shape[0],):
        raise ValueError(f"last_load: expected shape ({a.shape[0]},), got {last.shape}")
    load, sessions, delivery = np.empty(len(a)), np.empty(len(a)), np.empty(len(a))
    if decode_continuous_into(a, last, load, sessions, delivery):
        raise ValueError("action: must be finite (no NaN or inf)")
    return load, sessions, delivery


def encode_continuous(load_factor: float, sessions: int, delivery: int) -> np.ndarray:
    """The ``Progression-v0`` action that multiplies the load by ``load_factor`` (0.5-1.5), prescribes
    ``sessions`` (0-5) and ``delivery`` (0-2): the inverse of :func:`decode_continuous`, for protocols."""
    if not 0.5 <= load_factor <= 1.5:
        raise ValueError(f"load_factor: must be in [0.5, 1.5], got {load_factor}")
    if sessions not in range(6):
        raise ValueError(f"sessions: must be an integer 0-5, got {sessions}")
    if delivery not in (HOME_ALONE, REMOTE, SUPERVISED):
        raise ValueError(f"delivery: must be 0, 1 or 2, got {delivery}")
    delivery_value = {HOME_ALONE: -1.0, REMOTE: 0.0, SUPERVISED: 1.0}[delivery]
    return np.array([2.0 * (load_factor - 1.0), (sessions - 2.5) / 2.5, delivery_value], dtype=np.float32)


@dataclass(frozen=True)
class Move:
    """A named clinical move of ``ProgressionDiscrete-v0``.

    Attributes:
        name: what a clinician would call it.
        load_factor: multiplier of the last prescribed load.
        sessions_delta: change of the planned sessions per week (kept within 1-5).
        rest: a rest week (no sessions this week; the plan is kept for the next week).
        delivery: new delivery code, or ``None`` to keep the current one.
    """

    name: str
    load_factor: float = 1.0
    sessions_delta: int = 0
    rest: bool = False
    delivery: int | None = None


#: The discrete action set, in action-index order.
MOVES: tuple[Move, ...] = (
    Move("rest", rest=True),
    Move("regress_50", load_factor=0.5),
    Move("regress_20", load_factor=0.8),
    Move("hold"),
    Move("progress_10", load_factor=1.1),
    Move("progress_20", load_factor=1.2),
    Move("progress_30", load_factor=1.3),
    Move("add_session", sessions_delta=1),
    Move("drop_session", sessions_delta=-1),
    Move("supervise", delivery=SUPERVISED),
    Move("remote_monitoring", delivery=REMOTE),
    Move("home_alone", delivery=HOME_ALONE),
)
MOVE_NAMES: tuple[str, ...] = tuple(m.name for m in MOVES)
MOVE_LOAD_FACTOR = np.array([m.load_factor for m in MOVES])
MOVE_SESSIONS_DELTA = np.array([m.sessions_delta for m in MOVES], dtype=np.int64)
MOVE_REST = np.array([m.rest for m in MOVES])
MOVE_DELIVERY = np.array([-1 if m.delivery is None else m.delivery for m in MOVES], dtype=np.int64)


@_jit
def decode_discrete_into(moves: np.ndarray, last_load: np.ndarray, plan: np.ndarray, last_delivery: np.ndarray,
                         load: np.ndarray, sessions: np.ndarray, delivery: np.ndarray) -> int:
    """Compiled core of :func:`decode_discrete`; updates ``plan`` (int64) in place.

    Returns 0, or 1 without writing anything if a move index is out of range.
    """
    n = moves.shape[0]
    for i in range(n):
        if moves[i] < 0 or moves[i] >= MOVE_LOAD_FACTOR.shape[0]:
            return 1
    for i in range(n):
        m = moves[i]
        load[i] = min(max(last_load[i] * MOVE_LOAD_FACTOR[m], LOAD_MIN), LOAD_MAX)
        plan[i] = min(max(plan[i] + MOVE_SESSIONS_DELTA[m], 1), 5)
        sessions[i] = 0.0 if MOVE_REST[m] else plan[i]
        delivery[i] = MOVE_DELIVERY[m] if MOVE_DELIVERY[m] >= 0 else last_delivery[i]
    return 0


def move_indices(action: Any) -> np.ndarray:
    """Validate move indices (any integer-valued array-like) and return them as int64 ``(n,)``."""
    idx = np.asarray(action)
    if idx.dtype.kind not in "iu" and not (
        idx.dtype.kind in "fb" and np.isfinite(idx).all() and np.all(idx == np.rint(idx))
    ):
        raise ValueError(f"action: must be integer move indices 0-{len(MOVES) - 1}")
    idx = np.ascontiguousarray(idx, dtype=np.int64).reshape(-1)
    if idx.min(initial=0) < 0 or idx.max(initial=0) >= len(MOVES):
        raise ValueError(f"action: must be integer move indices 0-{len(MOVES) - 1}")
    return idx


def decode_discrete(
    action: np.ndarray, last_load: np.ndarray, planned_sessions: np.ndarray, last_delivery: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Map a batch of move indices to prescriptions.

    Args:
        action: move indices into :data:`MOVES`, shape ``(n,)``.
        last_load: last prescribed load, shape ``(n,)`` (baseline-capacity units).
        planned_sessions: sessions/week of the current plan, 1-5.
        last_delivery: current delivery codes.

    Returns:
        ``(load, sessions, delivery, planned_sessions)``: this week's prescription (float arrays) and the
        updated plan (int64).
    """
    idx = move_indices(action)
    n = len(idx)
    plan = np.array(planned_sessions, dtype=np.int64).reshape(n)
    load, sessions, delivery = np.empty(n), np.empty(n), np.empty(n)
    decode_discrete_into(idx, np.ascontiguousarray(last_load, dtype=np.float64), plan,
                         np.ascontiguousarray(last_delivery, dtype=np.float64), load, sessions, delivery)
    return load, sessions, delivery, plan
