"""The protocol baseline: every clinical protocol, ``population_best`` and the oracle on ``val`` patients.

A paired virtual trial (:class:`~adaptrx.envs.episodes.CohortEpisodes`): every policy meets the same
``val`` patients with the same noise. Writes into ``--out`` (default ``experiments/protocols_baseline``):

* ``results.parquet``: the tidy per-(policy, patient) table (``DESIGN.md`` section 7 columns);
* ``summary.csv`` / ``summary.md``: per-policy outcomes with bootstrap 95 % CIs;
* ``pain_trajectories.png`` and ``safety.png``: weekly mean pain per policy; flares, dropout, responders;
* ``oracle_sensitivity.md``: the oracle with more replicates and a clairvoyant oracle vs ``population_best``;
* ``run.json``: the command, settings, the stored ``population_best`` and the wall time.

The findings are written by hand in the folder's ``README.md`` (the script never overwrites it).

Run: ``python -m adaptrx.experiments.trial.protocols_baseline`` (about two minutes on two cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from adaptrx.envs.episodes import EpisodeOutcomes
from adaptrx.experiments.stats import Estimate, bootstrap_mean
from adaptrx.experiments.trial.comparison import (
    PairedComparison,
    planner_arm,
    protocol_arm,
    run_comparison,
    tidy_table,
)
from adaptrx.experiments.trial.report import markdown_table as _markdown_table
from adaptrx.patient import make_cohort
from adaptrx.protocols.clinical import PROTOCOLS
from adaptrx.protocols.population_best import stored_results

REFERENCE = "population_best"
#: Split of the baseline's patients.
SPLIT = "val"


def run_trial(condition: str = "knee_oa", n: int = 1000, seed: int = 0, weeks: int = 26,
              oracle: dict[str, Any] | None = None, policies: list[str] | None = None,
              progress: bool = True) -> PairedComparison:
    """Run the policies (default: every clinical protocol, ``population_best`` and ``oracle``) on ``n`` val
    patients of ``condition`` (cohort and noise seed ``seed``, ``weeks``-week episodes) through the shared
    comparison path; ``oracle``: planner parameters (``None``: the defaults)."""
    names = policies if policies is not None else [*PROTOCOLS, REFERENCE, "oracle"]
    arms = [planner_arm("oracle", **(oracle or {})) if name == "oracle" else protocol_arm(name, condition)
            for name in names]
    cohort = make_cohort(condition, n, seed, SPLIT)
    with tqdm(total=len(arms) * weeks, desc="protocols x weeks", disable=not progress) as bar:
        return run_comparison(cohort, seed, arms, {"condition": condition, "split": SPLIT, "weeks": weeks},
                              progress=bar.update)


def _paired(trial: PairedComparison, metrics: list[str], seed: int) -> dict[tuple[str, str], Estimate]:
    """(policy, metric) -> paired mean difference vs the reference with its bootstrap 95 % CI (the reference
    itself: exactly 0); empty if the trial has no reference arm."""
    if REFERENCE not in trial.outcomes:
        return {}
    table = trial.differences(REFERENCE, metrics, seed=seed)
    out = {(r.policy, r.metric): Estimate(r.diff, r.low, r.high) for r in table.itertuples()}
    return out | {(REFERENCE, m): Estimate(0.0, 0.0, 0.0) for m in metrics}


def summarize(trial: PairedComparison, seed: int = 0) -> pd.DataFrame:
    """Per policy: pain change at weeks 12 and 26 and mean weekly pain (with CIs), responders, flares (mean
    with CI, the most any patient had, the share above 13 in the episode), dropout (overall and among the
    patients with 6 or more flares), safety cost, supervised sessions, return; and the paired differences of
    mean pain and return against the reference."""
    rows = []
    paired = _paired(trial, ["pain_mean", "return"], seed)
    for name, out in trial.outcomes.items():
        row: dict[str, Any] = {"policy": name}
        for w in (12, 26):
            if w <= out.weeks:
                row[f"pain_change_w{w}"] = bootstrap_mean(out.pain_at(w) - out.baseline_pain, seed=seed)
        row["pain_mean"] = bootstrap_mean(out.pain.mean(axis=0), seed=seed)
        frame = out.to_frame()
        row["responders_pct"] = 100.0 * frame["responder"].mean()
        flares = frame["flares"].to_numpy(float)
        row["flares_per_patient"] = bootstrap_mean(flares, seed=seed)
        row["flares_max"] = flares.max()
        row["flares_over_13_pct"] = 100.0 * (flares > 13).mean()
        row["dropout_pct"] = 100.0 * frame["dropped_out"].mean()
        many = flares >= 6
        row["patients_6plus_flares"] = int(many.sum())
        row["dropout_6plus_flares_pct"] = 100.0 * frame["dropped_out"][many].mean() if many.any() else float("nan")
        row["cost"] = bootstrap_mean(out.cost, seed=seed)
        row["supervised_sessions"] = frame["supervised_sessions"].mean()
        row["sessions_attended"] = frame["sessions_attended"].mean()
        row["function_change"] = frame["function_change"].mean()
        row["return"] = bootstrap_mean(out.returns, seed=seed)
        if paired:
            row["pain_mean_vs_reference"] = paired[(name, "pain_mean")]
            row["return_vs_reference"] = paired[(name, "return")]
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(summary: pd.DataFrame) -> str:
    """The summary as a markdown table (estimates with their 95 % CIs)."""
    return _markdown_table(summary, digits=2)


#: Oracle variants of the sensitivity analysis: label -> planner parameters.
ORACLE_VARIANTS: dict[str, dict[str, Any]] = {
    "oracle (4 replicates, default)": {},
    "oracle (16 replicates)": {"replicates": 16},
    "clairvoyant oracle (knows the future noise)": {"clairvoyant": True, "replicates": 1},
}


def oracle_sensitivity(condition: str = "knee_oa", n: int = 300, seed: int = 0, weeks: int = 26,
                       progress: bool = True) -> pd.DataFrame:
    """Is a small oracle gap the planner's fault or the model's? The oracle with more noise replicates and a
    clairvoyant oracle (plans on the patient's own future noise, an unreachable bound) against
    ``population_best`` on ``n`` val patients (paired): differences with bootstrap 95 % CIs."""
    arms = [protocol_arm(REFERENCE, condition),
            *(planner_arm("oracle", name=label, **params) for label, params in ORACLE_VARIANTS.items())]
    cohort = make_cohort(condition, n, seed, SPLIT)
    with tqdm(total=len(arms) * weeks, desc="oracle variants x weeks", disable=not progress) as bar:
        trial = run_comparison(cohort, seed, arms, {"condition": condition, "split": SPLIT, "weeks": weeks},
                               progress=bar.update)
    paired = _paired(trial, ["return", "pain_mean", "function_change"], seed)
    ref = trial.outcomes[REFERENCE]
    ref_harm = ref.flares.sum(axis=0) + (ref.dropout_week > 0)
    rows = []
    for label in ORACLE_VARIANTS:
        out = trial.outcomes[label]
        harm = out.flares.sum(axis=0) + (out.dropout_week > 0)
        rows.append({
            "variant": label,
            "return_gain": paired[(label, "return")],
            "pain_mean_change": paired[(label, "pain_mean")],
            "flares_plus_dropout_change_pct": 100.0 * (harm.mean() - ref_harm.mean()) / ref_harm.mean(),
            "function_gain": paired[(label, "function_change")],
            "dropout_pct": 100.0 * (out.dropout_week > 0).mean(),
            "reference_dropout_pct": 100.0 * (ref.dropout_week > 0).mean(),
            "supervised_sessions": float((out.sessions_attended * out.supervised).sum(axis=0).mean()),
        })
    return pd.DataFrame(rows)


def plot(results: dict[str, EpisodeOutcomes], out_dir: Path) -> list[Path]:
    """Weekly mean pain per policy (with 95 % bands) and a safety panel; returns the PNG paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(results)
    colors = colormaps["tab20"](np.linspace(0, 1, max(len(names), 2)))
    fig = Figure(figsize=(10, 6))
    ax = fig.subplots()
    for color, name in zip(colors, names, strict=True):
        out = results[name]
        weeks = np.arange(0, out.weeks + 1)
        pain = np.vstack([out.baseline_pain, out.pain])
        mean = pain.mean(axis=1)
        half = 1.96 * pain.std(axis=1, ddof=1) / np.sqrt(out.n)
        style = "-" if name not in ("oracle", REFERENCE) else ("--" if name == REFERENCE else "-.")
        width = 2.5 if name in ("oracle", REFERENCE) else 1.2
        ax.plot(weeks, mean, style, color=color, lw=width, label=name)
        ax.fill_between(weeks, mean - half, mean + half, color=color, alpha=0.12)
    ax.set_xlabel("week")
    ax.set_ylabel("mean daily pain (NRS 0-10), intention to treat")
    ax.set_title(f"Protocols on {results[names[0]].n} val patients (paired, same noise)")
    ax.legend(ncol=2, fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    trajectories = out_dir / "pain_trajectories.png"
    fig.savefig(trajectories, dpi=120)

    fig = Figure(figsize=(14, 5))
    axes = fig.subplots(1, 3, sharey=True)
    y = np.arange(len(names))
    panels = (
        ("flares per patient", lambda o: o.flares.sum(axis=0)),
        ("dropout (%)", lambda o: 100.0 * (o.dropout_week > 0)),
        ("responders at the last week (%)", lambda o: 100.0 * o.responders(o.weeks)),
    )
    for ax, (title, metric) in zip(axes, panels, strict=True):
        values = [metric(results[name]).astype(float) for name in names]
        means = np.array([v.mean() for v in values])
        errs = np.array([1.96 * v.std(ddof=1) / np.sqrt(len(v)) for v in values])
        ax.barh(y, means, xerr=errs, color=colors[: len(names)])
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    fig.tight_layout()
    safety = out_dir / "safety.png"
    fig.savefig(safety, dpi=120)
    return [trajectories, safety]


def main(argv: list[str] | None = None) -> int:
    """Run the baseline trial and write the report."""
    parser = argparse.ArgumentParser(description="All protocols + population_best + oracle on val patients")
    parser.add_argument("--condition", default="knee_oa")
    parser.add_argument("--n", type=int, default=1000, help="val patients (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--out", default="experiments/protocols_baseline")
    parser.add_argument("--no-oracle", action="store_true", help="skip the (slowest) oracle arm")
    parser.add_argument("--sensitivity-n", type=int, default=300,
                        help="val patients of the oracle sensitivity analysis (0 skips it)")
    args = parser.parse_args(argv)
    if args.n < 10:
        parser.error("--n: need at least 10 patients")
    started = time.perf_counter()
    policies = [*PROTOCOLS, REFERENCE] + ([] if args.no_oracle else ["oracle"])
    trial = run_trial(args.condition, args.n, args.seed, args.weeks, policies=policies)
    elapsed = time.perf_counter() - started
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tidy_table(list(trial.outcomes.values())).to_parquet(out_dir / "results.parquet", index=False)
    summary = summarize(trial, seed=args.seed)
    flat = summary.map(lambda v: v.value if isinstance(v, Estimate) else v)
    flat.to_csv(out_dir / "summary.csv", index=False, float_format="%.4f")
    (out_dir / "summary.md").write_text(markdown_table(summary) + "\n")
    plot(trial.outcomes, out_dir)
    meta = {
        "command": "python -m adaptrx.experiments.trial.protocols_baseline " + " ".join(sys.argv[1:] if argv is None
                                                                                 else argv),
        "condition": args.condition, "n": args.n, "seed": args.seed, "weeks": args.weeks, "split": SPLIT,
        "population_best": stored_results().get(args.condition), "wall_seconds": round(elapsed, 1),
    }
    (out_dir / "run.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    print(markdown_table(summary))
    if args.sensitivity_n > 0 and not args.no_oracle:
        sensitivity = oracle_sensitivity(args.condition, args.sensitivity_n, args.seed, args.weeks)
        (out_dir / "oracle_sensitivity.md").write_text(markdown_table(sensitivity) + "\n")
        print(markdown_table(sensitivity))
    print(f"wrote {out_dir} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
