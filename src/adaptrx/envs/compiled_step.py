"""Compiled env step: the simulated week, observation records, reward and cost in one call.

The single env (a batch of one) and :class:`~adaptrx.envs.vec_env.PatientVecEnv` both step through
:func:`env_step` (after the compiled action decoders of :mod:`adaptrx.envs.actions`). It calls the
patient kernel (:func:`adaptrx.patient.kernel.step_week`, the only implementation of the dynamics) and
then, per patient, updates the observation records of :mod:`adaptrx.envs.features`, the reward
components of :mod:`adaptrx.envs.reward` and the safety cost. Doing this in one compiled call keeps a
single-patient step at a few microseconds, so an env step costs little more than Python's bookkeeping of
the ``info`` dict.

:mod:`~adaptrx.envs.features` (names, scales, bounds) and :mod:`~adaptrx.envs.reward` (weights, the outcome
components shared with the dropout tail) document what this kernel computes; the tests check it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from adaptrx.envs.actions import decode_continuous_into, decode_discrete_into
from adaptrx.envs.features import FEATURE_INDEX, HIGH, HISTORY_FEATURES, HISTORY_LAGS, LOW, SCALES
from adaptrx.envs.reward import COST_PAIN_THRESHOLD, outcome_components
from adaptrx.patient import REMOTE, SUPERVISED, kernel
from adaptrx.patient.kernel import Out

_jit = njit(cache=True, fastmath=False, error_model="numpy")

# feature rows (module constants are frozen into the compiled code)
_F_PROGRESS = FEATURE_INDEX["progress"]
_F_LOAD = FEATURE_INDEX["load"]
_F_SESSIONS = FEATURE_INDEX["sessions"]
_FSUPERVISED = FEATURE_INDEX["supervised"]
_FREMOTE = FEATURE_INDEX["remote"]
_F_SESSION_PAIN_MEAN = FEATURE_INDEX["session_pain_mean"]
_F_SESSION_PAIN_MAX = FEATURE_INDEX["session_pain_max"]
_F_MORNING_CHANGE = FEATURE_INDEX["morning_change"]
_F_DIARY_PAIN = FEATURE_INDEX["diary_pain"]
_F_DIARY_DAYS = FEATURE_INDEX["diary_days"]
_F_RPE = FEATURE_INDEX["rpe"]
_F_ATTENDANCE = FEATURE_INDEX["attendance"]
_F_SESSIONS_ATTENDED = FEATURE_INDEX["sessions_attended"]
_F_FLARE_REPORTED = FEATURE_INDEX["flare_reported"]
_F_FUNCTION = FEATURE_INDEX["function"]
_F_CAPACITY_TEST = FEATURE_INDEX["capacity_test"]
# history: _HIST_DST[k, j] is the row of feature j at lag HISTORY_LAGS[k]; _HIST_SRC[j] its current row
_HIST_SRC = np.array([FEATURE_INDEX[name] for name in HISTORY_FEATURES], dtype=np.int64)
_HIST_DST = np.array([[FEATURE_INDEX[f"{name}_lag{lag}"] for name in HISTORY_FEATURES] for lag in HISTORY_LAGS],
                     dtype=np.int64)
_SCALES = SCALES.astype(np.float64)
_LOW = LOW.astype(np.float64)
_HIGH = HIGH.astype(np.float64)

#: Rows of the step record: reward components (reward.COMPONENTS order), reward, cost, terminated, truncated.
R_PAIN, R_FUNCTION, R_FLARE, R_SUPERVISION, RREMOTE, R_DROPOUT, R_REWARD, R_COST, R_TERMINATED, R_TRUNCATED = range(10)
N_RECORD = 10
#: Rows of the episode matrix ``E`` (float64, one column per patient): the prescription carried to next
#: week, the discrete env's planned sessions/week, weeks done, and whether the episode has ended (0/1).
E_LAST_LOAD, E_PLAN, E_DELIVERY, E_WEEK, E_DONE = range(5)
N_EPISODE = 5
#: Row blocks of the work matrix ``W`` a step writes: this week's prescription (load, sessions, delivery),
#: the simulator's week output (rows named by :class:`~adaptrx.patient.kernel.Out`) and the step record.
W_RX, W_OUT = 0, 3
W_RECORD = W_OUT + len(Out)
N_WORK = W_RECORD + N_RECORD
#: Status of a malformed action and of a step after an episode ended (the patient kernel uses 1-3).
ACTION_ERROR, EPISODE_DONE = 4, 5


@_jit
def step_continuous(P: np.ndarray, S: np.ndarray, K: np.ndarray, keys: np.ndarray, actions: np.ndarray,
                    E: np.ndarray, C: np.ndarray, values: np.ndarray, W: np.ndarray,
                    obs: np.ndarray) -> tuple[int, int]:
    """Decode ``Progression-v0`` actions ``(n, 3)`` and step (arguments as :func:`env_step`)."""
    if decode_continuous_into(actions, E[E_LAST_LOAD], W[W_RX], W[W_RX + 1], W[W_RX + 2]):
        return ACTION_ERROR, 0
    return env_step(P, S, K, keys, E, C, values, W, obs)


@_jit
def step_discrete(P: np.ndarray, S: np.ndarray, K: np.ndarray, keys: np.ndarray, moves: np.ndarray,
                  E: np.ndarray, C: np.ndarray, values: np.ndarray, W: np.ndarray,
                  obs: np.ndarray) -> tuple[int, int]:
    """Decode ``ProgressionDiscrete-v0`` move indices ``(n,)`` (updating the plan) and step."""
    saved = E[E_PLAN].copy()
    if decode_discrete_into(moves, E[E_LAST_LOAD], E[E_PLAN], E[E_DELIVERY], W[W_RX], W[W_RX + 1], W[W_RX + 2]):
        return ACTION_ERROR, 0
    status, dropouts = env_step(P, S, K, keys, E, C, values, W, obs)
    if status != 0:
        E[E_PLAN] = saved  # nothing happened
    return status, dropouts


@_jit
def env_step(P: np.ndarray, S: np.ndarray, K: np.ndarray, keys: np.ndarray, E: np.ndarray, C: np.ndarray,
             values: np.ndarray, W: np.ndarray, obs: np.ndarray) -> tuple[int, int]:
    """Simulate this week's prescriptions (rows ``W_RX`` of ``W``) and write what the env returns.

    Args:
        P, S, K, keys: the patient simulator's matrices (:meth:`PatientSimulator.kernel_arrays`).
        E: episode matrix (rows ``E_*``): week and done are updated, the prescription carried forward.
        C: ``(pain, function, flare, supervision, remote)`` reward weights, then the episode length (weeks).
        values: observation records in clinical units, ``(n_features, n)`` (updated here).
        W: work matrix ``(N_WORK, n)``: this week's prescription is read from rows ``W_RX..W_RX+2``; the
            simulator's output (``W_OUT..``) and the step record (``W_RECORD..``: reward components with
            the dropout term 0, reward, cost, terminated, truncated) are written.
        obs: scaled float32 observations ``(n, n_features)`` (written here).

    Returns:
        ``(status, dropouts)``: 0 = simulated, :data:`EPISODE_DONE` if a patient's episode has ended (reset
        it first), else the patient kernel's error status (nothing changed in either case); and the number
        of patients who dropped out this week.
    """
    weights, weeks = C[:5], C[5]
    week, done = E[E_WEEK], E[E_DONE]
    load, sessions, delivery = W[W_RX], W[W_RX + 1], W[W_RX + 2]
    out, record = W[W_OUT:W_RECORD], W[W_RECORD:]
    n = P.shape[1]
    for i in range(n):
        if done[i] != 0.0:
            return EPISODE_DONE, 0
    status = kernel.step_week(P, S, K, keys, load, sessions, delivery, out)
    if status != 0:
        return status, 0
    n_hist, n_feat = _HIST_SRC.shape[0], _SCALES.shape[0]
    dropouts = 0
    for i in range(n):
        week[i] += 1
        E[E_LAST_LOAD, i] = load[i]
        E[E_DELIVERY, i] = delivery[i]
        v = values
        # history window: lag k+1 <- lag k, then the first lag <- last week's records
        for k in range(_HIST_DST.shape[0] - 1, 0, -1):
            for j in range(n_hist):
                v[_HIST_DST[k, j], i] = v[_HIST_DST[k - 1, j], i]
        for j in range(n_hist):
            v[_HIST_DST[0, j], i] = v[_HIST_SRC[j], i]
        deliv = delivery[i]
        n_sess = sessions[i]
        v[_F_PROGRESS, i] = week[i] / weeks
        v[_F_LOAD, i] = load[i]
        v[_F_SESSIONS, i] = n_sess
        v[_FSUPERVISED, i] = 1.0 if deliv == SUPERVISED else 0.0
        v[_FREMOTE, i] = 1.0 if deliv == REMOTE else 0.0
        v[_F_SESSION_PAIN_MEAN, i] = _or_zero(out[Out.session_pain_mean, i])
        v[_F_SESSION_PAIN_MAX, i] = _or_zero(out[Out.obs_session_pain_max, i])
        v[_F_MORNING_CHANGE, i] = _or_zero(out[Out.morning_change_mean, i])
        if out[Out.diary_days, i] > 0:
            v[_F_DIARY_PAIN, i] = out[Out.diary_pain, i]  # else carried forward
        v[_F_DIARY_DAYS, i] = out[Out.diary_days, i]
        v[_F_RPE, i] = _or_zero(out[Out.rpe_mean, i])
        v[_F_ATTENDANCE, i] = _or_zero(out[Out.attendance, i])
        v[_F_SESSIONS_ATTENDED, i] = out[Out.sessions_attended, i]
        v[_F_FLARE_REPORTED, i] = out[Out.flare_reported, i]
        v[_F_FUNCTION, i] = out[Out.obs_function, i]
        if not np.isnan(out[Out.capacity_test, i]):
            v[_F_CAPACITY_TEST, i] = out[Out.capacity_test, i]  # else carried forward
        for f in range(n_feat):
            obs[i, f] = min(max(v[f, i] / _SCALES[f], _LOW[f]), _HIGH[f])
        # reward components and cost
        flare = out[Out.flares, i] > 0
        c_pain, c_function, c_flare = outcome_components(weights, out[Out.pain, i], out[Out.function, i], flare)
        record[R_PAIN, i] = c_pain
        record[R_FUNCTION, i] = c_function
        record[R_FLARE, i] = c_flare
        supervised = out[Out.sessions_attended, i] if deliv == SUPERVISED else 0.0
        record[R_SUPERVISION, i] = -weights[3] * supervised
        record[RREMOTE, i] = -weights[4] if deliv == REMOTE and n_sess > 0 else 0.0
        record[R_DROPOUT, i] = 0.0
        record[R_REWARD, i] = (record[R_PAIN, i] + record[R_FUNCTION, i] + record[R_FLARE, i]
                               + record[R_SUPERVISION, i] + record[RREMOTE, i])
        spm = out[Out.session_pain_max, i]
        record[R_COST, i] = 1.0 if flare or (not np.isnan(spm) and spm > COST_PAIN_THRESHOLD) else 0.0
        terminated = out[Out.new_dropout, i] != 0.0
        truncated = week[i] >= weeks and not terminated
        record[R_TERMINATED, i] = 1.0 if terminated else 0.0
        record[R_TRUNCATED, i] = 1.0 if truncated else 0.0
        done[i] = 1.0 if terminated or truncated else 0.0
        dropouts += terminated
    return 0, dropouts



@_jit
def _or_zero(x: float) -> float:
    return 0.0 if np.isnan(x) else x


@_jit
def untreated_tails(P: np.ndarray, S: np.ndarray, K: np.ndarray, keys: np.ndarray, index: np.ndarray,
                    remaining: np.ndarray, weights: np.ndarray, pain: np.ndarray) -> np.ndarray:
    """Forward-simulate patients ``index`` without exercise from their current state (left untouched).

    Each patient meets its own noise (the same draws it would have met in the programme), so the tail is
    the outcome an intention-to-treat analysis assigns to a dropout.

    Args:
        remaining: weeks to simulate per patient (int64, ``(m,)``).
        weights: reward weights (as :meth:`RewardWeights.vector`).
        pain: ``(m, max(remaining))`` float array; row ``j`` receives patient ``index[j]``'s weekly mean
            true pain (NRS) for its ``remaining[j]`` weeks.

    Returns:
        Per patient, the sum of the ``pain``, ``function`` and ``flare`` reward components over the tail
        (the ``dropout`` reward term).
    """
    values = np.zeros(index.shape[0])
    nothing = np.zeros(1)  # load 0, no sessions, home alone
    out = np.empty((W_RECORD - W_OUT, 1))
    for j in range(index.shape[0]):
        i = index[j]
        state = S[:, i : i + 1].copy()
        for t in range(remaining[j]):
            kernel.step_week(P[:, i : i + 1], state, K, keys[i : i + 1], nothing, nothing, nothing, out)
            pain[j, t] = out[Out.pain, 0]
            c_pain, c_function, c_flare = outcome_components(weights, out[Out.pain, 0], out[Out.function, 0],
                                                             out[Out.flares, 0] > 0)
            values[j] += c_pain + c_function + c_flare
    return values
