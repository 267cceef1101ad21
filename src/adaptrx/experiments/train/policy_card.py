"""The evidence of a trained policy: a paired comparison on test patients and the policy's ``card.md``.

:func:`compare_on_test` plays the exported policy and every fixed clinical protocol, plus the
``population_best`` reference (and, with ``budget.test_oracle``, the oracle), on the same ``test`` patients with
the same noise (never used in training or model selection), intention-to-treat, through the shared comparison
path (:mod:`adaptrx.experiments.trial.comparison`). Per comparator it reports the mean paired difference (agent
minus comparator) with a bootstrap 95 % CI of

* the episode return under the env's default reward (the headline objective, ``DESIGN.md`` section 3;
  higher is better),
* its components: pain at week 12 (NRS), flares and dropout (lower is better), and
* the composite of :func:`~adaptrx.experiments.clinical_metrics.composite_score` (a documented secondary: mean
  weekly pain + flare weeks + 2 for a dropout; lower is better),

and whether the policy beats every fixed protocol on the return (CI lower bound above zero) with no more
flares per patient than ``pain_monitoring``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from stable_baselines3.common.logger import Logger
from tqdm.auto import tqdm

from adaptrx.agents.export import policy_id
from adaptrx.common import atomic
from adaptrx.experiments.clinical_metrics import DROPOUT_WEIGHT, clinical_metrics, load_follows_patient
from adaptrx.experiments.stats import Estimate
from adaptrx.experiments.train.config import TrainConfig
from adaptrx.experiments.train.result import TrainResult
from adaptrx.experiments.trial.comparison import (
    PairedComparison,
    planner_arm,
    policy_arm,
    protocol_arm,
    run_comparison,
    tidy_table,
)
from adaptrx.experiments.trial.config import OracleConfig
from adaptrx.experiments.trial.report import markdown_table
from adaptrx.patient import make_cohort
from adaptrx.protocols.clinical import PROTOCOLS
from adaptrx.protocols.population_best import stored_results

AGENT = "agent"
ORACLE = "oracle"
REFERENCE = "population_best"
SAFETY_REFERENCE = "pain_monitoring"
#: Columns of the per-policy summary of the comparison.
SUMMARY_COLUMNS: tuple[str, ...] = ("return", "pain_w12", "pain_change_w12", "responder_rate_w12", "pain_mean",
                                    "function_change", "flares_per_patient", "dropout_rate", "safety_cost",
                                    "composite", "supervised_sessions")
#: Outcomes of the card's paired differences: key of the card's columns -> column of the results table.
DIFFERENCES: dict[str, str] = {"return": "return", "pain_w12": "pain_w12", "flares": "flares",
                               "dropout": "dropped_out", "composite": "composite"}


def comparators(condition: str) -> list[str]:
    """Fixed protocols the agent is compared with: every clinical protocol and, if stored, population_best."""
    names = list(PROTOCOLS)
    if condition in stored_results():
        names.append(REFERENCE)
    return names


def _versus(trial: PairedComparison, policy: str, comparators: list[str], seed: int) -> pd.DataFrame:
    """``policy`` minus each comparator on :data:`DIFFERENCES` (mean paired differences, bootstrap 95 % CIs):
    one row per comparator with ``<key>_diff``, ``<key>_low``, ``<key>_high``."""
    long = trial.versus(policy, comparators, list(DIFFERENCES.values()), seed=seed)
    rows = []
    for name in comparators:
        mine = long[long["reference"] == name].set_index("metric")
        row: dict[str, Any] = {"comparator": name}
        for key, metric in DIFFERENCES.items():
            row.update({f"{key}_{part}": float(mine.loc[metric, column])
                        for part, column in (("diff", "diff"), ("low", "low"), ("high", "high"))})
        rows.append(row)
    return pd.DataFrame(rows)


def compare_on_test(policy: Any, cfg: TrainConfig, out_dir: Path | None = None, n: int | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Paired ITT comparison of ``policy`` with the fixed protocols on ``n`` test patients (default
    ``budget.test_patients``), through the shared comparison path (:mod:`adaptrx.experiments.trial.comparison`).

    Returns ``{"summary": DataFrame (one row per policy), "differences": DataFrame (one row per comparator),
    "numbers": JSON-able headline numbers, "headline": one line}``; writes ``test_comparison.csv``,
    ``test_differences.csv`` and ``test_results.parquet`` (tidy, one row per policy x patient) to ``out_dir``.
    """
    e = cfg.env
    n = cfg.budget.test_patients if n is None else n
    cohort = make_cohort(e.condition, n, cfg.eval_seed, "test")
    names = comparators(e.condition)
    arms = [policy_arm(AGENT, policy, shield=e.shield, discrete=e.discrete),
            *(protocol_arm(name, e.condition) for name in names)]
    if cfg.budget.test_oracle:  # the upper reference: the planner that knows each patient (trial settings)
        oracle = OracleConfig()
        arms.append(planner_arm(ORACLE, horizon=oracle.horizon, replicates=oracle.replicates, seed=oracle.seed))
        names = [*names, ORACLE]
    # the env's default reward: test returns are comparable across runs whatever reward a run trained on
    env = e.env_kwargs("test", default_reward=True)
    with tqdm(total=len(arms) * e.weeks, desc="test comparison (policies x weeks)", disable=not progress) as bar:
        trial = run_comparison(cohort, cfg.eval_seed, arms, env, n_jobs=cfg.budget.n_jobs, progress=bar.update)
    outcomes = trial.outcomes
    metrics = {k: clinical_metrics(o) for k, o in outcomes.items()}
    summary = pd.DataFrame([{"policy": k, **{c: m[c] for c in SUMMARY_COLUMNS}} for k, m in metrics.items()])
    diffs = _versus(trial, AGENT, names, cfg.eval_seed)
    flares = dict(zip(summary["policy"], summary["flares_per_patient"], strict=True))
    protocols = diffs[diffs["comparator"] != ORACLE]
    beats_return = bool((protocols["return_low"] > 0).all())
    beats_pain = bool((protocols["pain_w12_high"] < 0).all())
    safe = flares[AGENT] <= flares[SAFETY_REFERENCE]
    fixed = summary[~summary["policy"].isin([AGENT, ORACLE])]
    best_fixed = str(fixed.loc[fixed["return"].idxmax(), "policy"])
    ref_name = REFERENCE if REFERENCE in names else SAFETY_REFERENCE
    ref_row = diffs.set_index("comparator").loc[ref_name]

    def triple(key: str) -> list[float]:
        return [float(ref_row[f"{key}_{part}"]) for part in ("diff", "low", "high")]

    numbers = {
        "test_patients": int(n), "seed": int(cfg.eval_seed), "reference": ref_name,
        "return_vs_reference": triple("return"), "pain_w12_vs_reference": triple("pain_w12"),
        "flares_vs_reference": triple("flares"), "dropout_vs_reference": triple("dropout"),
        "composite_vs_reference": triple("composite"),
        "beats_every_fixed_protocol_return": beats_return, "beats_every_fixed_protocol_pain_w12": beats_pain,
        "flares_per_patient": float(flares[AGENT]), "flares_pain_monitoring": float(flares[SAFETY_REFERENCE]),
        "no_more_flares_than_pain_monitoring": bool(safe), "best_fixed_protocol_by_return": best_fixed,
        "agent": metrics[AGENT],
        # does the load follow the patient? (Spearman, mean load in weeks 5-16 vs the true tolerance envelope)
        "load_envelope_spearman": load_follows_patient(outcomes[AGENT], cohort["envelope"].to_numpy()),
    }
    if ORACLE in outcomes and ref_name == REFERENCE:
        # the share of the oracle - population_best return gap the agent closes (1: as good as the oracle); only
        # where there is a gap (its CI above 0): a share of nothing is not a result
        gap = _versus(trial, ORACLE, [REFERENCE], cfg.eval_seed).iloc[0]
        numbers["oracle_return_vs_reference"] = [float(gap[f"return_{part}"]) for part in ("diff", "low", "high")]
        numbers["gap_closed"] = (float(numbers["return_vs_reference"][0] / gap["return_diff"])
                                 if gap["return_low"] > 0 else float("nan"))

    def fmt(key: str, scale: float = 1.0) -> str:
        value, low, high = (scale * v for v in triple(key))
        return f"{value:+.2f} [{low:+.2f}, {high:+.2f}]"

    headline = (f"vs {ref_name}: return {fmt('return')}, pain w12 {fmt('pain_w12')} NRS, flares {fmt('flares')}, "
                f"dropout {fmt('dropout', 100)} pp; beats every fixed protocol on the return: "
                f"{'yes' if beats_return else 'no'}; flares {flares[AGENT]:.2f} vs pain_monitoring "
                f"{flares[SAFETY_REFERENCE]:.2f}")
    if "gap_closed" in numbers:
        g = numbers["oracle_return_vs_reference"]
        gap_text = f"{g[0]:+.2f} [{g[1]:+.2f}, {g[2]:+.2f}]"
        headline += (f"; closes {100 * numbers['gap_closed']:.0f} % of the oracle - {REFERENCE} return gap "
                     f"({gap_text})" if np.isfinite(numbers["gap_closed"]) else
                     f"; the oracle does not beat {REFERENCE} on the return here ({gap_text}): no gap to close")
    if out_dir is not None:
        out_dir = Path(out_dir)
        for name, table in (("test_comparison.csv", summary), ("test_differences.csv", diffs)):
            with atomic.replacing(out_dir / name) as tmp:
                table.to_csv(tmp, index=False)
        with atomic.replacing(out_dir / "test_results.parquet") as tmp:
            tidy_table(list(outcomes.values())).to_parquet(tmp, index=False)
    return {"summary": summary, "differences": diffs, "numbers": numbers, "headline": headline}


def log_test_comparison(logger: Logger, test: dict[str, Any], step: int) -> None:
    """Write the test comparison to the run's TensorBoard: scalars ``test/<outcome>_vs_<reference>`` (paired mean
    difference, agent minus reference), ``test/agent_<metric>``, ``test/gap_closed`` and
    ``test/load_envelope_spearman``, and the two tables as text (``test/standing``, ``test/differences``)."""
    n = test["numbers"]
    ref = n["reference"]
    for key in ("return", "pain_w12", "flares", "dropout", "composite"):
        logger.record(f"test/{key}_vs_{ref}", float(n[f"{key}_vs_reference"][0]))
    for key in ("return", "pain_change_w12", "flares_per_patient", "dropout_rate", "safety_cost"):
        logger.record(f"test/agent_{key}", float(n["agent"][key]))
    for key in ("gap_closed", "load_envelope_spearman"):
        if key in n:
            logger.record(f"test/{key}", float(n[key]))
    logger.record("test/standing", standing_table(test["summary"]), exclude=("stdout", "log", "json", "csv"))
    logger.record("test/differences", differences_table(test["differences"]),
                  exclude=("stdout", "log", "json", "csv"))
    logger.dump(step)


def standing_table(summary: pd.DataFrame) -> str:
    """Where the agent stands (markdown): the agent, ``population_best``, the oracle and ``pain_monitoring`` on
    the headline objective and its components (means over the test patients)."""
    order = [AGENT, REFERENCE, ORACLE, SAFETY_REFERENCE]
    rows = summary.set_index("policy")
    rows = rows.loc[[p for p in order if p in rows.index]]
    table = pd.DataFrame({
        "policy": rows.index,
        "return (higher is better)": [f"{v:.2f}" for v in rows["return"]],
        "pain change w12 (NRS)": [f"{v:+.2f}" for v in rows["pain_change_w12"]],
        "dropout (%)": [f"{100 * v:.1f}" for v in rows["dropout_rate"]],
        "flares / patient": [f"{v:.2f}" for v in rows["flares_per_patient"]],
        "safety cost": [f"{v:.2f}" for v in rows["safety_cost"]],
    })
    return markdown_table(table)


def differences_table(diffs: pd.DataFrame) -> str:
    """The paired differences (agent minus each comparator, 95 % CIs) as a markdown table."""
    columns = {"return (agent - protocol)": ("return", 1.0), "pain w12, NRS (agent - protocol)": ("pain_w12", 1.0),
               "flares (agent - protocol)": ("flares", 1.0), "dropout, pp (agent - protocol)": ("dropout", 100.0),
               "composite (agent - protocol)": ("composite", 1.0)}
    table = pd.DataFrame({"comparator": diffs["comparator"], **{
        label: [str(Estimate(*(scale * r))) for r in diffs[[f"{k}_diff", f"{k}_low", f"{k}_high"]].to_numpy()]
        for label, (k, scale) in columns.items()}})
    return markdown_table(table)


def _method(cfg: TrainConfig) -> str:
    if cfg.algo.name == "dagger":
        return f"policy distilled from the `{cfg.algo.teacher}` planner by DAgger (an MLP on the observation)"
    return f"{cfg.algo.name.upper()} policy"


def _budget(result: TrainResult, cfg: TrainConfig) -> str:
    if cfg.algo.name == "dagger":
        k = cfg.algo.kwargs
        return (f"{result.timesteps:,} teacher-labelled patient-weeks of `{cfg.env.split}` patients "
                f"({k.get('rounds')} DAgger rounds x {k.get('episodes')} fresh patients)")
    return (f"{result.timesteps:,} env steps (patient-weeks) on `{cfg.env.split}` patients, {cfg.budget.n_envs} "
            "parallel envs")


def _eval_times(cfg: TrainConfig) -> str:
    return "after every DAgger round" if cfg.algo.name == "dagger" else f"every {cfg.budget.eval_freq:,} steps"


def write_card(result: TrainResult, cfg: TrainConfig, policy_dir: Path) -> Path:
    """Write ``policy_dir/card.md``: what the policy is, how it was trained, and its measured results."""
    manifest = json.loads((policy_dir / "manifest.json").read_text())
    figures = result.run_dir / "figures"
    for png in ("trajectories.png", "load_response.png"):
        if (figures / png).exists():
            shutil.copy2(figures / png, policy_dir / png)
    v = result.val_metrics
    identity = policy_id(manifest, (policy_dir / manifest["weights"]["file"]).read_bytes())
    lines = [
        f"# {manifest['name']} (`{identity[:12]}`)",
        "",
        f"Policy id `{identity}` (sha256 over the canonical manifest and the weights: the id trial reports and "
        f"the clinic print; pin it with `load_policy(dir, expect_id=...)` or `policies=[dir@{identity[:12]}]`); "
        f"weights sha256 `{manifest['weights']['sha256']}`.",
        "",
        f"A {_method(cfg)} for `AdaptRx/{'ProgressionDiscrete' if cfg.env.discrete else 'Progression'}"
        f"-v0` on the **{cfg.env.condition}** prior ({cfg.env.weeks}-week episodes, {cfg.env.modality} exercise"
        f"{', safety shield on' if cfg.env.shield else ''}). Load it with `adaptrx.agents.load_policy(dir)` "
        "(safetensors + manifest.json; no pickle; the weights' sha256 is checked).",
        "",
        "It is a research artefact of a simulator: its advice is only as good as the virtual patient model "
        "(envs/MODEL_CARD.md); it is not a medical device.",
        "",
        "## Training",
        "",
        f"- {_budget(result, cfg)}, seed {cfg.seed}, {result.seconds / 60:.1f} min wall time on "
        f"{os.cpu_count()} CPU core(s) (labelling or training and the val evaluations; the test comparison not "
        "counted).",
        f"- Model selection: mean return under the env's default reward (the headline objective) of "
        f"{cfg.budget.eval_patients} paired `val` patients (eval seed "
        f"{cfg.eval_seed}) {_eval_times(cfg)}; selected step {result.best_step:,}.",
        f"- Config hash `{manifest.get('config_hash', '')[:16]}`; versions: "
        + ", ".join(f"{k} {val}" for k, val in manifest.get("versions", {}).items()),
        "",
        "```yaml",
        OmegaConf.to_yaml(OmegaConf.structured(cfg)).rstrip(),
        "```",
        "",
        "## Validation (selection set)",
        "",
        f"Return {v['return']:.2f}, pain at week 12 {v['pain_w12']:.2f} NRS (change {v['pain_change_w12']:+.2f}), "
        f"responders {100 * v['responder_rate_w12']:.0f} %, flares {v['flares_per_patient']:.2f}/patient, dropout "
        f"{100 * v['dropout_rate']:.0f} %, capacity {v['capacity_change']:+.2f} x baseline.",
        "",
        *([f"Note: {result.decline()}.", ""] if result.decline() else []),
    ]
    if result.test:
        n = result.test["numbers"]
        summary = result.test["summary"].copy()
        lines += [
            f"## Test: paired comparison on {n['test_patients']} test patients",
            "",
            "Never used in training or selection; every policy meets the same patients with the same noise "
            "(common random numbers); intention-to-treat (dropouts keep their simulated no-exercise outcomes). "
            "The headline objective is the episode return under the env's default reward weights (whatever the "
            "run trained on; higher is better); its components follow. Composite (secondary) = mean weekly pain "
            f"(NRS) + flare weeks + {DROPOUT_WEIGHT:g} if dropped out; lower is better. Dropout differences are in "
            "percentage points (pp). Differences are means over patients (agent minus comparator) with "
            "percentile-bootstrap 95 % CIs; the trial reports (experiments/) add p-values, MCIDs and the definitions "
            "of every column.",
            "",
            f"**Headline:** {result.test['headline']}.",
            "",
            f"- Beats every fixed protocol on the return (CI above 0): "
            f"**{'yes' if n['beats_every_fixed_protocol_return'] else 'no'}**; on week-12 pain (CI below 0): "
            f"**{'yes' if n['beats_every_fixed_protocol_pain_w12'] else 'no'}**.",
            f"- Flares per patient {n['flares_per_patient']:.2f} vs pain_monitoring {n['flares_pain_monitoring']:.2f}: "
            f"**{'no more' if n['no_more_flares_than_pain_monitoring'] else 'more'}**.",
            f"- Best fixed protocol on the return: `{n['best_fixed_protocol_by_return']}`.",
            f"- Load follows the patient: Spearman {n['load_envelope_spearman']:.2f} between the mean prescribed "
            "load in weeks 5-16 and the patient's true tolerance envelope (a fixed protocol: 0).",
            "",
            differences_table(result.test["differences"]),
            "",
            "Per policy (means over test patients):",
            "",
            markdown_table(summary),
            "",
        ]
    lines += ["## Figures", ""]
    for png, caption in (("trajectories.png", "Pain and load of four val patients"),
                         ("load_response.png", "Next week's load multiplier vs last week's in-session pain, "
                                               "a typical patient in week 5 (agent and pain_monitoring)")):
        if (policy_dir / png).exists():
            lines += [f"![{caption}]({png})", ""]
    path = policy_dir / "card.md"
    atomic.write_text(path, "\n".join(lines))
    return path
