"""``adaptrx-trial``: the paired in-silico trial app (``DESIGN.md`` section 7).

"Does this policy beat that protocol, for whom, and how sure are we?" A list of policies (protocols by name,
shipped agents by directory, the oracle) x a cohort split (or a cohort file) x seeds; every policy meets the
same patients with the same random streams (:mod:`adaptrx.experiments.trial.runner`). A run directory holds::

    results.parquet / .csv   tidy: one row per (policy, patient, seed) (DESIGN.md 7 columns + subgroups)
    weekly.parquet           per-week trajectories, one row per (policy, patient, seed, week)
    dataset.parquet          offline-RL transitions (output.dataset=true)
    summary.csv              per policy x metric: mean and IQM with stratified bootstrap CIs
    differences.csv          paired mean differences vs stats.reference: CI, sign-flip + Holm p, clinical
                             reading (MCIDs), median, shares better/worse/tied, P(improvement)
    safety_differences.csv   the same for cost, flares and dropout vs stats.safety_reference (pain_monitoring)
    subgroups.csv            paired differences within age band, sensitization tercile, adherence class, sex
    figures/*.png            trajectories, forest plot, flares/dropout/responders, subgroup forest plot
    tb/<policy>/, tb/figures TensorBoard: HParams metrics per policy, figures as images
    report.md                command, config, findings, tables, figures
    trial.json               config, command, policies (ids and weights hashes), versions, run time

Examples::

    adaptrx-trial preset=quick
    adaptrx-trial policies=[pain_monitoring,agents/dagger-knee_oa-v0,oracle] cohort.split=ood n_seeds=3
    adaptrx-trial -m cohort.condition=knee_oa,fibromyalgia seed=0,1 hydra/launcher=joblib
    adaptrx-trial-gather outputs/trial/multirun/<date>     # one table and report for the whole sweep

A bad config value is reported as ``adaptrx-trial: error: <field>: <why>`` with exit code 2.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from adaptrx.common import atomic
from adaptrx.experiments.hydra_cli import ConfigError, check_job, run_app
from adaptrx.experiments.trial import figures as tf
from adaptrx.experiments.trial.analysis import SAFETY, Mcid, compare, mcids, subgroups, summarize
from adaptrx.experiments.trial.config import (
    TrialConfig,
    policy_specs,
    register_schema,
    stats_mcid,
    to_container,
    validate,
)
from adaptrx.experiments.trial.report import differences_table, write_report
from adaptrx.experiments.trial.runner import run_trial
from adaptrx.experiments.trial.tensorboard import write_tensorboard

register_schema()

#: Figures of a trial: file stem -> caption.
FIGURES: dict[str, str] = {
    "pain_trajectories": "Mean weekly pain per policy with 95 % bands (ITT)",
    "forest": "Paired differences vs the reference with 95 % CIs",
    "safety": "Flares, dropout and responders per policy with 95 % CIs",
    "subgroups": "Subgroup paired differences vs the reference",
}


@dataclass
class TrialOutput:
    """What a trial produced (tables in memory, files in ``out_dir``)."""

    out_dir: Path
    results: pd.DataFrame
    summary: pd.DataFrame
    differences: pd.DataFrame
    subgroups: pd.DataFrame
    seconds: float


def _version() -> str:
    try:
        return version("adaptrx")
    except PackageNotFoundError:
        return "unknown"


def analyse(results: pd.DataFrame, weekly: pd.DataFrame | None, out_dir: Path, *, reference: str,
            n_boot: int, level: float, seed: int, subgroup_metric: str, figures: bool, tensorboard: bool,
            report: bool, policies: Sequence[Mapping[str, Any]], command: str, config: Mapping[str, Any],
            seconds: float, title: str, mcid: Mapping[str, Mcid] | None = None, n_perm: int = 100_000,
            safety_reference: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Statistics, figures, TensorBoard and report of a results table (a trial's or a gathered sweep's);
    ``mcid``: the MCIDs of the clinical reading (default: the packaged ones), ``n_perm``: sign flips per p-value;
    ``safety_reference``: a policy of the trial to compare every other with on :data:`SAFETY` outcomes
    (``safety_differences.csv`` and a report section; its own Holm family), ``None`` for none.

    Returns ``(summary, differences, subgroups)`` and writes them as CSV into ``out_dir``.
    """
    mcid = mcids() if mcid is None else mcid
    summary = summarize(results, n_boot=n_boot, seed=seed, level=level)
    differences = compare(results, reference, n_boot=n_boot, seed=seed, level=level, mcid=mcid, n_perm=n_perm)
    groups = subgroups(results, reference, subgroup_metric, n_boot=min(n_boot, 1000), seed=seed, level=level)
    tables = {"summary": summary, "differences": differences, "subgroups": groups}
    if safety_reference not in (None, reference) and safety_reference in set(results["policy"]):
        tables["safety_differences"] = compare(results, safety_reference, SAFETY, n_boot=n_boot, seed=seed,
                                               level=level, mcid=mcid, n_perm=n_perm)
    for name, table in tables.items():
        with atomic.replacing(out_dir / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
    context = _context(results)
    figs: dict[str, Any] = {}
    if figures or tensorboard:
        order = list(dict.fromkeys(results["policy"]))
        colors = tf.policy_colors(order)
        if weekly is not None and len(weekly):
            figs["pain_trajectories"] = tf.mean_trajectories_figure(weekly, "pain", policies=order, colors=colors)
        if len(differences):
            figs["forest"] = tf.forest_figure(differences, reference=reference)
        figs["safety"] = tf.safety_figure(summary, policies=order, colors=colors)
        if len(groups):
            figs["subgroups"] = tf.subgroup_forest_figure(groups, subgroup_metric, reference=reference, colors=colors)
        if figures:
            tf.save_figures(figs, out_dir / "figures")
    if tensorboard:
        write_tensorboard(out_dir / "tb", summary, policies, context, figs)
    if report:
        _write_report(out_dir, summary, differences, groups, tables.get("safety_differences"), context,
                      figures=figures, title=title, command=command,
                      config=config, policies=policies, seconds=seconds, level=level, n_perm=n_perm,
                      reference=reference, mcid=mcid)
    return summary, differences, groups


def _context(results: pd.DataFrame) -> dict[str, Any]:
    """What the report and TensorBoard say about a results table: conditions, splits, seeds, patients/policy."""
    seeds = sorted(set(int(s) for s in results["seed"]))
    return {"condition": ",".join(sorted(set(results["condition"].astype(str)))),
            "split": ",".join(sorted(set(results["split"].astype(str)))), "seeds": ",".join(map(str, seeds)),
            "patients": int(results.groupby("policy").size().max())}


def _write_report(out_dir: Path, summary: pd.DataFrame, differences: pd.DataFrame, groups: pd.DataFrame,
                  safety: pd.DataFrame | None, context: Mapping[str, Any], *, figures: bool, title: str,
                  command: str, config: Mapping[str, Any],
                  policies: Sequence[Mapping[str, Any]], seconds: float, level: float, n_perm: int, reference: str,
                  mcid: Mapping[str, Mcid], path: Path | None = None) -> Path:
    """``report.md`` of a trial from its statistics tables; shows the figures ``out_dir/figures`` holds."""
    shown = {f"figures/{name}.png": caption for name, caption in FIGURES.items()
             if figures and (out_dir / "figures" / f"{name}.png").is_file()}
    facts = {**context, "weeks": config.get("weeks"), "level": level, "seconds": seconds, "version": _version(),
             "n_perm": n_perm}
    return write_report(out_dir / "report.md" if path is None else path, title=title, command=command,
                        config_yaml=OmegaConf.to_yaml(OmegaConf.create(dict(config))), policies=policies,
                        summary=summary, differences=differences, subgroup_table=groups, figures=shown, facts=facts,
                        reference=reference, mcid=mcid, safety=safety)


def _title(c: TrialConfig) -> str:
    return f"Trial {c.name}: {c.cohort.condition}, {c.cohort.split}"


def _stored_run(run_dir: Path) -> tuple[TrialConfig, dict[str, Any]]:
    """The validated config of a finished run (fields it predates take today's defaults) and its trial.json."""
    meta_file = Path(run_dir) / "trial.json"
    if not meta_file.is_file() or not (Path(run_dir) / "results.parquet").is_file():
        raise ValueError(f"run_dir: {run_dir} holds no finished trial (trial.json and results.parquet)")
    meta = json.loads(meta_file.read_text())
    return validate(OmegaConf.merge(OmegaConf.structured(TrialConfig), meta["config"])), meta


def reanalyse(run_dir: str | Path) -> TrialOutput:
    """Recompute the statistics, figures, TensorBoard runs and report of a finished trial in ``run_dir`` from its
    stored tables (``results.parquet``; ``weekly.parquet`` if kept, else the trajectory figure already there is
    kept) and its ``trial.json`` config, with today's analysis code. Nothing is simulated: the per-patient results
    are the run's. ``trial.json`` is rewritten with the config as validated today."""
    run_dir = Path(run_dir)
    c, meta = _stored_run(run_dir)
    results = pd.read_parquet(run_dir / "results.parquet")
    weekly = pd.read_parquet(run_dir / "weekly.parquet") if (run_dir / "weekly.parquet").is_file() else None
    config = to_container(c)
    atomic.write_text(run_dir / "trial.json", json.dumps({**meta, "config": config}, indent=2, default=str))
    if c.output.tensorboard:
        shutil.rmtree(run_dir / "tb", ignore_errors=True)
    s = c.stats
    summary, differences, groups = analyse(
        results, weekly, run_dir, reference=s.reference, n_boot=s.n_boot, level=s.level, seed=c.seed,
        subgroup_metric=s.subgroup_metric, figures=c.output.figures, tensorboard=c.output.tensorboard,
        report=c.output.report, policies=meta["policies"], command=meta["command"], config=config,
        seconds=float(meta["seconds_simulation"]), title=_title(c), mcid=stats_mcid(c), n_perm=s.n_perm,
        safety_reference=s.safety_reference)
    return TrialOutput(run_dir, results, summary, differences, groups, float(meta["seconds_simulation"]))


def render_report(run_dir: str | Path, path: str | Path) -> Path:
    """Write the report of a finished run to ``path`` from its stored statistics tables (``summary.csv``,
    ``differences.csv``, ``subgroups.csv``) and ``trial.json``: equal to its ``report.md`` unless one of them was
    edited by hand or the report drifted from the tables."""
    run_dir = Path(run_dir)
    c, meta = _stored_run(run_dir)
    tables = {name: pd.read_csv(run_dir / f"{name}.csv") for name in ("summary", "differences", "subgroups")}
    safety_file = run_dir / "safety_differences.csv"
    safety = pd.read_csv(safety_file) if safety_file.is_file() else None
    results = pd.read_parquet(run_dir / "results.parquet")
    s = c.stats
    return _write_report(run_dir, tables["summary"], tables["differences"], tables["subgroups"], safety,
                         _context(results),
                         figures=c.output.figures, title=_title(c), command=meta["command"], config=meta["config"],
                         policies=meta["policies"], seconds=float(meta["seconds_simulation"]), level=s.level,
                         n_perm=s.n_perm, reference=s.reference, mcid=stats_mcid(c), path=Path(path))


def run(cfg: TrialConfig | DictConfig, out_dir: str | Path, command: str = "adaptrx-trial") -> TrialOutput:
    """Run one composed trial config into ``out_dir`` (see the module docstring for what it writes)."""
    c = validate(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = policy_specs(c)
    start = time.perf_counter()
    data = run_trial(c, specs)
    seconds = time.perf_counter() - start
    write_tables(out_dir, data.results, data.weekly if c.output.weekly else None, data.dataset)
    config = to_container(c)
    atomic.write_text(out_dir / "trial.json", json.dumps({
        "command": command, "config": config, "policies": data.policies, "seconds_simulation": seconds,
        "version": _version(), "python": sys.version.split()[0]}, indent=2, default=str))
    s = c.stats
    summary, differences, groups = analyse(
        data.results, data.weekly, out_dir, reference=s.reference, n_boot=s.n_boot, level=s.level, seed=c.seed,
        subgroup_metric=s.subgroup_metric, figures=c.output.figures, tensorboard=c.output.tensorboard,
        report=c.output.report, policies=data.policies, command=command, config=config, seconds=seconds,
        title=_title(c), mcid=stats_mcid(c), n_perm=s.n_perm, safety_reference=s.safety_reference)
    return TrialOutput(out_dir, data.results, summary, differences, groups, seconds)


def write_tables(out_dir: Path, results: pd.DataFrame, weekly: pd.DataFrame | None = None,
                 dataset: pd.DataFrame | None = None) -> None:
    """``results.parquet`` / ``.csv`` (+ ``weekly.parquet``, ``dataset.parquet``), each written atomically: an
    interrupted run never leaves a truncated table that reads as a complete one."""
    tables = [("results.parquet", results), ("results.csv", results), ("weekly.parquet", weekly),
              ("dataset.parquet", dataset)]
    for name, table in tables:
        if table is None:
            continue
        with atomic.replacing(out_dir / name) as tmp:
            if name.endswith(".csv"):
                table.to_csv(tmp, index=False)
            else:
                table.to_parquet(tmp, index=False)


def headline(out: TrialOutput, reference: str) -> str:
    """The primary outcomes' paired differences as a printed table."""
    d = out.differences[out.differences["metric"].isin(["return", "pain_change_w12", "function_change", "flares",
                                                         "dropped_out", "cost"])]
    return (f"Paired differences vs {reference} ({out.results.groupby('policy').size().max()} patient-episodes "
            f"per policy, 95 % CI, Holm p):\n{differences_table(d)}\n\nwritten to {out.out_dir} in "
            f"{out.seconds:.1f} s of simulation")


@hydra.main(version_base="1.3", config_path="../../configs", config_name="trial")
def _app(cfg: DictConfig) -> float:
    overrides = HydraConfig.get().overrides.task
    command = "adaptrx-trial " + " ".join(overrides)
    try:
        check_job(cfg)
        out = run(cfg, HydraConfig.get().runtime.output_dir, command=command.strip())
    except (ConfigError, ValueError) as exc:
        print(f"adaptrx-trial: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(headline(out, str(cfg.stats.reference)))
    # the headline objective (a sweeper maximizes it): the best policy's mean return
    ret = out.summary[(out.summary["metric"] == "return")]
    return float(ret["mean"].max()) if len(ret) else float("nan")


def main(argv: list[str] | None = None) -> None:
    """Console entry point of ``adaptrx-trial``: bad overrides exit with code 2 before Hydra starts a run."""
    run_app("adaptrx-trial", "trial", validate, _app, argv)


if __name__ == "__main__":
    main()
