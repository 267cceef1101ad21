"""Running a paired virtual trial: every policy on the same patients with the same noise, in batch.

For each seed ``s`` of the trial, the patients are ``make_cohort(condition, n, s, split)`` (or the cohort
file's patients) and every policy plays one episode per patient on a
:class:`~adaptrx.envs.episodes.CohortEpisodes` with noise seed ``s``: a patient's random stream depends only
on its id and ``s``, never on the policy or on the other patients (common random numbers), so the results
are paired patient by patient. Dropouts are followed to the horizon without exercise (intention to treat).

The protocols and shipped agents step all patients at once (milliseconds per week for thousands of
patients) and run in this process. The oracle plans by simulation and is the slow one: with ``n_jobs > 1``
its patients are split into ``n_jobs`` chunks run in worker processes (joblib); because the noise is per
patient, chunking changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from adaptrx.envs.belief import reads_beliefs
from adaptrx.envs.episode_engine import env_config
from adaptrx.envs.episodes import CohortEpisodes, EpisodeOutcomes
from adaptrx.envs.features import FEATURE_NAMES
from adaptrx.experiments.trial.analysis import add_outcome_columns
from adaptrx.experiments.trial.config import ConfigError, PolicySpec, TrialConfig, absolute_path
from adaptrx.patient import load_cohort, make_cohort

#: The planners (slow: their patients are split over the worker processes; trial config sections of the same name).
PLANNERS: tuple[str, ...] = ("oracle", "belief_planner")


@dataclass
class TrialData:
    """The raw tables of a trial (see ``DESIGN.md`` section 7 for ``results``)."""

    results: pd.DataFrame  # one row per (policy, patient, seed), outcomes and subgroup covariates
    weekly: pd.DataFrame  # one row per (policy, patient, seed, week)
    dataset: pd.DataFrame | None  # offline-RL transitions, if recorded
    policies: list[dict[str, Any]]  # label, target, kind, shield, policy_id / sha256 of agents


def cohort_for(cfg: TrialConfig, seed: int) -> pd.DataFrame:
    """The patients of one seed: the cohort file's, or ``make_cohort(condition, n, seed, split)``."""
    c = cfg.cohort
    if c.file is None:
        return make_cohort(c.condition, c.n, seed, c.split)
    cohort = load_cohort(absolute_path(c.file))
    found = sorted(set(cohort["condition"].astype(str)))
    if found != [c.condition]:
        raise ConfigError(f"cohort.condition: the cohort file's patients are {', '.join(found)}; set "
                          f"cohort.condition to match (one condition per trial)")
    return cohort


def episodes_for(cfg: TrialConfig, cohort: pd.DataFrame, seed: int, belief: bool = False) -> CohortEpisodes:
    """The paired episode batch of one seed (default reward weights: returns comparable across trials), with
    the belief features in the observations when ``belief`` (for a policy trained with them)."""
    return CohortEpisodes(cohort, seed=seed, condition=cfg.cohort.condition, split=cfg.cohort.split,
                          weeks=cfg.weeks, modality=cfg.modality, belief=belief)


def build_policy(spec: PolicySpec, cfg: TrialConfig, episodes: CohortEpisodes) -> tuple[Any, bool]:
    """The policy object of a protocol or reference ``spec`` (not a policy folder: :func:`load_agent`) and
    whether it acts with discrete moves."""
    from adaptrx.protocols import get

    if spec.target in PLANNERS:
        o = getattr(cfg, spec.target)
        return get(spec.target, env=episodes, horizon=o.horizon, replicates=o.replicates, seed=o.seed), False
    if spec.target == "population_best":
        return get("population_best", condition=cfg.cohort.condition), False
    return get(spec.target), False


def load_agent(spec: PolicySpec) -> tuple[Any, bool, bool]:
    """Load the exported policy folder of ``spec`` (every safety check of ``load_policy``) and check it against
    the env's spaces and features; returns it, whether it acts with discrete moves and whether it reads the
    belief features. ``ValueError`` / :class:`ConfigError` naming the folder otherwise."""
    from gymnasium import spaces

    from adaptrx.agents import load_policy
    from adaptrx.agents.export import check_spaces
    from adaptrx.envs.progression import env_spaces

    path = absolute_path(spec.target)
    policy = load_policy(path, expect_id=spec.expect_id)
    discrete = isinstance(policy.action_space, spaces.Discrete)
    belief = reads_beliefs(policy.feature_names)
    try:
        check_spaces(policy, *env_spaces(discrete, belief), feature_names=env_config(belief=belief).feature_names)
    except ValueError as exc:
        raise ConfigError(f"policies: {path}: {exc}") from exc
    return policy, discrete, belief


def describe(spec: PolicySpec, agent: Any = None) -> dict[str, Any]:
    """What the reports say about a policy: label, target, kind, shield and, for an agent (``agent``: its loaded
    :class:`~adaptrx.agents.export.ExportedPolicy`), its name, algorithm, policy id (sha256 over the canonical
    manifest and the weights) and the weights' sha256."""
    info: dict[str, Any] = {"label": spec.label, "target": spec.target, "shield": spec.shield,
                            "kind": spec.target if spec.target in PLANNERS else "agent" if spec.is_directory
                            else "protocol"}
    if agent is not None:
        info.update({"name": agent.name, "algorithm": agent.algorithm, "policy_id": agent.policy_id,
                     "sha256": agent.sha256})
    return info


def _run_one(spec: PolicySpec, cfg: TrialConfig, seed: int, rows: slice | None, record: bool) -> EpisodeOutcomes:
    """One policy on one seed's patients (``rows``: a chunk of them); runs in a worker process too."""
    from adaptrx.protocols.safety_rules import SafetyRules

    cohort = cohort_for(cfg, seed)
    if rows is not None:
        cohort = cohort.iloc[rows]
    if spec.is_directory:
        policy, discrete, belief = load_agent(spec)
        episodes = episodes_for(cfg, cohort, seed, belief)
    else:
        episodes = episodes_for(cfg, cohort, seed, belief=spec.target == "belief_planner")
        policy, discrete = build_policy(spec, cfg, episodes)
    return episodes.run(policy, name=spec.label, shield=SafetyRules() if spec.shield else None, discrete=discrete,
                        record=record)


def _jobs(specs: Sequence[PolicySpec], cfg: TrialConfig, n: int) -> list[tuple[PolicySpec, int, slice | None]]:
    """Work items: (policy, seed, patient rows); the oracle's patients are split into ``n_jobs`` chunks."""
    jobs: list[tuple[PolicySpec, int, slice | None]] = []
    chunk = -(-n // cfg.n_jobs)
    for seed in range(cfg.seed, cfg.seed + cfg.n_seeds):
        for spec in specs:
            if spec.target in PLANNERS and cfg.n_jobs > 1 and n > 1:
                jobs += [(spec, seed, slice(i, min(i + chunk, n))) for i in range(0, n, chunk)]
            else:
                jobs.append((spec, seed, None))
    return jobs


def transitions_frame(out: EpisodeOutcomes, condition: str) -> pd.DataFrame:
    """The offline-RL transitions of one run (inside-episode weeks only): one row per (patient, week) with
    ``obs.<feature>``, ``action_<i>``, ``reward``, ``next_obs.<feature>``, ``terminated``, ``truncated``,
    ``done``."""
    t = out.transitions
    if t is None:
        raise ValueError("out: run with record=True to keep the transitions")
    mask = out.in_programme  # (weeks, n)
    week, patient = np.nonzero(mask)
    frame: dict[str, Any] = {"policy": out.policy, "condition": condition, "split": out.split,
                             "patient_id": out.patient_id[patient], "seed": out.seed, "week": week + 1}
    for i, name in enumerate(FEATURE_NAMES):
        frame[f"obs.{name}"] = t.obs[week, patient, i]
    for j in range(t.actions.shape[2]):
        frame[f"action_{j}"] = t.actions[week, patient, j]
    frame["reward"] = t.rewards[week, patient]
    for i, name in enumerate(FEATURE_NAMES):
        frame[f"next_obs.{name}"] = t.next_obs[week, patient, i]
    frame["terminated"] = t.terminated[week, patient]
    frame["truncated"] = t.truncated[week, patient]
    frame["done"] = frame["terminated"] | frame["truncated"]
    return pd.DataFrame(frame)


def _blocks(jobs: Sequence[tuple[PolicySpec, int, slice | None]]) -> list[list[int]]:
    """Indices of consecutive jobs of one (policy, seed): an oracle split into chunks is one block."""
    blocks: list[list[int]] = []
    for i, (spec, seed, _) in enumerate(jobs):
        if blocks and jobs[blocks[-1][0]][:2] == (spec, seed):
            blocks[-1].append(i)
        else:
            blocks.append([i])
    return blocks


def _week_major(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The week-major rows of one (policy, seed) in the order of an unchunked run (patients in cohort order
    within a week), whatever the number of chunks its patients were run in: tables do not depend on
    ``n_jobs``."""
    frame = pd.concat(frames, ignore_index=True)
    return frame if len(frames) == 1 else frame.sort_values("week", kind="stable", ignore_index=True)


def run_trial(cfg: TrialConfig, specs: Sequence[PolicySpec]) -> TrialData:
    """Run every policy of ``specs`` on every seed's patients (a progress bar counts the work items: a policy
    on a seed, or an oracle chunk). Returns the tidy tables with the subgroup covariates added."""
    # every policy folder is loaded and checked before any arm is simulated (and described from what was loaded)
    agents = {i: load_agent(spec)[0] for i, spec in enumerate(specs) if spec.is_directory}
    for i, agent in agents.items():  # an agent meets the exercise it was trained to prescribe
        trained = (agent.manifest.get("env") or {}).get("modality")
        if trained is not None and trained != cfg.modality:
            raise ConfigError(f"modality: the trial runs {cfg.modality} exercise but {specs[i].target} was trained "
                              f"with {trained}; set modality={trained} (or leave it unset for the condition's)")
    n = len(cohort_for(cfg, cfg.seed))
    jobs = _jobs(specs, cfg, n)
    record = cfg.output.dataset
    desc = f"trial: {len(specs)} policies x {n} patients x {cfg.n_seeds} seed(s)"
    # batched policies take milliseconds per week: run them here; only oracle chunks go to worker processes
    pooled = [i for i, job in enumerate(jobs) if job[2] is not None]
    results_of: dict[int, EpisodeOutcomes] = {}
    with tqdm(total=len(jobs), desc=desc, unit="run", disable=not cfg.progress) as bar:
        for i, (spec, seed, rows) in enumerate(jobs):
            if i not in pooled:
                results_of[i] = _run_one(spec, cfg, seed, rows, record)
                bar.update(1)
        if pooled:
            from joblib import Parallel, delayed

            work = (delayed(_run_one)(jobs[i][0], cfg, jobs[i][1], jobs[i][2], record) for i in pooled)
            for i, out in zip(pooled, Parallel(n_jobs=cfg.n_jobs, return_as="generator")(work), strict=True):
                results_of[i] = out
                bar.update(1)
    outcomes = [results_of[i] for i in range(len(jobs))]
    condition = cfg.cohort.condition
    cohorts = pd.concat([cohort_for(cfg, s) for s in range(cfg.seed, cfg.seed + cfg.n_seeds)], ignore_index=True)
    cohorts = cohorts.drop_duplicates("patient_id")
    results = pd.concat([o.to_frame() for o in outcomes], ignore_index=True)
    results.insert(1, "condition", condition)
    results["responder_w12"] = np.concatenate([o.responders(12) for o in outcomes])
    results = add_outcome_columns(results, cohorts)
    weekly = pd.concat([_week_major([o.to_weekly_frame() for o in outcomes[g[0]:g[-1] + 1]]) for g in _blocks(jobs)],
                       ignore_index=True)
    weekly.insert(1, "condition", condition)
    dataset = pd.concat([_week_major([transitions_frame(o, condition) for o in outcomes[g[0]:g[-1] + 1]])
                         for g in _blocks(jobs)], ignore_index=True) if record else None
    policies = [describe(s, agents.get(i)) for i, s in enumerate(specs)]
    return TrialData(results=results, weekly=weekly, dataset=dataset, policies=policies)
