"""Benchmark of the clinic (``adaptrx.clinic``): ``recommend()`` latency for a 12-week history.

* ``recommend_12_weeks``: wall time of :func:`adaptrx.clinic.recommend` with its defaults (the shipped policy,
  4000 particles, 12-week forecast under three plans) on 12-week histories of 20 different virtual knee-OA
  patients (pain-monitoring model, supervised). Target: p95 under 1 s. Measured side by side: the fit alone
  (particle filter), so the forecast's share is the rest.

``--quick`` uses 5 patients.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from adaptrx import protocols
from adaptrx.clinic.fitting import fit_patient
from adaptrx.clinic.history import parse_history
from adaptrx.clinic.recommend import recommend
from adaptrx.clinic.synthetic import simulate_history
from adaptrx.patient import make_cohort

NAME = "clinic"
TARGET_P95_S = 1.0


def histories(n: int, weeks: int = 12) -> list[Any]:
    """``n`` validated 12-week histories of virtual knee-OA patients (dropouts skipped)."""
    cohort = make_cohort("knee_oa", 4 * n, seed=99, split="test")
    out = []
    for i, row in cohort.iterrows():
        doc, batch = simulate_history(row.to_dict(), protocols.get("pain_monitoring", delivery="supervised"), weeks,
                                      seed=int(i))
        if not bool(batch.sim.state.dropped_out[0]):
            out.append(parse_history(doc))
        if len(out) == n:
            break
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    logs = histories(5 if quick else 20)
    recommend(logs[0])  # warm-up: numba kernels, torch, imports
    total, fit = [], []
    for h in logs:
        t0 = time.perf_counter()
        fit_patient(h)
        fit.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        recommend(h)
        total.append(time.perf_counter() - t0)
    p50, p95 = np.percentile(total, [50, 95])
    return [
        {"benchmark": "recommend_12_weeks", "metric": f"p50 over {len(logs)} patients", "value": float(p50),
         "unit": "s"},
        {"benchmark": "recommend_12_weeks", "metric": "p95 (fit + observation + policy + 3-plan forecast)",
         "value": float(p95), "unit": "s", "target": TARGET_P95_S, "ratio": float(p95) / TARGET_P95_S},
        {"benchmark": "recommend_12_weeks", "metric": "fit share (particle filter, 4000 particles)",
         "value": float(np.sum(fit) / np.sum(total)), "unit": "fraction"},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
