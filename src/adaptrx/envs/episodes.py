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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from adaptrx.envs import compiled_step as engine
from adaptrx.envs.actions import decode_continuous, decode_discrete
from adaptrx.envs.episode_engine import EpisodeBatch, env_config
from adaptrx.envs.shield import Shield
from adaptrx.patient import ModelConstants
from adaptrx.patient.kernel import Out

#: Weeks at which the tidy table reports pain (when the episode is that long).
REPORT_WEEKS: tuple[int, ...] = (12, 26)


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
        b, weeks, n = self.batch, self.config.weeks, self.n
        label = name or getattr(policy, "name", None) or type(policy).__name__
        if callable(getattr(policy, "reset", None)):
            policy.reset()
        obs = self.reset()
        baseline_pain = b.sim.state.pain.copy()
        baseline_function = b.sim.baseline_function()
        shape = (weeks, n)
        rec = {k: np.zeros(shape) for k in ("pain", "function", "capacity", "flares", "load", "sessions_prescribed",
                                              "sessions_attended", "supervised")}
        in_programme = np.zeros(shape, dtype=bool)
        active = np.ones(n, dtype=bool)
        dropout_week = np.zeros(n, dtype=np.int64)
        returns, cost, interventions = np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64)
        state: Any = None
        episode_start = np.ones(n, dtype=bool)
        steps: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated")}
        for w in range(weeks):
            actions, state = policy.predict(obs, state=state, episode_start=episode_start, deterministic=True)
            episode_start[:] = False
            if shield is not None:
                actions, rules = shield.constrain(obs, actions, discrete)
                interventions += active & np.array([len(r) > 0 for r in rules])
            if record:
                steps["obs"].append(np.asarray(obs, dtype=np.float32).copy())
                steps["actions"].append(np.asarray(actions, dtype=np.float32).reshape(n, -1).copy())
            if discrete:
                load, sessions, delivery, plan = decode_discrete(actions, b.last_load, b.E[engine.E_PLAN],
                                                                 b.E[engine.E_DELIVERY])
                b.E[engine.E_PLAN] = np.where(active, plan, b.E[engine.E_PLAN])
            else:
                load, sessions, delivery = decode_continuous(np.asarray(actions, dtype=np.float32).reshape(n, 3),
                                                             b.last_load)
            gone = ~active  # dropouts: simulated on without exercise (ITT)
            load[gone], sessions[gone], delivery[gone] = 0.0, 0.0, 0.0
            b.E[engine.E_DONE] = 0.0  # dropped-out patients keep being simulated
            step = b.step(load, sessions, delivery)
            out = step.out
            in_programme[w] = active
            rec["pain"][w] = out[Out.pain]
            rec["function"][w] = out[Out.function]
            rec["capacity"][w] = out[Out.capacity]
            rec["flares"][w] = out[Out.flares]
            rec["load"][w] = np.where(active, load, 0.0)
            rec["sessions_prescribed"][w] = out[Out.sessions_prescribed]
            rec["sessions_attended"][w] = out[Out.sessions_attended]
            rec["supervised"][w] = delivery == 2
            returns += np.where(active, step.reward, 0.0)
            cost += np.where(active, step.cost, 0.0)
            new = active & step.terminated
            dropout_week[new] = w + 1
            if record:
                steps["rewards"].append(np.asarray(step.reward, dtype=np.float64).copy())
                steps["next_obs"].append(np.asarray(step.obs, dtype=np.float32).copy())
                steps["terminated"].append(new.copy())
            active &= ~step.terminated
            obs = step.obs
            if progress is not None:
                progress(1)
        transitions = None
        if record:
            terminated = np.stack(steps["terminated"])
            truncated = np.zeros_like(terminated)
            truncated[-1] = in_programme[-1] & ~terminated[-1]
            transitions = Transitions(obs=np.stack(steps["obs"]), actions=np.stack(steps["actions"]),
                                      rewards=np.stack(steps["rewards"]), next_obs=np.stack(steps["next_obs"]),
                                      terminated=terminated, truncated=truncated)
        return EpisodeOutcomes(
            policy=label, patient_id=self.cohort["patient_id"].astype(str).to_numpy(), seed=self.seed,
            split=self.config.split, baseline_pain=baseline_pain, baseline_function=baseline_function,
            pain=rec["pain"], function=rec["function"], capacity=rec["capacity"], flares=rec["flares"],
            load=rec["load"], sessions_prescribed=rec["sessions_prescribed"],
            sessions_attended=rec["sessions_attended"], supervised=rec["supervised"], in_programme=in_programme,
            dropout_week=dropout_week, returns=returns, cost=cost, shield_interventions=interventions,
            transitions=transitions,
        )

