"""The oracle: a planner that knows each patient's true parameters and state (``DESIGN.md`` section 5).

:class:`OraclePolicy` is the upper-bound reference of the in-silico trials. It is built with the env it
controls and, at every :meth:`~OraclePolicy.predict`, reads the truth from
``env.unwrapped.get_state()["batch"]`` (the :class:`~adaptrx.envs.episode_engine.EpisodeBatch` snapshot: cohort rows,
latent state, observation records, episode matrix) plus ``env.unwrapped.batch.config`` / ``.constants``.
It then chooses each patient's ``Progression-v0`` Box action by receding-horizon model-predictive control
on the batched simulator, with the env's own reward.

Algorithm (re-planned every week, for all patients of the env at once):

1. Candidates: open-loop plans ``(target load L, sessions s, delivery d)`` over a grid (default
   ``L`` in {0.2, 0.35, 0.5, 0.65, 0.8, 1.0, 1.2} baseline-capacity units x ``s`` in 1-5 sessions/week x
   ``d`` in {home, remote, supervised}) plus a "no sessions" plan (load held, 0 sessions, home): 106 plans.
   A plan moves the load from the last prescribed load toward ``L`` by at most ``+ramp`` (default +20 %)
   per week going up and at most the action's -50 % per week going down, then holds it; ``s`` and ``d``
   are kept every week.
2. Rollouts: every candidate is simulated from the patient's current true state (a copy made with
   :meth:`EpisodeBatch.take <adaptrx.envs.episode_engine.EpisodeBatch.take>`) to the end of its episode (or for
   ``horizon`` weeks) on ``replicates`` noise replicates: the candidates are an open-loop policy
   (:class:`OpenLoopPlans`, one plan per copy) followed by the project's one episode loop
   (:func:`adaptrx.envs.episodes.rollout`) on the env's own batched step, so the weekly reward is the env's
   reward, including the dropout term (the patient's untreated future). Rows are stepped in chunks of at most
   ``max_batch`` patient copies.
3. Value of a candidate: the mean over replicates of the summed reward until the rollout's episode ends
   (dropout or the last week); rewards after the end are masked. The best candidate's first-week action
   is returned (ties: the first candidate in grid order).

What the oracle knows: the true cohort parameters, the current latent state (capacity, irritation,
sensitization, fear, motivation, ...), the observation records and the episode position. What it does not
know: the future noise. The replicates' noise-stream keys are derived (:func:`planning_keys`) from the
planner's ``seed``, the patient's true key, the current week and the replicate index, never equal to the
patient's true key; they are shared by all candidates of a patient (common random numbers), so candidates
are compared on the same simulated futures.

Patients whose episode is done (:attr:`EpisodeBatch.done`) or whose simulator state says they dropped out are not
planned for; they get the hold action ``[0, -1, -1]`` (load held, 0 sessions, home alone). A paired-trial runner
that keeps stepping dropouts therefore sees no exercise prescribed to them.

Cost: ``n_active x n_candidates x replicates x h`` simulated patient-weeks per decision (``h``: the weeks
left in the episode, or ``horizon``), plus the untreated tails of rollout dropouts. With the defaults at
week 0 of a 26-week episode that is 106 x 4 x 26 = 11,024 patient-weeks per patient, and
424 x (1 + ... + 26) = 148,824 per patient-episode. Measured on one core (~0.9 us per planned patient-week,
90 % of it in the compiled step): ~9 ms per decision for one patient, ~0.65 s for 64 patients, ~10 s for
1000. Deterministic: the same env state and parameters give the same actions; ``predict`` never changes
the env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from adaptrx.common.validation import integer as check_int
from adaptrx.envs.actions import LOAD_MAX, LOAD_MIN
from adaptrx.envs.belief import grouped_systematic
from adaptrx.envs.episode_engine import EnvConfig, EpisodeBatch
from adaptrx.envs.episodes import rollout
from adaptrx.envs.features import FEATURE_INDEX, SCALES
from adaptrx.patient import HOME_ALONE, ModelConstants
from adaptrx.patient.noise import mix64
from adaptrx.protocols.base import DELIVERY, Policy, batch_obs, encode_prescription

#: Default grid of target loads (baseline-capacity units).
DEFAULT_LOADS: tuple[float, ...] = (0.2, 0.35, 0.5, 0.65, 0.8, 1.0, 1.2)
#: Default grid of sessions per week.
DEFAULT_SESSIONS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: Default grid of deliveries (names of :data:`adaptrx.protocols.base.DELIVERY`).
DEFAULT_DELIVERIES: tuple[str, ...] = ("home", "remote", "supervised")
#: Action of a patient the oracle does not plan for: load held, 0 sessions, home alone.
HOLD_ACTION = np.array([0.0, -1.0, -1.0], dtype=np.float32)
#: The action contract's largest weekly load decrease (a[0] = -1 halves the load).
_MAX_DECREASE = 0.5

_SALT = np.uint64(0x6F7261636C65)  # "oracle": planning keys never collide with the env's key derivation
_LOAD = FEATURE_INDEX["load"]


def ramp_load(last: np.ndarray, target: np.ndarray, ramp: float) -> np.ndarray:
    """Next week's load of open-loop plans: ``target`` (NaN: hold) approached from the ``last`` prescribed load by
    at most ``+ramp`` (fraction, 0-0.5) up and -50 % (the action's reach) down per week. Baseline-capacity units,
    arrays ``(n,)``."""
    goal = np.where(np.isnan(target), last, target)
    return np.minimum(np.maximum(goal, last * (1.0 - _MAX_DECREASE)), last * (1.0 + ramp))


class OpenLoopPlans(Policy):
    """Open-loop plans, one per patient, as a ``Progression-v0`` policy: every week the load moves from the last
    prescribed load toward the plan's target (:func:`ramp_load`), and the plan's sessions and delivery are kept.

    The oracle's candidate plans (one per patient copy) and the plans the clinic forecasts are followed by
    :func:`adaptrx.envs.episodes.rollout` through this policy.

    Args:
        target: target loads (baseline-capacity units, 0.05-1.5; NaN holds the load), a number or ``(n,)``.
        sessions: sessions/week (0-5), a number or ``(n,)``.
        delivery: delivery codes (0 home alone, 1 remote, 2 supervised), a number or ``(n,)``.
        ramp: largest weekly load increase (fraction, 0 < ramp <= 0.5).
        batch: the batch whose patients follow the plans: their exact last prescribed load is read from it
            (planners). Without it, the last load is the observation's ``load`` record (at least 0.05).
    """

    def __init__(self, target: float | np.ndarray, sessions: float | np.ndarray, delivery: int | np.ndarray,
                 ramp: float = 0.2, batch: EpisodeBatch | None = None) -> None:
        self.target = np.asarray(target, dtype=np.float64)
        self.sessions, self.delivery = np.asarray(sessions), np.asarray(delivery)
        self.ramp, self.batch = float(ramp), batch

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """This week's Box actions ``(n, 3)`` float32 (``(3,)`` for one observation); ``state`` unchanged."""
        if self.batch is not None:  # the batch's own record (exact), not the float32 observation
            last, single = self.batch.last_load, False
        else:
            x, single = batch_obs(obs)
            last = np.maximum(x[:, _LOAD] * SCALES[_LOAD], LOAD_MIN)
        n = len(last)
        load = ramp_load(last, np.broadcast_to(self.target, (n,)), self.ramp)
        actions = encode_prescription(load, np.broadcast_to(self.sessions, (n,)),
                                      np.broadcast_to(self.delivery, (n,)), last)
        return (actions[0] if single else actions), state


def planning_keys(seed: int, true_keys: np.ndarray, week: np.ndarray, replicates: int) -> np.ndarray:
    """Noise-stream keys of the oracle's rollouts, ``uint64`` ``(n, replicates)``.

    A hash of ``(seed, the patient's true key, the current week, replicate)``: deterministic, different
    every week (re-planning meets fresh simulated futures) and never equal to the true key (the oracle
    knows the patient, not the noise it will meet).

    Args:
        seed: the planner's seed (0 <= seed < 2**64).
        true_keys: the patients' noise-stream keys, ``(n,)``.
        week: weeks done in each patient's episode, ``(n,)``.
        replicates: noise replicates per patient (>= 1).
    """
    true_keys = np.asarray(true_keys, dtype=np.uint64).reshape(-1, 1)
    week = np.asarray(week, dtype=np.int64).astype(np.uint64).reshape(-1, 1)
    reps = np.arange(replicates, dtype=np.uint64).reshape(1, -1)
    h = mix64(np.full((1, 1), np.uint64(seed)) ^ _SALT)
    h = mix64(h ^ true_keys)
    h = mix64(h ^ week)
    keys = mix64(h ^ reps)
    return np.where(keys == true_keys, keys ^ np.uint64(1), keys)


def _check_grid(name: str, values: Any) -> list[Any]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray) or len(values) == 0:
        raise ValueError(f"{name}: must be a non-empty sequence, got {values!r}")
    values = list(values)
    if len(set(values)) != len(values):
        raise ValueError(f"{name}: must not repeat values, got {values!r}")
    return values


class OraclePolicy(Policy):
    """Receding-horizon MPC on the true patients of ``env`` (the module docstring has the algorithm).

    Args:
        env: the env it controls: a ``ProgressionEnv`` (possibly gym-wrapped), a ``PatientVecEnv`` (possibly
            VecEnv-wrapped), or any object whose ``.unwrapped`` has ``.batch`` (an ``EpisodeBatch``) and
            ``get_state()`` returning ``{"batch": EpisodeBatch snapshot, ...}``. Box actions only.
        loads: target loads of the candidate plans (baseline-capacity units, each in [0.05, 1.5]).
        sessions: sessions/week of the candidate plans (integers 1-5).
        deliveries: deliveries of the candidate plans (``home``, ``remote``, ``supervised``).
        include_rest: add the "no sessions" plan (load held, 0 sessions, home alone).
        ramp: largest planned weekly load increase (fraction, 0 < ramp <= 0.5; 0.2 = +20 %/week).
        replicates: noise replicates per candidate (1-1000).
        horizon: planning horizon in weeks (1-104), or ``None`` for the rest of the episode. A dropout
            inside a finite horizon counts its untreated weeks up to the horizon only.
        seed: planner seed of the replicates' noise keys (0 <= seed < 2**64).
        max_batch: most patient copies simulated at once (bounds memory: ~1.5 kB per copy).
        clairvoyant: a diagnostic, not a reference: plan on the patient's own future noise (then one
            replicate suffices). It bounds what any planner could gain from knowing the future, which tells
            a flat model from a weak planner.

    Attributes:
        n_candidates: number of candidate plans.
        last_values: after :meth:`predict`, the mean planned value of every candidate, ``(n_envs,
            n_candidates)`` (NaN for patients not planned for).
    """

    def __init__(
        self,
        env: Any,
        *,
        loads: Sequence[float] = DEFAULT_LOADS,
        sessions: Sequence[int] = DEFAULT_SESSIONS,
        deliveries: Sequence[str] = DEFAULT_DELIVERIES,
        include_rest: bool = True,
        ramp: float = 0.2,
        replicates: int = 4,
        horizon: int | None = None,
        seed: int = 0,
        max_batch: int = 65536,
        clairvoyant: bool = False,
    ) -> None:
        self._env = env
        self._unwrapped = self._check_env(env)
        loads = _check_grid("loads", loads)
        for value in loads:
            if (isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)
                    or not LOAD_MIN <= float(value) <= LOAD_MAX):
                raise ValueError(f"loads: each must be a number in [{LOAD_MIN}, {LOAD_MAX}], got {value!r}")
        sessions = [check_int("sessions", s, 1, 5) for s in _check_grid("sessions", sessions)]
        deliveries = _check_grid("deliveries", deliveries)
        for value in deliveries:
            if value not in DELIVERY:
                raise ValueError(f"deliveries: each must be one of {sorted(DELIVERY)}, got {value!r}")
        if not isinstance(include_rest, bool | np.bool_):
            raise ValueError(f"include_rest: must be a bool, got {include_rest!r}")
        if (isinstance(ramp, bool) or not isinstance(ramp, int | float | np.integer | np.floating)
                or not 0.0 < float(ramp) <= _MAX_DECREASE):
            raise ValueError(f"ramp: must be a number in (0, 0.5], got {ramp!r}")
        self.loads = tuple(float(v) for v in loads)
        self.sessions = tuple(sessions)
        self.deliveries = tuple(deliveries)
        self.include_rest = bool(include_rest)
        self.ramp = float(ramp)
        self.replicates = check_int("replicates", replicates, 1, 1000)
        self.horizon = None if horizon is None else check_int("horizon", horizon, 1, 104)
        self.seed = check_int("seed", seed, 0, 2**64 - 1)
        self.max_batch = check_int("max_batch", max_batch, 1, 2**31 - 1)
        if not isinstance(clairvoyant, bool | np.bool_):
            raise ValueError(f"clairvoyant: must be a bool, got {clairvoyant!r}")
        self.clairvoyant = bool(clairvoyant)
        # candidate grid: target load (NaN: hold), sessions, delivery code, in load-major order
        grid = [(L, s, DELIVERY[d]) for L in self.loads for s in self.sessions for d in self.deliveries]
        if self.include_rest:
            grid.append((np.nan, 0, HOME_ALONE))
        self._target = np.array([g[0] for g in grid], dtype=np.float64)
        self._n_sessions = np.array([g[1] for g in grid], dtype=np.float64)
        self._delivery = np.array([g[2] for g in grid], dtype=np.int64)
        self.n_candidates = len(grid)
        self.last_values: np.ndarray | None = None

    @staticmethod
    def _check_env(env: Any) -> Any:
        """The unwrapped env, after checking that it offers what the oracle reads and has Box actions."""
        unwrapped = getattr(env, "unwrapped", env)
        batch = getattr(unwrapped, "batch", None)
        if not isinstance(batch, EpisodeBatch) or not callable(getattr(unwrapped, "get_state", None)):
            raise ValueError("env: the oracle needs an env whose .unwrapped has .batch (an EpisodeBatch) and "
                             f"get_state(); got {type(env).__name__}")
        for owner in (env, unwrapped):
            space = getattr(owner, "action_space", None)
            if isinstance(space, spaces.Discrete) or getattr(owner, "discrete", False) is True:
                raise ValueError("env: the oracle plans Progression-v0 Box actions; this env has a Discrete "
                                 "action space")
            if space is not None and not (isinstance(space, spaces.Box) and space.shape == (3,)):
                raise ValueError(f"env: expected the Progression-v0 Box(-1, 1, (3,)) action space, got {space}")
        return unwrapped

    def params(self) -> dict[str, Any]:
        """The planner's parameters (what a config file sets; ``env`` excluded)."""
        return {"loads": list(self.loads), "sessions": list(self.sessions), "deliveries": list(self.deliveries),
                "include_rest": self.include_rest, "ramp": self.ramp, "replicates": self.replicates,
                "horizon": self.horizon, "seed": self.seed, "max_batch": self.max_batch,
                "clairvoyant": self.clairvoyant}

    # ------------------------------------------------------------------ policy
    def predict(
        self,
        obs: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """Plan this week's actions for every patient of the env (``obs`` only fixes the batch shape: the
        oracle reads the true state from the env). Returns ``(n_envs, 3)`` float32 actions (or ``(3,)`` for
        one observation) and ``state`` unchanged."""
        _, single = batch_obs(obs)
        n_obs = 1 if single else len(np.asarray(obs))
        snapshot = self._unwrapped.get_state()["batch"]
        n = len(snapshot["patients"])
        if n_obs != n:
            raise ValueError(f"obs: the env has {n} patient(s), got {n_obs} observation(s) of shape {np.shape(obs)}")
        batch = self._unwrapped.batch
        actions = self.plan(snapshot, batch.config, batch.constants)
        return (actions[0] if single else actions), state

    def plan(self, snapshot: dict[str, Any], config: EnvConfig, constants: ModelConstants | None = None) -> np.ndarray:
        """Actions ``(n, 3)`` float32 for the patients of an :meth:`EpisodeBatch.get_state` snapshot taken from
        a batch with ``config`` and ``constants`` (sets :attr:`last_values`; the snapshot is not modified)."""
        base = EpisodeBatch.from_state(snapshot, config, constants)
        n_rep = self.replicates
        patients, steps, actions = self._active(base, config)
        if not len(patients):
            return actions
        if self.clairvoyant:  # diagnostic: plan on the very noise the patient will meet
            keys = np.repeat(base.keys[patients, None], n_rep, axis=1)
        else:
            keys = planning_keys(self.seed, base.keys[patients], base.week[patients], n_rep)  # (n_active, n_rep)
        sources = np.repeat(patients[:, None], n_rep, axis=1)
        return self._choose(base, sources, keys, patients, steps, base.last_load[patients], actions)

    def _active(self, batch: EpisodeBatch, config: EnvConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The patients of ``batch`` to plan for (episode running, not dropped out, weeks left of
        ``config.weeks``), longest horizon first (no chunk steps far past its rows' ends), their planning
        horizons ``(n,)`` and the hold actions ``(n, 3)``."""
        n = batch.n
        remaining = np.maximum(config.weeks - batch.week, 0)
        active = ~batch.done & (batch.sim.state.dropped_out == 0.0) & (remaining > 0)
        self.last_values = np.full((n, self.n_candidates), np.nan)
        steps = remaining if self.horizon is None else np.minimum(remaining, self.horizon)
        patients = np.flatnonzero(active)
        patients = patients[np.argsort(-steps[patients], kind="stable")]
        return patients, steps, np.tile(HOLD_ACTION, (n, 1))

    def _choose(self, base: EpisodeBatch, sources: np.ndarray, keys: np.ndarray, patients: np.ndarray,
                steps: np.ndarray, last: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Evaluate every candidate plan for each planned patient ``patients[j]`` as the mean over its rollouts,
        one from each row ``sources[j, r]`` of ``base`` with noise key ``keys[j, r]``, and write the best
        candidate's first-week action into ``actions`` (``last``: the patients' last loads)."""
        k, n_rep = self.n_candidates, sources.shape[1]
        per_patient = k * n_rep
        total = len(patients) * per_patient
        values = np.empty(total)
        for start in range(0, total, self.max_batch):  # rows in (patient, candidate, replicate) order
            rows = np.arange(start, min(start + self.max_batch, total))
            j, cand, rep = rows // per_patient, (rows // n_rep) % k, rows % n_rep
            values[rows] = self._value(base.take(sources[j, rep], keys[j, rep]), cand, steps[patients[j]])
        mean = values.reshape(len(patients), k, n_rep).mean(axis=2)
        assert self.last_values is not None
        self.last_values[patients] = mean
        best = np.argmax(mean, axis=1)  # first best candidate on ties
        load = ramp_load(last, self._target[best], self.ramp)
        actions[patients] = encode_prescription(load, self._n_sessions[best], self._delivery[best], last)
        return actions

    # --------------------------------------------------------------- rollouts
    def _value(self, b: EpisodeBatch, cand: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Summed env reward of candidate plans ``cand`` on the patient copies of ``b`` over ``steps`` weeks.

        Each row counts until its episode ends: at a dropout the env's reward already holds the untreated
        future (full horizon), or, with a finite ``horizon``, the dropped-out copy is followed without sessions
        (the same forward simulation, intention to treat) to its horizon, instead of the dropout term. Rows
        past their horizon are stepped on while others go on, and do not count.
        """
        plans = OpenLoopPlans(self._target[cand], self._n_sessions[cand], self._delivery[cand], self.ramp, batch=b)
        if self.horizon is None:
            return rollout(b, plans, steps, itt=False).returns
        r = rollout(b, plans, steps, record=("reward", "dropout_term", "terminated"))
        weight, value = b.config.reward.dropout, np.zeros(b.n)
        for t in range(r.weeks):  # the untreated tail was stepped; the dropout's own weight still counts
            reward = r["reward"][t] - r["dropout_term"][t] - weight * r["terminated"][t]
            value += np.where(t < steps, reward, 0.0)
        return value


class BeliefPlanner(OraclePolicy):
    """The oracle's receding-horizon MPC over posterior particles instead of the true patient (non-clairvoyant,
    no training): ``DESIGN.md`` section 5's ``belief_planner``.

    Each week, for each patient, ``replicates`` particles are drawn (systematic resampling by weight) from the
    env's belief filter (:class:`adaptrx.envs.belief.BeliefFilter`, ``belief=True``): virtual patients
    consistent with the patient's intake and records, in their current simulated state. Every candidate plan
    is rolled out once from each particle with fresh noise (common to all candidates), and the plan with the
    best mean env return is chosen, as the oracle does. What it reads: the filter's particles and weights, the
    episode position and last prescription, and whether the patient is still coming; never the true
    parameters or latent state.

    Args:
        env: an env with beliefs (``belief=True``: ``env.unwrapped.batch.belief`` is a filter).
        replicates: posterior particles per patient and week (1-1000); the other arguments as for
            :class:`OraclePolicy` (``clairvoyant`` is not available).
    """

    def __init__(self, env: Any, **kwargs: Any) -> None:
        if kwargs.get("clairvoyant"):
            raise ValueError("clairvoyant: the belief planner plans on particles; use the oracle's diagnostic")
        super().__init__(env, **kwargs)
        if getattr(self._unwrapped.batch, "belief", None) is None:
            raise ValueError("env: the belief planner needs an env with belief features (belief=True)")

    def plan(self, snapshot: dict[str, Any], config: EnvConfig, constants: ModelConstants | None = None) -> np.ndarray:
        batch = self._unwrapped.batch
        f = batch.belief
        patients, steps, actions = self._active(batch, config)
        if not len(patients):
            return actions
        n_rep, P = self.replicates, f.P
        keys = planning_keys(self.seed, batch.keys[patients], batch.week[patients], n_rep + 1)  # last column: draws
        u = (keys[:, -1] >> np.uint64(11)).astype(np.float64) * 2.0**-53
        pick = grouped_systematic(f.weights(patients), u, n_rep)  # (n_active, n_rep)
        particle_rows = (patients[:, None] * P + pick).ravel()
        copies, copy_keys = np.repeat(patients, n_rep), keys[:, :n_rep].ravel()
        base = batch.take(copies, copy_keys, sim=f.sim.take(particle_rows, copy_keys))  # particles in their place
        sources = np.arange(len(copies)).reshape(len(patients), n_rep)
        return self._choose(base, sources, base.keys[sources], patients, steps, batch.last_load[patients], actions)


class _Posterior:
    """An env-like view of a batch of posterior particles of one patient (what :class:`OraclePolicy` checks)."""

    def __init__(self, batch: EpisodeBatch) -> None:
        self.batch = batch
        self.unwrapped = self
        self.action_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)

    def get_state(self) -> dict[str, Any]:
        return {"batch": self.batch.get_state()}


def plan_for_posterior(particles: EpisodeBatch, **planner: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """The belief planner for one patient whose posterior is given as particles: every row of ``particles`` is
    an equally weighted posterior draw of the same patient in its current state (episode columns included),
    with its own noise key. Every candidate plan is rolled out once from each particle (common noise across
    candidates) and the best mean return wins, as :class:`BeliefPlanner` does with the env's filter.

    Args:
        particles: the posterior draws (e.g. the clinic's fit, resampled), their episodes running.
        **planner: :class:`OraclePolicy` arguments (``loads``, ``sessions``, ``deliveries``, ``ramp``,
            ``horizon``, ...; ``replicates`` is the number of rows).

    Returns:
        ``(action, plan)``: the ``Progression-v0`` Box action ``(3,)`` and the chosen open-loop plan
        ``{"target_load", "sessions", "delivery", "value"}`` (target ``None``: hold the load; value: its mean
        return over the particles).
    """
    policy = OraclePolicy(_Posterior(particles), replicates=1, **planner)
    m = particles.n
    remaining = int(max(particles.config.weeks - particles.week[0], 0))
    actions = np.tile(HOLD_ACTION, (1, 1))
    policy.last_values = np.full((1, policy.n_candidates), np.nan)
    if remaining == 0 or particles.done[0]:
        return actions[0], {"target_load": None, "sessions": 0, "delivery": HOME_ALONE, "value": float("nan")}
    steps = np.array([remaining if policy.horizon is None else min(remaining, policy.horizon)])
    sources = np.arange(m)[None, :]
    policy._choose(particles, sources, particles.keys[sources], np.array([0]), steps, particles.last_load[:1], actions)
    best = int(np.argmax(policy.last_values[0]))
    target = policy._target[best]
    return actions[0], {"target_load": None if np.isnan(target) else float(target),
                        "sessions": int(policy._n_sessions[best]), "delivery": int(policy._delivery[best]),
                        "value": float(policy.last_values[0, best])}
