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

import numpy as np

from adaptrx.patient import HOME_ALONE, REMOTE, SUPERVISED

#: Bounds of a prescribed load (baseline-capacity units).
LOAD_MIN, LOAD_MAX = 0.05, 1.5
DELIVERY_NAMES: tuple[str, ...] = ("home", "remote", "supervised")


def decode_continuous(action: np.ndarray, last_load: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map a batch of ``Progression-v0`` actions to prescriptions.

    Args:
        action: shape ``(n, 3)``, values in ``[-1, 1]`` (values outside are clipped, as SB3 does).
        last_load: last prescribed load per patient, shape ``(n,)``, baseline-capacity units.

    Returns:
        ``(load, sessions, delivery)``: float loads in ``[0.05, 1.5]``, int sessions 0-5, int delivery codes
        (0 home alone, 1 remote, 2 supervised).
    """
    a = np.asarray(action, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"action: expected shape (n, 3), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("action: must be finite (no NaN or inf)")
    a = np.clip(a, -1.0, 1.0)
    load = np.clip(last_load * (1.0 + 0.5 * a[:, 0]), LOAD_MIN, LOAD_MAX)
    sessions = np.rint(2.5 + 2.5 * a[:, 1]).astype(np.int64)
    delivery = np.where(a[:, 2] > 1.0 / 3.0, SUPERVISED, np.where(a[:, 2] > -1.0 / 3.0, REMOTE, HOME_ALONE))
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
_LOAD_FACTOR = np.array([m.load_factor for m in MOVES])
_SESSIONS_DELTA = np.array([m.sessions_delta for m in MOVES], dtype=np.int64)
_REST = np.array([m.rest for m in MOVES])
_DELIVERY = np.array([-1 if m.delivery is None else m.delivery for m in MOVES], dtype=np.int64)


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
        ``(load, sessions, delivery, planned_sessions)``: this week's prescription and the updated plan.
    """
    idx = np.asarray(action)
    if idx.dtype.kind not in "iu" and not (np.isfinite(idx).all() and np.all(idx == np.rint(idx))):
        raise ValueError(f"action: must be integer move indices 0-{len(MOVES) - 1}")
    idx = idx.astype(np.int64).reshape(-1)
    if idx.min(initial=0) < 0 or idx.max(initial=0) >= len(MOVES):
        raise ValueError(f"action: must be integer move indices 0-{len(MOVES) - 1}")
    load = np.clip(last_load * _LOAD_FACTOR[idx], LOAD_MIN, LOAD_MAX)
    plan = np.clip(planned_sessions + _SESSIONS_DELTA[idx], 1, 5)
    sessions = np.where(_REST[idx], 0, plan)
    delivery = np.where(_DELIVERY[idx] >= 0, _DELIVERY[idx], last_delivery)
    return load, sessions, delivery, plan
