"""Running a paired virtual trial: every policy on the same patients with the same noise, in batch.

For each seed ``s`` of the trial, the patients are ``make_cohort(condition, n, s, split)`` (or the cohort
file's patients) and every policy plays one episode per patient through the shared comparison path
(:func:`adaptrx.experiments.trial.comparison.run_arms`) with noise seed ``s``: a patient's random stream depends
only on its id and ``s``, never on the policy or on the other patients (common random numbers), so the results
are paired patient by patient. Dropouts are followed to the horizon without exercise (intention to treat).

The protocols and shipped agents step all patients at once (milliseconds per week for thousands of
patients) and run in this process. The planners plan by simulation and are the slow ones: with ``n_jobs > 1``
their patients are split into ``n_jobs`` chunks run in worker processes (joblib); because the noise is per
patient, chunking changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from gymnasium import spaces
from tqdm.auto import tqdm

from adaptrx.agents import load_policy
from adaptrx.agents.export import check_spaces
from adaptrx.envs.belief import reads_beliefs
from adaptrx.envs.episode_engine import env_config
from adaptrx.envs.episodes import EpisodeOutcomes
from adaptrx.envs.features import FEATURE_NAMES
from adaptrx.envs.progression import env_spaces
from adaptrx.experiments.trial.comparison import (
    PLANNERS,
    Arm,
    planner_arm,
    policy_arm,
    protocol_arm,
    results_table,
    run_arms,
    weekly_table,
)
from adaptrx.experiments.trial.config import ConfigError, PolicySpec, TrialConfig, absolute_path
from adaptrx.patient import load_cohort, make_cohort


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


def env_settings(cfg: TrialConfig) -> dict[str, Any]:
    """The env settings of every arm (default reward weights: returns comparable across trials); an arm adds the
    belief features when its policy reads them."""
    return {"condition": cfg.cohort.condition, "split": cfg.cohort.split, "weeks": cfg.weeks,
            "modality": cfg.modality}


def load_agent(spec: PolicySpec) -> tuple[Any, bool, bool]:
    """Load the exported policy folder of ``spec`` (every safety check of ``load_policy``) and check it against
    the env's spaces and features; returns it, whether it acts with discrete moves and whether it reads the
    belief features. ``ValueError`` / :class:`ConfigError` naming the folder otherwise."""
    path = absolute_path(spec.target)
    policy = load_policy(path, expect_id=spec.expect_id)
    discrete = isinstance(policy.action_space, spaces.Discrete)
    belief = reads_beliefs(policy.feature_names)
    try:
        check_spaces(policy, *env_spaces(discrete, belief), feature_names=env_config(belief=belief).feature_names)
    except ValueError as exc:
        raise ConfigError(f"policies: {path}: {exc}") from exc
    return policy, discrete, belief


def arm_for(spec: PolicySpec, cfg: TrialConfig, agent: tuple[Any, bool, bool] | None = None) -> Arm:
    """The comparison arm of a policy ``spec``: a protocol, a planner with the config's section of its name, or a
    policy folder (``agent``: what :func:`load_agent` returned for it)."""
    if spec.is_directory:
        if agent is None:
            raise ValueError(f"agent: {spec.target} is a policy folder; load it with load_agent first")
        policy, discrete, belief = agent
        return policy_arm(spec.label, policy, shield=spec.shield, discrete=discrete, belief=belief)
    if spec.target in PLANNERS:
        o = getattr(cfg, spec.target)
        return planner_arm(spec.target, name=spec.label, shield=spec.shield, horizon=o.horizon,
                           replicates=o.replicates, seed=o.seed)
    return protocol_arm(spec.target, cfg.cohort.condition, name=spec.label, shield=spec.shield)


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


def run_trial(cfg: TrialConfig, specs: Sequence[PolicySpec]) -> TrialData:
    """Run every policy of ``specs`` on every seed's patients (a progress bar counts the simulated policy-weeks).
    Returns the tidy tables with the subgroup covariates added."""
    # every policy folder is loaded and checked before any arm is simulated (and described from what was loaded)
    agents = {i: load_agent(spec) for i, spec in enumerate(specs) if spec.is_directory}
    for i, (agent, _, _) in agents.items():  # an agent meets the exercise it was trained to prescribe
        trained = (agent.manifest.get("env") or {}).get("modality")
        if trained is not None and trained != cfg.modality:
            raise ConfigError(f"modality: the trial runs {cfg.modality} exercise but {specs[i].target} was trained "
                              f"with {trained}; set modality={trained} (or leave it unset for the condition's)")
    arms = [arm_for(spec, cfg, agents.get(i)) for i, spec in enumerate(specs)]
    seeds = range(cfg.seed, cfg.seed + cfg.n_seeds)
    cohorts = {s: cohort_for(cfg, s) for s in seeds}
    n = len(cohorts[cfg.seed])
    env = env_settings(cfg)
    desc = f"trial: {len(specs)} policies x {n} patients x {cfg.n_seeds} seed(s), weeks"
    outcomes: list[EpisodeOutcomes] = []
    with tqdm(total=len(arms) * cfg.weeks * cfg.n_seeds, desc=desc, unit="week", disable=not cfg.progress) as bar:
        for s in seeds:
            runs = run_arms(cohorts[s], s, arms, env, n_jobs=cfg.n_jobs, record=cfg.output.dataset,
                            progress=bar.update)
            outcomes += runs.values()
    condition = cfg.cohort.condition
    patients = pd.concat(cohorts.values(), ignore_index=True).drop_duplicates("patient_id")
    results = results_table(outcomes, condition, patients)
    weekly = weekly_table(outcomes, condition)
    dataset = pd.concat([transitions_frame(o, condition) for o in outcomes],
                        ignore_index=True) if cfg.output.dataset else None
    policies = [describe(s, agents[i][0] if i in agents else None) for i, s in enumerate(specs)]
    return TrialData(results=results, weekly=weekly, dataset=dataset, policies=policies)
