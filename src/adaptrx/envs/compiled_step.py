"""Compiled env step: the simulated week, observation records, reward and cost in one call.

The single env (a batch of one) and :class:`~adaptrx.envs.vec_env.PatientVecEnv` both step through
:func:`env_step` (after the compiled action decoders of :mod:`adaptrx.envs.actions`). It calls the
patient kernel (:func:`adaptrx.patient.kernel.step_week`, the only implementation of the dynamics) and
then updates the observation records of :mod:`adaptrx.envs.features`, the reward components of
:mod:`adaptrx.envs.reward` and the safety cost, in passes over whole rows (the matrices hold one column per
patient; a per-patient walk down ~40 rows spaced 32 KB apart at 4096 patients thrashed the cache). Doing this
in one compiled call keeps a single-patient step at a few microseconds, so an env step costs little more than
Python's bookkeeping of the ``info`` dict.

:mod:`~adaptrx.envs.features` (names, scales, bounds) and :mod:`~adaptrx.envs.reward` (weights, the outcome
components shared with the dropout tail) document what this kernel computes; the tests check it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from adaptrx.envs.actions import decode_continuous_into, decode_discrete_into
from adaptrx.envs.features import FEATURE_INDEX, HIGH, HISTORY_FEATURES, HISTORY_LAGS, INTAKE_SOURCES, LOW, SCALES
from adaptrx.envs.reward import COST_PAIN_THRESHOLD, outcome_components
from adaptrx.patient import REMOTE, SUPERVISED, kernel
from adaptrx.patient.kernel import Out

_jit = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")

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
_START_SOURCE = np.full(len(SCALES), -1, dtype=np.int64)  # feature -> intake row it starts from (-1: none)
for _feature, _record in INTAKE_SOURCES:
    _START_SOURCE[_feature] = _record
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
    weeks = C[5]
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
    last_load, last_delivery = E[E_LAST_LOAD], E[E_DELIVERY]
    for i in range(n):
        week[i] += 1
        last_load[i] = load[i]
        last_delivery[i] = delivery[i]
    _update_records(values, week, weeks, load, sessions, delivery, out)
    _scale_observations(values, obs)
    return 0, _step_record(C, week, delivery, sessions, out, record, done)


@_jit
def start_features(values: np.ndarray, index: np.ndarray, intake: np.ndarray, initial_load: float,
                   obs: np.ndarray) -> None:
    """Start the episodes of patients ``index`` at intake (week 0, nothing prescribed yet): their columns of
    ``values`` ``(n_features, n)`` from the simulator's intake matrix ``intake`` (rows named by ``kernel.In``;
    :data:`~adaptrx.envs.features.INTAKE_SOURCES`), ``load`` = ``initial_load`` (baseline-capacity units),
    ``capacity_test`` = 1, the rest 0; and their first observations into ``obs`` ``(len(index), n_features)``,
    scaled and clipped as in :func:`env_step`. Row by row, like the step's passes."""
    m = index.shape[0]
    for f in range(values.shape[0]):
        source = _START_SOURCE[f]
        row, src, scale, low, high = values[f], intake[max(source, 0)], _SCALES[f], _LOW[f], _HIGH[f]
        constant = initial_load if f == _F_LOAD else (1.0 if f == _F_CAPACITY_TEST else 0.0)
        for j in range(m):
            i = index[j]
            x = src[i] if source >= 0 else constant
            row[i] = x
            obs[j, f] = min(max(x / scale, low), high)


# The post-kernel passes below run row by row (each loop streams a few contiguous rows of the
# ``(rows, n)`` matrices): a loop over patients that touched every row of a column would read rows
# ``n * 8`` bytes apart, which for power-of-two batch sizes all fall into the same cache sets.


@_jit
def _copy_row(dst: np.ndarray, src: np.ndarray) -> None:
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@_jit
def _update_records(v: np.ndarray, week: np.ndarray, weeks: float, load: np.ndarray, sessions: np.ndarray,
                    delivery: np.ndarray, out: np.ndarray) -> None:
    """This week's observation records (clinical units) into ``v`` ``(n_features, n)``, after shifting the
    history window (lag k+1 <- lag k, then the first lag <- last week's records)."""
    n, n_hist = v.shape[1], _HIST_SRC.shape[0]
    for k in range(_HIST_DST.shape[0] - 1, 0, -1):
        for j in range(n_hist):
            _copy_row(v[_HIST_DST[k, j]], v[_HIST_DST[k - 1, j]])
    for j in range(n_hist):
        _copy_row(v[_HIST_DST[0, j]], v[_HIST_SRC[j]])
    row = v[_F_PROGRESS]
    for i in range(n):
        row[i] = week[i] / weeks
    _copy_row(v[_F_LOAD], load)
    _copy_row(v[_F_SESSIONS], sessions)
    supervised, remote = v[_FSUPERVISED], v[_FREMOTE]
    for i in range(n):
        supervised[i] = 1.0 if delivery[i] == SUPERVISED else 0.0
        remote[i] = 1.0 if delivery[i] == REMOTE else 0.0
    _or_zero_row(v[_F_SESSION_PAIN_MEAN], out[Out.session_pain_mean])
    _or_zero_row(v[_F_SESSION_PAIN_MAX], out[Out.obs_session_pain_max])
    _or_zero_row(v[_F_MORNING_CHANGE], out[Out.morning_change_mean])
    diary_pain, diary_days, out_diary_pain, out_diary_days = v[_F_DIARY_PAIN], v[_F_DIARY_DAYS], \
        out[Out.diary_pain], out[Out.diary_days]
    for i in range(n):
        if out_diary_days[i] > 0:
            diary_pain[i] = out_diary_pain[i]  # else carried forward
        diary_days[i] = out_diary_days[i]
    _or_zero_row(v[_F_RPE], out[Out.rpe_mean])
    _or_zero_row(v[_F_ATTENDANCE], out[Out.attendance])
    _copy_row(v[_F_SESSIONS_ATTENDED], out[Out.sessions_attended])
    _copy_row(v[_F_FLARE_REPORTED], out[Out.flare_reported])
    _copy_row(v[_F_FUNCTION], out[Out.obs_function])
    capacity, test = v[_F_CAPACITY_TEST], out[Out.capacity_test]
    for i in range(n):
        if not np.isnan(test[i]):
            capacity[i] = test[i]  # else carried forward


@_jit
def _or_zero_row(dst: np.ndarray, src: np.ndarray) -> None:
    for i in range(dst.shape[0]):
        dst[i] = _or_zero(src[i])


_OBS_BLOCK = 16  # patients per block of the transposition into ``obs`` (a block's rows stay in L1)


@_jit
def _scale_observations(v: np.ndarray, obs: np.ndarray) -> None:
    """``obs[i, f] = clip(v[f, i] / scale_f, low_f, high_f)`` (float32), in blocks of patients."""
    n, n_feat = v.shape[1], _SCALES.shape[0]
    for c0 in range(0, n, _OBS_BLOCK):
        c1 = min(c0 + _OBS_BLOCK, n)
        for f in range(n_feat):
            row, scale, low, high = v[f], _SCALES[f], _LOW[f], _HIGH[f]
            for i in range(c0, c1):
                obs[i, f] = min(max(row[i] / scale, low), high)


@_jit
def _step_record(C: np.ndarray, week: np.ndarray, delivery: np.ndarray, sessions: np.ndarray, out: np.ndarray,
                 record: np.ndarray, done: np.ndarray) -> int:
    """Reward components (the dropout term 0), reward, cost, terminated and truncated into ``record``; ends
    the episodes (``done``) that terminated or reached ``C[5]`` weeks; returns the number of dropouts."""
    weights, weeks = C[:5], C[5]
    n = week.shape[0]
    pain, function, flares = out[Out.pain], out[Out.function], out[Out.flares]
    r_pain, r_function, r_flare = record[R_PAIN], record[R_FUNCTION], record[R_FLARE]
    for i in range(n):
        r_pain[i], r_function[i], r_flare[i] = outcome_components(weights, pain[i], function[i], flares[i] > 0)
    attended = out[Out.sessions_attended]
    r_supervision, r_remote, r_dropout = record[R_SUPERVISION], record[RREMOTE], record[R_DROPOUT]
    for i in range(n):
        deliv = delivery[i]
        supervised = attended[i] if deliv == SUPERVISED else 0.0
        r_supervision[i] = -weights[3] * supervised
        r_remote[i] = -weights[4] if deliv == REMOTE and sessions[i] > 0 else 0.0
        r_dropout[i] = 0.0
    reward = record[R_REWARD]
    for i in range(n):
        reward[i] = r_pain[i] + r_function[i] + r_flare[i] + r_supervision[i] + r_remote[i]
    cost, spm = record[R_COST], out[Out.session_pain_max]
    for i in range(n):
        cost[i] = 1.0 if flares[i] > 0 or (not np.isnan(spm[i]) and spm[i] > COST_PAIN_THRESHOLD) else 0.0
    new_dropout, r_terminated, r_truncated = out[Out.new_dropout], record[R_TERMINATED], record[R_TRUNCATED]
    dropouts = 0
    for i in range(n):
        terminated = new_dropout[i] != 0.0
        truncated = week[i] >= weeks and not terminated
        r_terminated[i] = 1.0 if terminated else 0.0
        r_truncated[i] = 1.0 if truncated else 0.0
        done[i] = 1.0 if terminated or truncated else 0.0
        dropouts += terminated
    return dropouts



@_jit
def _or_zero(x: float) -> float:
    return 0.0 if np.isnan(x) else x


@_jit
def untreated_tails(P: np.ndarray, S: np.ndarray, K: np.ndarray, keys: np.ndarray, remaining: np.ndarray,
                    weights: np.ndarray, pain: np.ndarray) -> np.ndarray:
    """Forward-simulate the ``m`` patients whose columns ``P``, ``S``, ``keys`` hold (the dropouts' columns, taken
    by the caller) without exercise from their current state (left untouched).

    Each patient meets its own noise (the same draws it would have met in the programme), so the tail is
    the outcome an intention-to-treat analysis assigns to a dropout.

    Args:
        remaining: weeks to simulate per patient (int64, ``(m,)``).
        weights: reward weights (as :meth:`RewardWeights.vector`).
        pain: ``(m, max(remaining))`` float array; row ``j`` receives patient ``j``'s weekly mean true pain
            (NRS) for its ``remaining[j]`` weeks.

    Returns:
        Per patient, the sum of the ``pain``, ``function`` and ``flare`` reward components over the tail
        (the ``dropout`` reward term).
    """
    m = remaining.shape[0]
    values = np.zeros(m)
    if m == 0:
        return values
    # all tails in one batch, longest first, so the patients still running are always a leading block
    order = np.argsort(-remaining, kind="mergesort")
    Pm, Sm, km = np.empty((P.shape[0], m)), np.empty((S.shape[0], m)), np.empty(m, dtype=keys.dtype)
    for r in range(P.shape[0]):
        for j in range(m):
            Pm[r, j] = P[r, order[j]]
    for r in range(S.shape[0]):
        for j in range(m):
            Sm[r, j] = S[r, order[j]]
    for j in range(m):
        km[j] = keys[order[j]]
    nothing = np.zeros(1)  # load 0, no sessions, home alone
    out = np.empty((W_RECORD - W_OUT, m))
    active = m
    for t in range(remaining[order[0]]):
        while remaining[order[active - 1]] <= t:
            active -= 1
        kernel.step_week(Pm[:, :active], Sm[:, :active], K, km[:active], nothing, nothing, nothing, out[:, :active])
        for j in range(active):
            jj = order[j]
            pain[jj, t] = out[Out.pain, j]
            c_pain, c_function, c_flare = outcome_components(weights, out[Out.pain, j], out[Out.function, j],
                                                             out[Out.flares, j] > 0)
            values[jj] += c_pain + c_function + c_flare
    return values
