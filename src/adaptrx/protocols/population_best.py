"""``population_best``: the single fixed protocol that does best on the ``train`` cohort.

The one-size-fits-all reference of ``DESIGN.md`` section 5. :func:`search` runs every candidate of
:func:`candidate_grid` (protocol families x their parameters: loads, progression rates, pain and RPE
thresholds, sessions per week, delivery) on the same ``train`` patients with the same noise (a paired
:class:`~adaptrx.envs.episodes.CohortEpisodes`), ranks them by mean episode return (the env's reward,
the objective the oracle and RL agents optimise) and keeps the best. The result is stored per condition
in ``population_best.json`` next to this module, so ``adaptrx.protocols.get("population_best")`` needs no
search at run time; regenerate it with::

    python -m adaptrx.protocols.population_best --condition knee_oa --n 1000

The gap between the oracle and this protocol on ``val`` patients is the value of personalization.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from adaptrx.envs.episodes import CohortEpisodes
from adaptrx.patient import make_cohort
from adaptrx.protocols.clinical import make

RESULTS_FILE = "population_best.json"
_DELIVERIES = ("home", "remote", "supervised")


@dataclass(frozen=True)
class Candidate:
    """A protocol family and one parameter setting."""

    protocol: str
    params: dict[str, Any]

    @property
    def label(self) -> str:
        return self.protocol + "(" + ", ".join(f"{k}={v}" for k, v in self.params.items()) + ")"


def candidate_grid() -> list[Candidate]:
    """The searched protocols and parameters (every family a fixed programme can come from)."""
    grid: list[Candidate] = [Candidate("none", {})]

    def add(protocol: str, **axes: tuple[Any, ...]) -> None:
        names = list(axes)
        for values in itertools.product(*(axes[k] for k in names)):
            grid.append(Candidate(protocol, dict(zip(names, values, strict=True))))

    sessions, deliveries = (2, 3, 4, 5), _DELIVERIES
    add("constant", load=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8), sessions=sessions, delivery=deliveries)
    add("linear", increase=(0.02, 0.05, 0.10), cap=(0.6, 0.8, 1.0), sessions=sessions, delivery=deliveries)
    add("acsm", increase=(0.02, 0.05, 0.10), rpe_target=(5.0, 6.0, 7.0), sessions=sessions, delivery=deliveries)
    add("pain_monitoring", progress=(0.05, 0.10), progress_pain=(2.0, 4.0), hold_pain=(5.0, 7.0), sessions=sessions,
        delivery=deliveries)
    add("rpe_autoregulation", rpe_low=(3.0, 4.0, 5.0), rpe_high=(6.0, 7.0), sessions=sessions, delivery=deliveries)
    add("graded_activity", increment=(0.02, 0.05), sessions=sessions, delivery=deliveries)
    add("start_low", sessions=sessions, delivery=deliveries)
    add("start_high", sessions=sessions, delivery=deliveries)
    add("glad", home_sessions=(2, 3, 4))
    return grid


def search(
    condition: str = "knee_oa",
    n: int = 1000,
    seed: int = 0,
    weeks: int = 26,
    candidates: list[Candidate] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Run every candidate on ``n`` train patients (paired) and return one row per candidate, best first:
    ``protocol, params, label, return_mean, return_se, pain_mean, flares, dropout``."""
    candidates = candidate_grid() if candidates is None else candidates
    cohort = make_cohort(condition, n, seed, "train")
    episodes = CohortEpisodes(cohort, seed=seed, condition=condition, split="train", weeks=weeks)
    rows = []
    for c in tqdm(candidates, desc=f"population_best search ({condition})", disable=not progress):
        out = episodes.run(make(c.protocol, **c.params), name=c.label)
        rows.append({
            "protocol": c.protocol, "params": c.params, "label": c.label,
            "return_mean": float(out.returns.mean()),
            "return_se": float(out.returns.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "pain_mean": float(out.pain.mean()), "flares": float(out.flares.sum(axis=0).mean()),
            "dropout": float((out.dropout_week > 0).mean()),
        })
    return pd.DataFrame(rows).sort_values("return_mean", ascending=False, kind="stable").reset_index(drop=True)


def _results_path() -> Path:
    return Path(str(resources.files("adaptrx.protocols") / RESULTS_FILE))


def stored_results() -> dict[str, Any]:
    """The stored search results: condition -> ``{"protocol", "params", ...}``."""
    path = _results_path()
    return json.loads(path.read_text()) if path.exists() else {}


def best_protocol(condition: str = "knee_oa") -> tuple[str, dict[str, Any]]:
    """The stored population-best ``(protocol name, parameters)`` of ``condition``."""
    results = stored_results()
    if condition not in results:
        raise ValueError(f"condition: no population_best search stored for {condition!r} "
                         f"(have {sorted(results)}); run python -m adaptrx.protocols.population_best "
                         f"--condition {condition}")
    entry = results[condition]
    return entry["protocol"], dict(entry["params"])


def main(argv: list[str] | None = None) -> int:
    """Search and store the population-best protocol of a condition."""
    parser = argparse.ArgumentParser(description="Search the single best fixed protocol on the train cohort")
    parser.add_argument("--condition", default="knee_oa")
    parser.add_argument("--n", type=int, default=1000, help="train patients (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weeks", type=int, default=26)
    parser.add_argument("--top", type=int, default=15, help="rows of the ranking to print")
    args = parser.parse_args(argv)
    if args.n < 10:
        parser.error("--n: need at least 10 patients")
    table = search(args.condition, args.n, args.seed, args.weeks, progress=True)
    print(table.drop(columns=["params"]).head(args.top).to_string(index=False))
    best = table.iloc[0]
    results = stored_results()
    results[args.condition] = {
        "protocol": best["protocol"], "params": best["params"], "label": best["label"],
        "train_return": round(float(best["return_mean"]), 4), "runner_up": table.iloc[1]["label"],
        "runner_up_return": round(float(table.iloc[1]["return_mean"]), 4),
        "candidates": len(table), "n": args.n, "seed": args.seed, "weeks": args.weeks,
    }
    _results_path().write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"population_best[{args.condition}] = {best['label']} (stored in {_results_path()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
