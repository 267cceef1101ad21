"""Paired virtual trials: given patients, one episode each, under any policy, intention-to-treat.

:class:`CohortEpisodes` holds a cohort (DataFrame rows of :func:`adaptrx.patient.make_cohort`) and a noise
seed. :meth:`CohortEpisodes.run` plays one episode per patient under a policy (anything with SB3's
``predict``: a protocol, a trained agent, the oracle), all patients stepped together by the compiled
engine of the envs. Every run starts each patient from its intake with the noise stream
``stream_keys([patient_id], seed)``, so different policies meet the same patients with the same random
draws (common random numbers) and their outcomes can be compared patient by patient.

Intention-to-treat: after a patient drops out, the episode has ended for the policy (its return stops
there and includes the env's dropout term), but the patient keeps being simulated without exercise (no
sessions, home) with its own noise, which is exactly the forward simulation behind the env's
``info["pain_after_dropout"]`` and dropout reward; outcomes at weeks 12 and 26 are read from that
trajectory.

The object also looks like an env to the oracle (``protocols.get("oracle", env=episodes)``): it has
``unwrapped``, ``batch`` and ``get_state()``.

:func:`rollout` is the one episode loop of the project (observe, act, shield, decode, step, intention-to-treat
continuation): the paired trials (:meth:`CohortEpisodes.run`), the clinic's forecast
(:mod:`adaptrx.clinic.recommend`), the oracle's and belief planner's candidate plans
(:mod:`adaptrx.protocols.oracle`) and the clinic's synthetic logs (:mod:`adaptrx.clinic.synthetic`) all step
through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from adaptrx.envs.actions import decode_continuous, decode_discrete
from adaptrx.envs.episode_engine import EpisodeBatch, StepBatch, env_config
from adaptrx.envs.reward import COMPONENTS
from adaptrx.envs.shield import Shield
from adaptrx.patient import ModelConstants
from adaptrx.patient.kernel import Out

#: Weeks at which the tidy table reports pain (when the episode is that long).
REPORT_WEEKS: tuple[int, ...] = (12, 26)
#: What :func:`rollout` can record each week: the prescription simulated (``load`` in baseline-capacity units,
#: ``sessions`` 0-5, ``delivery`` 0 home alone / 1 remote / 2 supervised; after the shield, decoding and the
#: intention-to-treat masking), the step record (``reward``: the env reward; ``dropout_term``: its dropout
#: component, the untreated future of a patient who dropped out that week; ``cost``: safety cost 0/1;
#: ``terminated``: a dropout that week) and every row of the simulator's week (names of
#: :class:`~adaptrx.patient.kernel.Out`: true ``pain`` (NRS), ``function`` (0-100), ``capacity``, ``flares``,
#: ``sessions_prescribed``, ``sessions_attended``, the observation records ...).
RECORDS: tuple[str, ...] = ("load", "sessions", "delivery", "reward", "dropout_term", "cost", "terminated",
                            *Out.__members__)
_DROPOUT_COMPONENT = COMPONENTS.index("dropout")
# what CohortEpisodes.run keeps of a rollout
_OUTCOME_RECORDS = ("pain", "function", "capacity", "flares", "load", "sessions_prescribed", "sessions_attended",
                    "delivery")


@dataclass
class Transitions:
    """The policy's own steps of a run, arrays ``(weeks, n, ...)``: what an offline-RL dataset holds.

    Only the weeks inside the episode (``EpisodeOutcomes.in_programme``) are transitions; the ITT
    continuation after a dropout is not.
    """

    obs: np.ndarray  # (weeks, n, n_features) float32, the observation the policy acted on
    actions: np.ndarray  # (weeks, n, 3) Box action after the shield, or (weeks, n, 1) move index
    rewards: np.ndarray  # (weeks, n) env reward
    next_obs: np.ndarray  # (weeks, n, n_features) float32
    terminated: np.ndarray  # (weeks, n) bool: dropout that week
    truncated: np.ndarray  # (weeks, n) bool: the last week of the episode without dropout


@dataclass
class EpisodeOutcomes:
    """Weekly true outcomes of one policy on a cohort, arrays ``(weeks, n)`` unless noted (ITT: after a
    dropout, the no-exercise continuation)."""

    policy: str
    patient_id: np.ndarray  # (n,) str
    seed: int
    split: str
    baseline_pain: np.ndarray  # (n,) true pain on the intake day (NRS)
    baseline_function: np.ndarray  # (n,) true function at intake (0-100)
    pain: np.ndarray  # weekly mean true pain (NRS)
    function: np.ndarray  # weekly true function (0-100)
    capacity: np.ndarray  # x baseline capacity
    flares: np.ndarray  # flares that week (whole numbers)
    load: np.ndarray  # prescribed load (baseline-capacity units; 0 after dropout)
    sessions_prescribed: np.ndarray
    sessions_attended: np.ndarray
    supervised: np.ndarray  # 0/1: supervised delivery that week
    in_programme: np.ndarray  # bool: the week was part of the episode (before or at dropout)
    dropout_week: np.ndarray  # (n,) week of dropout (1-based), 0 if none
    returns: np.ndarray  # (n,) undiscounted episode return of the env reward
    cost: np.ndarray  # (n,) safety-cost weeks within the episode
    shield_interventions: np.ndarray  # (n,) weeks a shield rule bound (0 without a shield)
    transitions: Transitions | None = None  # recorded with ``run(..., record=True)``

    @property
    def n(self) -> int:
        return len(self.patient_id)

    @classmethod
    def concat(cls, parts: list[EpisodeOutcomes]) -> EpisodeOutcomes:
        """The outcomes of consecutive patient chunks of one policy run (same policy label, seed, split and
        weeks) as one run, patients in the order of ``parts``."""
        if not parts:
            raise ValueError("parts: need at least one EpisodeOutcomes")
        first = parts[0]
        for p in parts[1:]:
            if (p.policy, p.seed, p.split, p.weeks) != (first.policy, first.seed, first.split, first.weeks):
                raise ValueError("parts: chunks of different runs (policy, seed, split or weeks differ)")

        def join(arrays: list[np.ndarray]) -> np.ndarray:  # patients are axis 0 of (n,), axis 1 of (weeks, n, ...)
            return np.concatenate(arrays, axis=0 if arrays[0].ndim == 1 else 1)

        values: dict[str, Any] = {"policy": first.policy, "seed": first.seed, "split": first.split}
        for f in fields(cls):
            if f.name in values or f.name == "transitions":
                continue
            values[f.name] = join([getattr(p, f.name) for p in parts])
        if all(p.transitions is not None for p in parts):
            values["transitions"] = Transitions(**{f.name: join([getattr(p.transitions, f.name) for p in parts])
                                                   for f in fields(Transitions)})
        elif any(p.transitions is not None for p in parts):
            raise ValueError("parts: some chunks recorded transitions and some did not")
        return cls(**values)

    @property
    def weeks(self) -> int:
        return self.pain.shape[0]

    def pain_at(self, week: int) -> np.ndarray:
        """Mean true pain of ``week`` (1-based), per patient."""
        return self.pain[week - 1]

    def responders(self, week: int) -> np.ndarray:
        """Farrar 2001 responders at ``week``: >= 2 NRS or >= 30 % lower pain than at baseline."""
        change = self.baseline_pain - self.pain_at(week)
        return (change >= 2.0) | (change >= 0.3 * self.baseline_pain)

    def to_frame(self) -> pd.DataFrame:
        """The tidy per-patient table of ``DESIGN.md`` section 7 (one row per patient)."""
        w_end = self.weeks
        frame = {
            "policy": self.policy,
            "split": self.split,
            "patient_id": self.patient_id,
            "seed": self.seed,
            "pain_baseline": self.baseline_pain,
        }
        for w in REPORT_WEEKS:
            frame[f"pain_w{w}"] = self.pain_at(w) if w <= w_end else np.nan
        frame.update({
            "pain_mean": self.pain.mean(axis=0),
            "responder": self.responders(min(w_end, REPORT_WEEKS[-1])),
            "flares": self.flares.sum(axis=0).astype(np.int64),
            "dropped_out": self.dropout_week > 0,
            "dropout_week": self.dropout_week,
            "sessions_attended": self.sessions_attended.sum(axis=0).astype(np.int64),
            "supervised_sessions": (self.sessions_attended * self.supervised).sum(axis=0).astype(np.int64),
            "capacity_change": self.capacity[-1] - 1.0,
            "function_change": self.function[-1] - self.baseline_function,
            "return": self.returns,
            "cost": self.cost,
            "shield_interventions": self.shield_interventions,
        })
        return pd.DataFrame(frame)

    def to_weekly_frame(self) -> pd.DataFrame:
        """Per-week trajectories, one row per (patient, week), ``week`` 1-based (ITT continuation included,
        flagged by ``in_programme``)."""
        weeks, n = self.weeks, self.n
        return pd.DataFrame({
            "policy": self.policy,
            "split": self.split,
            "patient_id": np.tile(self.patient_id, weeks),
            "seed": self.seed,
            "week": np.repeat(np.arange(1, weeks + 1), n),
            "pain": self.pain.ravel(),
            "function": self.function.ravel(),
            "capacity": self.capacity.ravel(),
            "flares": self.flares.ravel().astype(np.int64),
            "load": self.load.ravel(),
            "sessions_prescribed": self.sessions_prescribed.ravel().astype(np.int64),
            "sessions_attended": self.sessions_attended.ravel().astype(np.int64),
            "supervised": self.supervised.ravel().astype(bool),
            "in_programme": self.in_programme.ravel(),
        })


@dataclass
class Rollout:
    """What :func:`rollout` returns: per-week arrays ``(weeks, n)`` (``weeks``: the weeks stepped) and per-patient
    totals ``(n,)``."""

    records: dict[str, np.ndarray]  # name (RECORDS) -> (weeks, n) weekly values of what was asked for
    in_programme: np.ndarray  # (weeks, n) bool: the week counts (within the patient's horizon, not after its dropout)
    dropout_week: np.ndarray  # (n,) int64: week of a dropout in the programme (1-based), 0 if none
    returns: np.ndarray  # (n,) env reward summed over the weeks in the programme (the dropout's term included)
    cost: np.ndarray  # (n,) safety-cost weeks in the programme
    shield_interventions: np.ndarray  # (n,) int64: weeks in the programme a shield rule bound (0 without one)
    transitions: Transitions | None = None  # with ``rollout(..., transitions=True)``

    @property
    def weeks(self) -> int:
        """Weeks stepped (fewer than asked when ``itt=False`` and every patient ended early)."""
        return self.in_programme.shape[0]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.records[name]


def _recorder(name: str) -> Callable[[StepBatch, tuple[np.ndarray, ...]], np.ndarray]:
    """How to read record ``name`` of a week from the step and the simulated prescription."""
    if name in ("load", "sessions", "delivery"):
        k = ("load", "sessions", "delivery").index(name)
        return lambda step, rx: rx[k]
    if name == "dropout_term":
        return lambda step, rx: step.components[_DROPOUT_COMPONENT]
    if name in ("reward", "cost", "terminated"):
        return lambda step, rx: getattr(step, name)
    row = int(Out[name])
    return lambda step, rx: step.out[row]


def rollout(batch: EpisodeBatch, policy: Any, weeks: int | np.ndarray, *, obs: np.ndarray | None = None,
            shield: Shield | None = None, itt: bool = True, discrete: bool = False, record: Iterable[str] = (),
            transitions: bool = False, fresh_state: bool = False,
            progress: Callable[[int], None] | None = None) -> Rollout:
    """Follow ``policy`` week by week on the running episodes of ``batch`` (stepped in place), intention-to-treat.

    Each week: the policy's ``predict(obs, state, episode_start, deterministic=True)`` (its ``reset()`` is called
    first if it has one), the shield's ``constrain(obs, actions, discrete)``, decoding of the action against the
    patient's last prescription (the discrete env's session plan kept per patient), then one batched step. A
    patient who dropped out is simulated on without exercise (load 0, no sessions, home alone), with its own
    noise, while the others go on; ended episodes (a dropout, or a patient past its episode's last week) are
    reopened before every step (:meth:`EpisodeBatch.reopen`), so a rollout may run past ``config.weeks``.

    Args:
        batch: the patients, their episodes running (after a reset, or copies mid-episode).
        policy: anything with SB3's ``predict`` acting in ``Progression-v0``'s Box action space (``(n, 3)``), or
            with ``ProgressionDiscrete-v0`` move indices ``(n,)`` when ``discrete``.
        weeks: weeks to follow (>= 0): one number, or each patient's horizon ``(n,)`` (a patient's weeks past its
            horizon do not count; the batch is stepped until the longest).
        obs: the observations the first week's actions are chosen on (default: :meth:`EpisodeBatch.observe`).
        shield: optional safety shield; its interventions in the programme are counted.
        itt: keep simulating dropouts to the horizon (intention to treat). ``False``: a patient's rollout ends at
            its dropout, and the loop stops once every patient has ended (dropped out or reached its horizon).
        discrete: the policy acts with move indices.
        record: names of :data:`RECORDS` to keep week by week (:attr:`Rollout.records`).
        transitions: also keep every week's observation, action (after the shield), reward and next observation
            (:class:`Transitions`; the weeks in the programme are the policy's own steps).
        fresh_state: ask the policy afresh every week (``predict(obs, deterministic=True)``: no recurrent state
            carried, as the clinic asks a policy each week) instead of carrying its state through the episode.
        progress: called with 1 after each simulated week (e.g. a tqdm ``update``).
    """
    n = batch.n
    horizon = np.broadcast_to(np.asarray(weeks, dtype=np.int64), (n,))
    if horizon.min(initial=0) < 0:
        raise ValueError(f"weeks: must be >= 0, got {weeks!r}")
    names = tuple(dict.fromkeys(record))
    unknown = sorted(set(names) - set(RECORDS))
    if unknown:
        raise ValueError(f"record: unknown name(s) {unknown}; known: {list(RECORDS)}")
    readers = [(name, _recorder(name)) for name in names]
    n_weeks = int(horizon.max(initial=0))
    records = {name: np.zeros((n_weeks, n), dtype=bool if name == "terminated" else np.float64) for name in names}
    in_programme = np.zeros((n_weeks, n), dtype=bool)
    active = np.ones(n, dtype=bool)  # not dropped out
    dropout_week = np.zeros(n, dtype=np.int64)
    returns, cost, interventions = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
    steps: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated")}
    if callable(getattr(policy, "reset", None)):
        policy.reset()
    obs = batch.observe() if obs is None else obs
    state: Any = None
    episode_start = np.ones(n, dtype=bool)
    stepped = n_weeks
    for t in range(n_weeks):
        if fresh_state:
            actions, _ = policy.predict(obs, deterministic=True)
        else:
            actions, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=True)
            episode_start[:] = False
        counted = active & (t < horizon)
        if shield is not None:
            actions, rules = shield.constrain(obs, actions, discrete)
            interventions += counted & np.array([len(r) > 0 for r in rules])
        if transitions:
            steps["obs"].append(np.asarray(obs, dtype=np.float32).copy())
            steps["actions"].append(np.asarray(actions, dtype=np.float32).reshape(n, -1).copy())
        if discrete:
            load, sessions, delivery, plan = decode_discrete(actions, batch.last_load, batch.planned_sessions,
                                                             batch.last_delivery)
            batch.set_planned_sessions(plan, where=active)
        else:
            load, sessions, delivery = decode_continuous(np.asarray(actions, dtype=np.float32).reshape(n, 3),
                                                         batch.last_load)
        gone = ~active  # dropouts: simulated on without exercise (ITT)
        load[gone], sessions[gone], delivery[gone] = 0.0, 0.0, 0.0
        batch.reopen()
        step = batch.step(load, sessions, delivery)
        rx = (load, sessions, delivery)
        for name, read in readers:
            records[name][t] = read(step, rx)
        in_programme[t] = counted
        returns += np.where(counted, step.reward, 0.0)
        cost += np.where(counted, step.cost, 0.0)
        new = counted & step.terminated
        dropout_week[new] = t + 1
        if transitions:
            steps["rewards"].append(np.asarray(step.reward, dtype=np.float64).copy())
            steps["next_obs"].append(np.asarray(step.obs, dtype=np.float32).copy())
            steps["terminated"].append(new.copy())
        active &= ~step.terminated
        obs = step.obs
        if progress is not None:
            progress(1)
        if not itt and not (active & (t + 1 < horizon)).any():
            stepped = t + 1
            break
    kept = None
    if transitions and stepped:
        terminated = np.stack(steps["terminated"])
        truncated = np.zeros_like(terminated)
        truncated[-1] = in_programme[stepped - 1] & ~terminated[-1]
        kept = Transitions(obs=np.stack(steps["obs"]), actions=np.stack(steps["actions"]),
                           rewards=np.stack(steps["rewards"]), next_obs=np.stack(steps["next_obs"]),
                           terminated=terminated, truncated=truncated)
    return Rollout(records={name: v[:stepped] for name, v in records.items()}, in_programme=in_programme[:stepped],
                   dropout_week=dropout_week, returns=returns, cost=cost, shield_interventions=interventions,
                   transitions=kept)


class CohortEpisodes:
    """A paired-trial episode batch over given patients.

    Args:
        cohort: patients, one row each (:func:`adaptrx.patient.make_cohort` columns).
        seed: noise seed shared by every policy run on this object (common random numbers).
        constants: model constants (default: the calibrated ones).
        **env_kwargs: env settings (``weeks``, ``condition``, ``split``, ``modality``, ``reward``,
            ``initial_load``), as for ``gym.make("AdaptRx/Progression-v0", ...)``. ``condition`` and
            ``split`` label the results (the patients come from ``cohort``).
    """

    def __init__(self, cohort: pd.DataFrame, seed: int = 0, constants: ModelConstants | None = None,
                 **env_kwargs: Any) -> None:
        if not isinstance(cohort, pd.DataFrame) or len(cohort) == 0:
            raise ValueError("cohort: expected a non-empty DataFrame of patients (make_cohort)")
        if cohort["patient_id"].duplicated().any():
            raise ValueError("cohort: patient_id values must be unique")
        self.cohort = cohort.reset_index(drop=True)
        self.seed = int(seed)
        self.config = env_config(**env_kwargs)
        self.batch = EpisodeBatch(len(self.cohort), self.config, constants)
        self._rows = self.cohort.to_dict("records")

    @property
    def unwrapped(self) -> CohortEpisodes:
        return self

    @property
    def n(self) -> int:
        return len(self._rows)

    def get_state(self) -> dict[str, Any]:
        """The live episodes' snapshot (as the envs' ``get_state``): ``{"batch": EpisodeBatch state}``."""
        return {"batch": self.batch.get_state()}

    def reset(self) -> np.ndarray:
        """Start every patient's episode at intake; returns the first observations ``(n, n_features)``."""
        seeds = np.full(self.n, self.seed, dtype=np.uint64)
        return self.batch.reset(np.arange(self.n), self._rows, seeds)

    def run(self, policy: Any, name: str | None = None, shield: Shield | None = None,
            progress: Callable[[int], None] | None = None, discrete: bool = False,
            record: bool = False) -> EpisodeOutcomes:
        """Play one episode per patient under ``policy`` and return the weekly outcomes.

        Args:
            policy: anything with SB3's ``predict(obs, state, episode_start, deterministic)`` acting in the
                ``Progression-v0`` Box action space; its ``reset()`` is called first if it has one.
            name: label of the results (default: the policy's ``name`` attribute or class name).
            shield: optional safety shield applied to every action (interventions are counted).
            progress: called with 1 after each simulated week (e.g. a tqdm ``update``).
            discrete: the policy acts with the move indices of ``ProgressionDiscrete-v0`` (the session plan
                is kept per patient as in that env) instead of the Box action.
            record: also keep every step's observation, action, reward and next observation
                (:class:`Transitions`, e.g. for an offline-RL dataset).
        """
        b = self.batch
        label = name or getattr(policy, "name", None) or type(policy).__name__
        obs = self.reset()
        baseline_pain = b.sim.state.pain.copy()
        baseline_function = b.sim.baseline_function()
        r = rollout(b, policy, self.config.weeks, obs=obs, shield=shield, discrete=discrete,
                    record=_OUTCOME_RECORDS, transitions=record, progress=progress)
        return EpisodeOutcomes(
            policy=label, patient_id=self.cohort["patient_id"].astype(str).to_numpy(), seed=self.seed,
            split=self.config.split, baseline_pain=baseline_pain, baseline_function=baseline_function,
            pain=r["pain"], function=r["function"], capacity=r["capacity"], flares=r["flares"], load=r["load"],
            sessions_prescribed=r["sessions_prescribed"], sessions_attended=r["sessions_attended"],
            supervised=(r["delivery"] == 2).astype(np.float64), in_programme=r.in_programme,
            dropout_week=r.dropout_week, returns=r.returns, cost=r.cost, shield_interventions=r.shield_interventions,
            transitions=r.transitions,
        )
