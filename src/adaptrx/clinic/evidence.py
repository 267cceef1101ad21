"""Which policy the clinic recommends with by default, per condition, and the trial evidence for it.

The shipped trials (``experiments/<condition>_trial/test``, ``make trial``) play every shipped agent and clinical
protocol on the same test patients as ``population_best``. The default for a condition is the policy with the
best mean episode return there (the headline objective) among those the clinic can continue from a patient's log:
the condition's shipped agent, ``population_best`` (the condition's best fixed programme) and the clinical
protocols (not the oracle, which needs the true patient, ``none``, or the belief planner, which is slow and loses
everywhere). ``evidence.json`` (package data, so an installed clinic shows the evidence without the
``experiments`` folder) holds that choice per condition with its paired differences vs the trial's reference and
the trial's id (the sha256 of its ``results.parquet``); ``make trial-report`` rewrites it (:func:`write`) and a
test checks it against the committed trials.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from adaptrx.common import atomic

#: The evidence file inside the package.
EVIDENCE_FILE = "evidence.json"
#: Trial policies the clinic cannot run from a log (see the module docstring).
NOT_RUNNABLE: tuple[str, ...] = ("oracle", "none", "belief_planner")
#: Outcomes whose paired differences the output shows as evidence (the headline objective first).
SHOWN: tuple[str, ...] = ("return", "pain_change_w12", "responder_w12", "function_change", "flares", "dropped_out")
#: The split of the trial the evidence is read from (the training prior's held-out patients).
SPLIT = "test"


def trial_id(run_dir: Path) -> str:
    """A trial's id: the first 16 hex digits of the sha256 of its ``results.parquet`` (its per-patient data)."""
    return hashlib.sha256((Path(run_dir) / "results.parquet").read_bytes()).hexdigest()[:16]


def condition_evidence(run_dir: Path, root: Path) -> dict[str, Any]:
    """The default policy of the trial in ``run_dir`` and its evidence (``root``: the repository, for the
    trial's relative path). Raises ``ValueError`` when no policy of the trial can be run by the clinic."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "trial.json").read_text())
    summary = pd.read_csv(run_dir / "summary.csv")
    differences = pd.read_csv(run_dir / "differences.csv")
    returns = summary[summary["metric"] == "return"].set_index("policy")["mean"]
    runnable = [p for p in meta["policies"] if p["label"] not in NOT_RUNNABLE and p.get("kind") in ("agent", "protocol")
                and p["label"] in returns.index and not p.get("shield")]
    if not runnable:
        raise ValueError(f"{run_dir}: no policy the clinic can run")
    best = max(runnable, key=lambda p: float(returns[p["label"]]))
    reference = str(meta["config"]["stats"]["reference"])
    agents = [p for p in runnable if p.get("kind") == "agent"]
    # the differences shown: the default's vs the reference, or, when the reference itself is the default, the
    # best agent's (the evidence that no agent beat it)
    compared = best if best["label"] != reference or not agents else max(
        agents, key=lambda p: float(returns[p["label"]]))
    rows = differences[differences["policy"] == compared["label"]].set_index("metric")
    shown = {m: {"diff": float(r["diff"]), "low": float(r["low"]), "high": float(r["high"]),
                 "p_holm": float(r["p_holm"]), "clinical": "" if pd.isna(r["clinical"]) else str(r["clinical"])}
             for m, r in rows.iterrows() if m in SHOWN}
    ret = shown.get("return")
    beats = bool(ret is not None and ret["low"] > 0 and ret["p_holm"] < 0.05)
    return {
        "policy": best["label"], "kind": best["kind"], "target": best["target"], "policy_id": best.get("policy_id"),
        "trial": run_dir.resolve().relative_to(Path(root).resolve()).as_posix(), "trial_id": trial_id(run_dir),
        "patients": int(summary["n"].max()), "reference": reference,
        "is_reference": best["label"] == reference,
        "beats_reference": None if best["label"] == reference else beats,
        "mean_return": float(returns[best["label"]]), "reference_mean_return": float(returns[reference]),
        "compared": compared["label"], "compared_mean_return": float(returns[compared["label"]]),
        "differences": {m: shown[m] for m in SHOWN if m in shown},
    }


def build(root: Path) -> dict[str, dict[str, Any]]:
    """The evidence of every committed trial under ``root/experiments`` (condition -> entry), sorted."""
    out = {}
    for run_dir in sorted(Path(root).glob(f"experiments/*_trial/{SPLIT}")):
        condition = json.loads((run_dir / "trial.json").read_text())["config"]["cohort"]["condition"]
        out[str(condition)] = condition_evidence(run_dir, root)
    return dict(sorted(out.items()))


def load() -> dict[str, dict[str, Any]]:
    """The packaged evidence (condition -> entry; empty if the file is missing)."""
    path = resources.files("adaptrx.clinic").joinpath(EVIDENCE_FILE)
    return json.loads(path.read_text()) if path.is_file() else {}


def write(root: Path) -> Path:
    """Rewrite the packaged ``evidence.json`` from the committed trials under ``root``; returns its path."""
    path = Path(__file__).with_name(EVIDENCE_FILE)
    atomic.write_text(path, json.dumps(build(root), indent=2, sort_keys=True) + "\n")
    return path


def difference(entry: dict[str, Any], metric: str) -> str:
    """``entry``'s paired difference on ``metric`` as the trial reports print it: ``+0.51 [+0.35, +0.67]``,
    rates in pp (``experiments.trial.report.interval``'s format; not imported from there, which would bring
    scipy.stats into the clinic's start-up)."""
    r = entry["differences"][metric]
    scale, unit, k = (100.0, " pp", 1) if metric in ("responder_w12", "dropped_out") else (1.0, "", 2)
    return f"{scale * r['diff']:+.{k}f} [{scale * r['low']:+.{k}f}, {scale * r['high']:+.{k}f}]{unit}"


def describe(entry: dict[str, Any]) -> str:
    """One sentence: why this policy is the default, and how it compares with the trial's reference."""
    parts = [f"{metric} {difference(entry, metric)}" for metric in SHOWN if metric in entry["differences"]]
    head = (f"{entry['policy']} has the best episode return ({entry['mean_return']:.2f}) of the policies the clinic "
            f"can run in the shipped trial {entry['trial']} (trial id {entry['trial_id']}, {entry['patients']} test "
            "patients)")
    if entry["is_reference"]:
        return (head + f"; it is the trial's reference, the best fixed programme; the shipped agent "
                f"{entry['compared']} ({entry['compared_mean_return']:.2f}) minus it (95 % CI): " + "; ".join(parts))
    verdict = "beats" if entry["beats_reference"] else "does NOT beat"
    return (head + f"; it {verdict} {entry['reference']} ({entry['reference_mean_return']:.2f}): "
            f"differences vs {entry['reference']} (95 % CI): " + "; ".join(parts))

