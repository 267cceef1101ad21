"""The paired comparison, written once: several policies on the same virtual patients, compared with a reference
patient by patient.

Every arm (a named policy) plays one intention-to-treat episode per patient on a
:class:`~adaptrx.envs.episodes.CohortEpisodes` with the same noise seed: a patient's random stream depends only on
its id and the seed, never on the policy or on the other patients (common random numbers), so outcomes pair up
patient by patient. The tidy per-patient table (:func:`results_table`) is what the statistics read:
:func:`~adaptrx.experiments.trial.analysis.compare` gives the mean paired difference (policy minus reference) with
its stratified bootstrap CI, sign-flip p-value (Holm-adjusted), clinical reading against the MCIDs and the
descriptive companions (:mod:`adaptrx.experiments.stats`).

Users: the trial app (:mod:`adaptrx.experiments.trial.runner`: :func:`run_arms`, :func:`results_table`), the
policy card after training (:mod:`adaptrx.experiments.train.policy_card`: :func:`run_comparison`,
:meth:`PairedComparison.versus`), the protocols baseline (:mod:`adaptrx.experiments.trial.protocols_baseline`) and
the quick demo (:mod:`adaptrx.demo`).

The planners (``oracle``, ``belief_planner``) plan by simulation and are slow: an arm with ``split_patients``
has its patients split into ``n_jobs`` chunks run in worker processes (joblib); because the noise is per
patient, chunking changes nothing (the chunks' outcomes are joined in cohort order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from adaptrx.envs.episode_engine import env_config
from adaptrx.envs.episodes import CohortEpisodes, EpisodeOutcomes
from adaptrx.experiments.trial.analysis import PRIMARY, Mcid, add_derived_outcomes, add_outcome_columns, compare
from adaptrx.protocols import get
from adaptrx.protocols.safety_rules import SafetyRules

#: The planners: policies that plan by simulation on the episodes they control (slow; patients split over workers).
PLANNERS: tuple[str, ...] = ("oracle", "belief_planner")
#: The protocol that is parameterised by the condition (the train-cohort winner of each condition).
POPULATION_BEST = "population_best"
#: Week of the responder outcome of the results table (``responder_w12``).
RESPONDER_WEEK = 12

#: Builds an arm's policy on the episodes it will play (planners need them; other policies ignore them).
PolicyFactory = Callable[[CohortEpisodes], Any]


@dataclass(frozen=True)
class Arm:
    """A named policy of a paired comparison.

    Attributes:
        name: the label in the tables (unique within a comparison).
        make: builds the policy on the arm's :class:`~adaptrx.envs.episodes.CohortEpisodes` (picklable when
            ``split_patients``: worker processes build their own).
        shield: the default safety rules (:class:`~adaptrx.protocols.safety_rules.SafetyRules`) bind every action.
        discrete: the policy acts with the move indices of ``ProgressionDiscrete-v0``.
        belief: the observations carry the belief features (``None``: as the comparison's env settings say).
        split_patients: run the patients in ``n_jobs`` chunks in worker processes (the planners).
    """

    name: str
    make: PolicyFactory
    shield: bool = False
    discrete: bool = False
    belief: bool | None = None
    split_patients: bool = False


class _Fixed:
    """A :data:`PolicyFactory` that returns an already built policy (picklable, unlike a lambda)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def __call__(self, episodes: CohortEpisodes) -> Any:
        return self.policy


def _protocol(name: str, condition: str, episodes: CohortEpisodes) -> Any:
    return get(name, condition=condition) if name == POPULATION_BEST else get(name)


def _planner(name: str, params: Mapping[str, Any], episodes: CohortEpisodes) -> Any:
    return get(name, env=episodes, **params)


def policy_arm(name: str, policy: Any, *, shield: bool = False, discrete: bool = False,
               belief: bool | None = None) -> Arm:
    """An arm of a built policy (a loaded agent, a live model): anything with SB3's ``predict``."""
    return Arm(name, _Fixed(policy), shield=shield, discrete=discrete, belief=belief)


def protocol_arm(protocol: str, condition: str, *, name: str | None = None, shield: bool = False) -> Arm:
    """An arm of a fixed protocol of :data:`adaptrx.protocols.NAMES` (not a planner); ``population_best`` is the
    stored train-cohort winner of ``condition``. ``name`` defaults to the protocol's."""
    if protocol in PLANNERS:
        raise ValueError(f"protocol: {protocol!r} is a planner; use planner_arm")
    return Arm(name or protocol, partial(_protocol, protocol, condition), shield=shield)


def planner_arm(planner: str, *, name: str | None = None, shield: bool = False, **params: Any) -> Arm:
    """An arm of a planner of :data:`PLANNERS` with its parameters (``horizon``, ``replicates``, ``seed``,
    ``clairvoyant``, ...; see :class:`adaptrx.protocols.oracle.OraclePolicy`). The belief planner reads the belief
    features; the oracle plays on episodes without them. Its patients are split over the worker processes."""
    if planner not in PLANNERS:
        raise ValueError(f"planner: unknown {planner!r}; known: {', '.join(PLANNERS)}")
    return Arm(name or planner, partial(_planner, planner, dict(params)), shield=shield,
               belief=planner == "belief_planner", split_patients=True)


def run_arm(cohort: pd.DataFrame, seed: int, arm: Arm, env: Mapping[str, Any], *, record: bool = False,
            progress: Callable[[int], None] | None = None) -> EpisodeOutcomes:
    """One arm on ``cohort``'s patients (one episode each) with noise seed ``seed``; ``env``: env settings
    (``condition``, ``split``, ``weeks``, ``modality``, ``reward``, ...: fields of
    :class:`~adaptrx.envs.episode_engine.EnvConfig`) with the arm's ``belief`` applied. ``record`` keeps the
    transitions; ``progress`` is called with 1 after each simulated week."""
    settings = dict(env) if arm.belief is None else {**env, "belief": arm.belief}
    episodes = CohortEpisodes(cohort, seed=seed, **settings)
    return episodes.run(arm.make(episodes), name=arm.name, shield=SafetyRules() if arm.shield else None,
                        discrete=arm.discrete, record=record, progress=progress)


def run_arms(cohort: pd.DataFrame, seed: int, arms: Sequence[Arm], env: Mapping[str, Any], *, n_jobs: int = 1,
             record: bool = False, progress: Callable[[int], None] | None = None) -> dict[str, EpisodeOutcomes]:
    """Every arm on the same patients with the same noise seed (common random numbers).

    Args:
        cohort: the patients, one row each (:func:`adaptrx.patient.make_cohort` columns).
        seed: the noise seed (>= 0) shared by every arm.
        arms: the arms, names unique; results come back in this order.
        env: env settings of every arm (as for :func:`run_arm`).
        n_jobs: worker processes (1-256) of the arms with ``split_patients`` (their patients split into
            ``n_jobs`` chunks); the other arms run in this process.
        record: keep every step's transitions (:class:`~adaptrx.envs.episodes.Transitions`).
        progress: called with the number of simulated weeks as they are done (``weeks`` per arm in all).

    Returns:
        Arm name -> its outcomes (patients in cohort order, however they were chunked).
    """
    names = [a.name for a in arms]
    dupes = sorted({name for name in names if names.count(name) > 1})
    if dupes:
        raise ValueError(f"arms: duplicate name(s) {dupes}")
    n = len(cohort)
    pooled = [a for a in arms if a.split_patients and n_jobs > 1 and n > 1]
    out: dict[str, EpisodeOutcomes] = {}
    for arm in arms:
        if arm not in pooled:
            out[arm.name] = run_arm(cohort, seed, arm, env, record=record, progress=progress)
    if pooled:
        chunk = -(-n // n_jobs)
        work = [(arm, slice(i, min(i + chunk, n))) for arm in pooled for i in range(0, n, chunk)]
        runs = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(run_arm)(cohort.iloc[rows], seed, arm, env, record=record) for arm, rows in work)
        parts: dict[str, list[EpisodeOutcomes]] = {arm.name: [] for arm in pooled}
        for (arm, rows), part in zip(work, runs, strict=True):
            parts[arm.name].append(part)
            if rows.stop == n:  # the arm's last chunk
                out[arm.name] = EpisodeOutcomes.concat(parts[arm.name])
                if progress is not None:
                    progress(part.weeks)
    return {name: out[name] for name in names}


def tidy_table(outcomes: Sequence[EpisodeOutcomes]) -> pd.DataFrame:
    """The tidy per-patient table of ``DESIGN.md`` section 7: one row per (policy, patient), arms in order."""
    return pd.concat([o.to_frame() for o in outcomes], ignore_index=True)


def results_table(outcomes: Sequence[EpisodeOutcomes], condition: str,
                  cohort: pd.DataFrame | None = None) -> pd.DataFrame:
    """What the statistics read: :func:`tidy_table` with ``condition`` (second column), ``responder_w12`` (0/1;
    NaN for episodes shorter than 12 weeks) and the derived outcomes (``pain_change_w12``, ``composite``), plus
    the subgroup covariates of ``cohort`` (the patients of every run; ``None``: none)."""
    results = tidy_table(outcomes)
    results.insert(1, "condition", condition)
    results["responder_w12"] = np.concatenate([
        o.responders(RESPONDER_WEEK) if o.weeks >= RESPONDER_WEEK else np.full(o.n, np.nan) for o in outcomes])
    return add_derived_outcomes(results) if cohort is None else add_outcome_columns(results, cohort)


def weekly_table(outcomes: Sequence[EpisodeOutcomes], condition: str) -> pd.DataFrame:
    """Per-week trajectories: one row per (policy, patient, week), week-major within a policy; ``condition``
    second."""
    weekly = pd.concat([o.to_weekly_frame() for o in outcomes], ignore_index=True)
    weekly.insert(1, "condition", condition)
    return weekly


@dataclass
class PairedComparison:
    """The arms of one cohort and noise seed: outcomes per arm and the per-patient results table."""

    outcomes: dict[str, EpisodeOutcomes]  # arm name -> outcomes, in arm order
    results: pd.DataFrame  # results_table: one row per (policy, patient), with the subgroup covariates

    def differences(self, reference: str, metrics: Sequence[str] = PRIMARY, *, n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95, mcid: Mapping[str, Mcid] | None = None,
                    n_perm: int = 100_000) -> pd.DataFrame:
        """Every other arm minus ``reference`` (:func:`~adaptrx.experiments.trial.analysis.compare`: one row per
        arm x metric; ``n_boot`` bootstrap resamples of patients, ``seed`` of the resamples and sign flips,
        ``level`` in (0, 1))."""
        return compare(self.results, reference, metrics, n_boot=n_boot, seed=seed, level=level, mcid=mcid,
                       n_perm=n_perm)

    def versus(self, policy: str, comparators: Sequence[str], metrics: Sequence[str] = PRIMARY, *,
               n_boot: int = 2000, seed: int = 0, level: float = 0.95, mcid: Mapping[str, Mcid] | None = None,
               n_perm: int = 100_000) -> pd.DataFrame:
        """``policy`` minus each comparator: :meth:`differences` of the pair with the comparator as the reference,
        rows stacked in the order of ``comparators`` (each pair its own Holm family)."""
        tables = [compare(self.results[self.results["policy"].isin([policy, c])], c, metrics, n_boot=n_boot,
                          seed=seed, level=level, mcid=mcid, n_perm=n_perm) for c in comparators]
        return pd.concat(tables, ignore_index=True)


def run_comparison(cohort: pd.DataFrame, seed: int, arms: Sequence[Arm], env: Mapping[str, Any], *,
                   n_jobs: int = 1, progress: Callable[[int], None] | None = None) -> PairedComparison:
    """:func:`run_arms` and :func:`results_table` of one cohort: the paired comparison ready for its statistics
    (:meth:`PairedComparison.differences`, :meth:`PairedComparison.versus`). ``env`` names the condition that
    labels the rows (default ``knee_oa``, as the env's)."""
    outcomes = run_arms(cohort, seed, arms, env, n_jobs=n_jobs, progress=progress)
    condition = env_config(**env).condition
    return PairedComparison(outcomes, results_table(list(outcomes.values()), condition, cohort))
