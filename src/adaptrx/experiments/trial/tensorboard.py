"""TensorBoard output of a trial: one run per policy in the HParams dashboard, and the figures as images.

``tb/<policy>/``: the policy's description as hyperparameters (kind, shield, condition, split, agent
algorithm) and its mean outcomes as metrics (``trial/<metric>``), so agents and protocols sit side by side in
the HParams table and parallel-coordinates view; ``tb/figures/``: the report's figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

#: Outcomes written as HParams metrics (means over patient-episodes).
HPARAM_METRICS: tuple[str, ...] = ("pain_change_w12", "pain_w12", "responder_w12", "flares", "dropped_out",
                                   "function_change", "capacity_change", "cost", "composite", "return")


def write_tensorboard(log_dir: Path, summary: pd.DataFrame, policies: Sequence[Mapping[str, Any]],
                      context: Mapping[str, Any], figures: Mapping[str, Figure] | None = None) -> list[Path]:
    """Write the runs; returns their directories. ``context`` (condition, split, seeds, ...) goes into every
    policy's hyperparameters."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    log_dir = Path(log_dir)
    means = summary.pivot_table(index="policy", columns="metric", values="mean", sort=False)
    dirs = []
    for info in policies:
        label = str(info["label"])
        metrics = {f"trial/{m}": float(means.loc[label, m]) for m in HPARAM_METRICS
                   if m in means.columns and label in means.index}
        hp: dict[str, Any] = {"policy": label, "kind": str(info.get("kind", "")), "shield": bool(info.get("shield")),
                              "algorithm": str(info.get("algorithm") or "")}
        hp.update({k: v if isinstance(v, int | float | bool) else str(v) for k, v in context.items()})
        run = log_dir / label
        writer = SummaryWriter(log_dir=str(run))
        for summary_proto in hparams(hp, metrics):
            writer.file_writer.add_summary(summary_proto)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, 0)
        writer.close()
        dirs.append(run)
    if figures:
        writer = SummaryWriter(log_dir=str(log_dir / "figures"))
        for name, fig in figures.items():
            writer.add_figure(f"trial/{name}", fig, 0, close=False)
        writer.close()
        dirs.append(log_dir / "figures")
    return dirs
