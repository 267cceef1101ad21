"""Typed config schema of ``adaptrx-trial`` (Hydra structured config, ``configs/trial.yaml``).

``preset/<name>.yaml`` overrides anything (``quick``: seconds; ``paper``: the committed reports). Hydra checks
types when it merges; :func:`validate` checks ranges and names and raises
:class:`~adaptrx.experiments.hydra_cli.ConfigError` naming the field.

A policy is named by a string ``[label:]target[+shield]`` (characters Hydra's override grammar takes
unquoted):

* ``target``: a protocol of :data:`adaptrx.protocols.NAMES` (``pain_monitoring``, ``population_best``,
  ``oracle``, ...) or a shipped-policy directory (``agents/dagger-knee_oa-v0``: safetensors + manifest.json);
* ``label``: the name in the tables (default: the protocol name, or the manifest's ``name``);
* ``+shield``: the default safety rules (:class:`adaptrx.protocols.SafetyRules`) bind every action.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from adaptrx.envs.episode_engine import env_config
from adaptrx.experiments.hydra_cli import ConfigError, check_field, check_known_keys
from adaptrx.experiments.trial.analysis import METRICS, Mcid, mcid_config, mcids
from adaptrx.patient import SPLITS, conditions
from adaptrx.patient.cohort import programme_modality
from adaptrx.protocols import NAMES

__all__ = ["ConfigError", "PolicySpec", "TrialConfig", "parse_policy", "register_schema", "validate"]

SHIELD_SUFFIX = "+shield"


@dataclass
class CohortConfig:
    """The patients: ``n`` of a condition's split per seed, or the patients of a cohort file."""

    condition: str = "knee_oa"
    split: str = "test"  # train, val, test or ood
    n: int = 1000  # patients per seed (1-100000); ignored with a file
    file: str | None = None  # a cohort file (parquet or CSV of adaptrx.patient.save_cohort) instead


@dataclass
class OracleConfig:
    """Planner settings of the ``oracle`` policy (:class:`adaptrx.protocols.oracle.OraclePolicy`)."""

    horizon: int | None = None  # weeks planned ahead (None: the rest of the episode)
    replicates: int = 2  # noise replicates per candidate plan
    seed: int = 0


@dataclass
class StatsConfig:
    """The statistics: the reference of the paired differences, the bootstrap and the subgroup outcome."""

    reference: str = "population_best"  # a policy label of the trial
    # the safety comparison (cost, flares, dropout of every policy minus this one's), if the trial runs it; null: none
    safety_reference: str | None = "pain_monitoring"
    n_boot: int = 2000  # bootstrap replicates (100-100000)
    level: float = 0.95  # confidence level of every interval
    subgroup_metric: str = "pain_change_w12"
    n_perm: int = 100_000  # sign-flip permutations of each p-value (1000-1000000)
    # outcome -> {value, unit, source}: minimal clinically important differences (configs/mcid/default.yaml)
    mcid: dict[str, Any] = field(default_factory=mcid_config)


@dataclass
class OutputConfig:
    """What a run writes besides ``results.parquet``/``results.csv`` and the statistics tables."""

    weekly: bool = True  # weekly.parquet: per-week trajectories
    figures: bool = True  # figures/*.png
    tensorboard: bool = True  # tb/<policy>/: HParams metrics per policy, figures as images
    report: bool = True  # report.md
    dataset: bool = False  # dataset.parquet: offline-RL transitions (obs, action, reward, next obs, done)


@dataclass
class TrialConfig:
    """Everything a paired virtual trial depends on."""

    name: str = "trial"
    policies: list[str] = field(default_factory=lambda: [
        "population_best", "pain_monitoring", "acsm", "glad", "aggressive", "attention_control", "none"])
    cohort: CohortConfig = field(default_factory=CohortConfig)
    seed: int = 0  # first seed: seeds are seed, seed + 1, ..., seed + n_seeds - 1
    n_seeds: int = 1  # each seed draws its own patients (cohort seed) and noise
    weeks: int = 26  # episode length (12-104)
    modality: str | None = None  # exercise modality; None: the condition's (adaptrx.patient.cohort.programme_modality)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    # the belief planner (adaptrx.protocols.oracle.BeliefPlanner): replicates = posterior particles per patient-week
    belief_planner: OracleConfig = field(default_factory=lambda: OracleConfig(replicates=4))
    stats: StatsConfig = field(default_factory=StatsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    n_jobs: int = 1  # worker processes (the oracle is split over patients; 1: in this process)
    progress: bool = True


@dataclass(frozen=True)
class PolicySpec:
    """A parsed policy string: table ``label``, ``target`` (protocol name or directory), ``shield`` and, for a
    directory pinned as ``dir@<id prefix>``, the ``expect_id`` its policy id must start with."""

    label: str
    target: str
    shield: bool = False
    expect_id: str | None = None

    @property
    def is_directory(self) -> bool:
        return self.target not in NAMES

    @property
    def text(self) -> str:
        pin = f"@{self.expect_id}" if self.expect_id else ""
        return f"{self.label}:{self.target}{pin}{SHIELD_SUFFIX if self.shield else ''}"


def parse_policy(text: str) -> PolicySpec:
    """Parse ``[label:]target[@id-prefix][+shield]``; a ``ConfigError`` names ``policies`` and says what is wrong.

    A directory target must hold ``manifest.json``; its default label is the manifest's ``name``. ``@`` and 8-64
    hex digits pin the directory's policy id (``adaptrx.agents.export.policy_id``): a different policy is
    refused before the trial runs.
    """
    raw = str(text).strip()
    shield = raw.endswith(SHIELD_SUFFIX)
    if shield:
        raw = raw[: -len(SHIELD_SUFFIX)]
    label, sep, target = raw.partition(":")
    if not sep:
        label, target = "", label
    label, target = label.strip(), target.strip()
    expect_id = None
    head, at, pin = target.rpartition("@")
    if at and re.fullmatch(r"[0-9a-fA-F]{8,64}", pin.strip()):
        target, expect_id = head.strip(), pin.strip().lower()
    check_field(bool(target), "policies", f"empty policy in {text!r}")
    check_field(expect_id is None or target not in NAMES, "policies",
                f"{text!r}: only a policy directory can be pinned with @<id>")
    if target not in NAMES:
        manifest = Path(absolute_path(target)) / "manifest.json"
        check_field(manifest.is_file(), "policies",
                    f"{target!r} is neither a protocol ({', '.join(NAMES)}) nor a policy directory with manifest.json")
        if not label:
            try:
                label = str(json.loads(manifest.read_text())["name"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"policies: {manifest}: no readable 'name' ({exc})") from exc
    label = label or target
    check_field(label.replace("-", "").replace("_", "").replace(".", "").isalnum(), "policies",
                f"label {label!r}: use letters, digits, '-', '_' or '.'")
    return PolicySpec(label, target, shield, expect_id)


def absolute_path(path: str) -> str:
    """``path`` against the directory the command was started in (Hydra may run jobs elsewhere)."""
    try:
        return to_absolute_path(path)
    except ValueError:  # outside a Hydra run
        return str(Path(path).resolve())


def register_schema() -> None:
    """Register :class:`TrialConfig` as ``trial_schema`` in Hydra's config store (idempotent)."""
    ConfigStore.instance().store(name="trial_schema", node=TrialConfig)


def policy_specs(cfg: TrialConfig) -> list[PolicySpec]:
    """The trial's policies, parsed, with the reference added first if it is not listed."""
    specs = [parse_policy(p) for p in cfg.policies]
    labels = [s.label for s in specs]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    check_field(not dupes, "policies", f"duplicate label(s) {dupes}; name them with label:target")
    if cfg.stats.reference not in labels:
        specs.insert(0, parse_policy(cfg.stats.reference))
    return specs


def validate(cfg: TrialConfig | DictConfig) -> TrialConfig:
    """Check ranges and names of a composed config; returns it as a :class:`TrialConfig`."""
    if not isinstance(cfg, TrialConfig):
        check_known_keys(cfg, TrialConfig)
    c = cfg if isinstance(cfg, TrialConfig) else OmegaConf.to_object(cfg)
    assert isinstance(c, TrialConfig)
    check_field(len(c.policies) >= 1, "policies", "list at least one policy")
    k = c.cohort
    check_field(k.condition in conditions(), "cohort.condition",
                f"unknown {k.condition!r}; known: {', '.join(conditions())}")
    check_field(k.split in SPLITS, "cohort.split", f"unknown {k.split!r}; known: {', '.join(SPLITS)}")
    check_field(1 <= k.n <= 100_000, "cohort.n", f"must be 1-100000, got {k.n}")
    if k.file is not None:
        check_field(Path(absolute_path(k.file)).is_file(), "cohort.file", f"no such file {k.file!r}")
    check_field(c.seed >= 0, "seed", f"must be >= 0, got {c.seed}")
    check_field(1 <= c.n_seeds <= 1000, "n_seeds", f"must be 1-1000, got {c.n_seeds}")
    check_field(12 <= c.weeks <= 104, "weeks", f"the outcomes read week 12; need 12-104, got {c.weeks}")
    for part in ("oracle", "belief_planner"):
        o = getattr(c, part)
        check_field(o.horizon is None or 1 <= o.horizon <= 104, f"{part}.horizon", f"must be 1-104, got {o.horizon}")
        check_field(1 <= o.replicates <= 1000, f"{part}.replicates", f"must be 1-1000, got {o.replicates}")
        check_field(o.seed >= 0, f"{part}.seed", f"must be >= 0, got {o.seed}")
    s = c.stats
    check_field(100 <= s.n_boot <= 100_000, "stats.n_boot", f"must be 100-100000, got {s.n_boot}")
    check_field(0.5 <= s.level < 1.0, "stats.level", f"must be in [0.5, 1), got {s.level}")
    check_field(s.subgroup_metric in METRICS, "stats.subgroup_metric",
                f"unknown {s.subgroup_metric!r}; known: {', '.join(METRICS)}")
    check_field(1000 <= s.n_perm <= 1_000_000, "stats.n_perm", f"must be 1000-1000000, got {s.n_perm}")
    stats_mcid(c)
    check_field(1 <= c.n_jobs <= 256, "n_jobs", f"must be 1-256, got {c.n_jobs}")
    policy_specs(c)
    if c.modality is None:
        c.modality = programme_modality(k.condition)
    try:
        env_config(condition=k.condition, split=k.split, weeks=c.weeks, modality=c.modality)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{exc}") from exc
    return c


def stats_mcid(cfg: TrialConfig) -> dict[str, Mcid]:
    """The trial's MCIDs (``stats.mcid``), checked; raises :class:`ConfigError` naming the field."""
    raw = cfg.stats.mcid
    if isinstance(raw, DictConfig):
        raw = OmegaConf.to_container(raw, resolve=True)
    try:
        return mcids(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def to_container(cfg: TrialConfig) -> dict[str, Any]:
    """The config as plain JSON-able data (for trial.json and the report)."""
    out = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    assert isinstance(out, dict)
    return out
