"""``adaptrx-trial-gather``: one table and one report for a whole ``adaptrx-trial -m`` sweep.

Reads every ``results.parquet`` (and ``weekly.parquet``) under a sweep directory, stacks them, drops the
duplicate rows of policies that several jobs ran on the same patient-episodes (typically the reference, which
every job includes), and writes the statistics, figures, TensorBoard runs and ``report.md`` of the whole, as a
single trial would, into ``<sweep>/gathered`` (or ``--out``). Bootstrap strata are condition x seed, so a sweep
over conditions and seeds is analysed as one stratified paired trial.

    adaptrx-trial-gather outputs/trial/multirun/2026-11-25_10-00-00 [--out DIR] [--reference NAME]

``adaptrx-trial-report RUN_DIR [RUN_DIR ...]`` re-analyses finished trials in place (today's statistics, figures,
TensorBoard runs and report from their stored ``results.parquet`` and ``trial.json``; nothing is simulated):
``make trial-report`` refreshes the committed reports after a change of the analysis.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from adaptrx.experiments.trial.analysis import KEYS, mcids
from adaptrx.experiments.trial.app import analyse, reanalyse, write_tables

GATHERED = "gathered"


def collect(sweep_dir: Path, exclude: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None, list[dict]]:
    """Stack the results (and weekly tables) of every trial run under ``sweep_dir``; returns
    ``(results, weekly or None, trial.json contents)``. Raises ``ValueError`` if there is none."""
    sweep_dir = Path(sweep_dir)
    runs = sorted(p.parent for p in sweep_dir.rglob("results.parquet")
                  if exclude is None or exclude not in p.parents)
    if not runs:
        raise ValueError(f"sweep_dir: no results.parquet under {sweep_dir}")
    results = pd.concat([pd.read_parquet(r / "results.parquet") for r in runs], ignore_index=True)
    results = results.drop_duplicates(["policy", *KEYS], keep="first").reset_index(drop=True)
    weekly_files = [r / "weekly.parquet" for r in runs if (r / "weekly.parquet").is_file()]
    weekly = None
    if len(weekly_files) == len(runs):
        weekly = pd.concat([pd.read_parquet(f) for f in weekly_files], ignore_index=True)
        weekly = weekly.drop_duplicates(["policy", *KEYS, "week"], keep="first").reset_index(drop=True)
    meta = [json.loads((r / "trial.json").read_text()) for r in runs if (r / "trial.json").is_file()]
    return results, weekly, meta


def gather(sweep_dir: str | Path, out_dir: str | Path | None = None, reference: str | None = None,
           n_boot: int = 2000, level: float = 0.95) -> Path:
    """Analyse a sweep as one trial into ``out_dir`` (default ``<sweep_dir>/gathered``); returns it."""
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / GATHERED
    start = time.perf_counter()
    results, weekly, meta = collect(sweep_dir, exclude=out)
    if reference is None:
        refs = {m["config"]["stats"]["reference"] for m in meta}
        if len(refs) != 1:
            raise ValueError(f"reference: the runs used {sorted(refs) or 'no'} references; pass --reference")
        reference = refs.pop()
    out.mkdir(parents=True, exist_ok=True)
    write_tables(out, results, weekly)
    policies: dict[str, dict] = {}
    for m in meta:
        for p in m.get("policies", []):
            policies.setdefault(p["label"], p)
    commands = [m.get("command", "") for m in meta]
    config = {"sweep_dir": str(sweep_dir), "runs": len(meta), "reference": reference, "n_boot": n_boot,
              "level": level, "weeks": meta[0]["config"].get("weeks") if meta else None, "commands": commands}
    stored = [json.dumps(m["config"]["stats"].get("mcid"), sort_keys=True) for m in meta]
    if len(set(stored)) > 1:
        raise ValueError("stats.mcid: the runs declared different MCIDs; gather runs of one analysis plan")
    mcid = mcids(meta[0]["config"]["stats"].get("mcid") if meta else None)
    safety = {m["config"]["stats"].get("safety_reference") for m in meta}
    analyse(results, weekly, out, reference=reference, n_boot=n_boot, level=level, seed=0, mcid=mcid,
            safety_reference=safety.pop() if len(safety) == 1 else None,
            subgroup_metric="pain_change_w12", figures=True, tensorboard=True, report=True,
            policies=list(policies.values()) or [{"label": p} for p in dict.fromkeys(results["policy"])],
            command=f"adaptrx-trial-gather {sweep_dir}", config=config,
            seconds=time.perf_counter() - start, title=f"Sweep {sweep_dir.name}: {len(meta)} trial runs gathered")
    return out


def main(argv: list[str] | None = None) -> None:
    """Console entry point; a bad argument exits with code 2 and one line."""
    parser = argparse.ArgumentParser(prog="adaptrx-trial-gather", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory of adaptrx-trial")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: <sweep_dir>/gathered)")
    parser.add_argument("--reference", default=None, help="reference policy (default: the runs' stats.reference)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (100-100000)")
    args = parser.parse_args(argv)
    if not 100 <= args.n_boot <= 100_000:
        parser.error(f"--n-boot: must be 100-100000, got {args.n_boot}")
    try:
        out = gather(args.sweep_dir, args.out, args.reference, args.n_boot)
    except ValueError as exc:
        print(f"adaptrx-trial-gather: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"gathered into {out} (report.md, results.parquet, summary.csv, differences.csv)")


def report_main(argv: list[str] | None = None) -> None:
    """Console entry point of ``adaptrx-trial-report``; a bad argument exits with code 2 and one line."""
    parser = argparse.ArgumentParser(prog="adaptrx-trial-report",
                                     description="re-analyse finished adaptrx-trial runs in place (no simulation)")
    parser.add_argument("run_dirs", type=Path, nargs="+", help="run directories (trial.json, results.parquet)")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        try:
            out = reanalyse(run_dir)
        except ValueError as exc:  # ConfigError included
            print(f"adaptrx-trial-report: error: {exc}", file=sys.stderr)
            sys.exit(2)
        print(f"re-analysed {out.out_dir} (report.md, summary.csv, differences.csv, subgroups.csv, figures, tb)")


if __name__ == "__main__":
    main()
