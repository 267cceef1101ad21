"""Markdown for the trial reports: tables of estimates with CIs, automatic findings, the report itself.

:func:`markdown_table` is the one table writer of the experiments (the policy card and the protocol baseline
use it too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adaptrx import atomic
from adaptrx.experiments.stats import Estimate
from adaptrx.experiments.trial_analysis import METRICS

#: Metrics shown as percentages (0/1 outcomes).
RATES: tuple[str, ...] = ("responder_w12", "dropped_out")


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, Estimate):
        return f"{value.value:.{digits}f} [{value.low:.{digits}f}, {value.high:.{digits}f}]"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, digits: int = 2) -> str:
    """``frame`` as a GitHub markdown table; floats and :class:`~adaptrx.experiments.stats.Estimate` cells
    (``value [low, high]``) with ``digits`` decimals, booleans as yes/no, other cells with ``str``."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, digits) for v in row) + " |")
    return "\n".join(lines)


def interval(value: float, low: float, high: float, metric: str = "", signed: bool = False) -> str:
    """``value [low, high]``, as % for rate metrics, signed (``+0.12``) for differences."""
    scale, unit, digits = (100.0, " %", 1) if metric in RATES else (1.0, "", 2)
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{fmt.format(scale * value)} [{fmt.format(scale * low)}, {fmt.format(scale * high)}]{unit}"


def p_value(p: float) -> str:
    """A p-value as the tables print it (``<0.001`` below one in a thousand)."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def summary_table(summary: pd.DataFrame, metrics: Sequence[str], statistic: str = "mean") -> str:
    """Policies x metrics, each cell ``statistic [CI]`` (``statistic``: ``mean`` or ``iqm``)."""
    present = [m for m in metrics if m in set(summary["metric"])]
    rows = []
    for policy, frame in summary.groupby("policy", sort=False):
        by = frame.set_index("metric")
        row = {"policy": policy}
        for m in present:
            if m in by.index:
                r = by.loc[m]
                row[m] = interval(r[statistic], r[f"{statistic}_low"], r[f"{statistic}_high"], m)
        rows.append(row)
    return markdown_table(pd.DataFrame(rows))


def differences_table(differences: pd.DataFrame, metrics: Sequence[str] | None = None) -> str:
    """One row per (policy, metric): paired difference [CI], Holm p, probability of improvement [CI]."""
    d = differences if metrics is None else differences[differences["metric"].isin(metrics)]
    table = pd.DataFrame({
        "policy": d["policy"],
        "metric": d["metric"],
        f"difference vs {d['reference'].iloc[0] if len(d) else ''}": [
            interval(r.diff, r.low, r.high, r.metric, signed=True) for r in d.itertuples()],
        "Holm p": [p_value(p) for p in d["p_holm"]],
        "P(improvement)": [interval(r.poi, r.poi_low, r.poi_high) for r in d.itertuples()],
    })
    return markdown_table(table)


def significant(row: Any, alpha: float = 0.05) -> int:
    """+1 if the paired difference is better than the reference (CI excludes 0, Holm p < ``alpha``), -1 if
    worse, 0 if neither."""
    if row.p_holm >= alpha or row.low <= 0.0 <= row.high:
        return 0
    better = row.diff < 0 if row.lower_is_better else row.diff > 0
    return 1 if better else -1


def findings(summary: pd.DataFrame, differences: pd.DataFrame, reference: str) -> list[str]:
    """Plain sentences read off the numbers: the best policy per primary outcome, and per policy what is
    better or worse than the reference (Holm-adjusted, alpha 0.05)."""
    lines = []
    means = summary.pivot_table(index="policy", columns="metric", values="mean", sort=False)
    if "return" in means:
        best = means["return"].idxmax()
        lines.append(f"Headline objective (episode return under the env's default reward): best `{best}` "
                     f"({means.loc[best, 'return']:.2f} per patient); its components follow.")
    for metric in ("pain_change_w12", "function_change", "flares", "dropped_out", "cost", "composite"):
        if metric in means:
            lower = METRICS[metric][1]
            best = means[metric].idxmin() if lower else means[metric].idxmax()
            value = means.loc[best, metric] * (100 if metric in RATES else 1)
            lines.append(f"Best on {METRICS[metric][0]}: `{best}` ({value:.2f}{' %' if metric in RATES else ''}).")
    for policy, frame in differences.groupby("policy", sort=False):
        verdict = {1: [], -1: []}
        for row in frame.itertuples():
            s = significant(row)
            if s:
                verdict[s].append(f"{row.metric} {interval(row.diff, row.low, row.high, row.metric, signed=True)}")
        better = "; ".join(verdict[1]) or "nothing"
        worse = "; ".join(verdict[-1]) or "nothing"
        lines.append(f"`{policy}` vs `{reference}`: better on {better}; worse on {worse}.")
    return lines


def write_report(path: Path, *, title: str, command: str, config_yaml: str, policies: Sequence[Mapping[str, Any]],
                 summary: pd.DataFrame, differences: pd.DataFrame, subgroup_table: pd.DataFrame | None,
                 figures: Mapping[str, str], facts: Mapping[str, Any], reference: str) -> Path:
    """Write the trial's ``report.md``: how it was produced, findings, tables and the embedded figures
    (``figures``: file name relative to the report -> caption)."""
    n = facts.get("patients")
    lines = [
        f"# {title}",
        "",
        f"Paired in-silico trial on the virtual patients of adaptrx: {n} patient-episodes per policy "
        f"({facts.get('condition')}, `{facts.get('split')}` split, seeds {facts.get('seeds')}, "
        f"{facts.get('weeks')} weeks). Every policy met the same patients with the same random streams; dropouts "
        "were followed to the horizon without exercise (intention to treat). Intervals are stratified "
        f"(condition x seed) percentile-bootstrap {100 * facts.get('level', 0.95):.0f} % CIs over patients; "
        "p-values are two-sided Wilcoxon signed-rank tests, Holm-adjusted over every comparison of the table; "
        "P(improvement) is the probability that a patient under the policy does better than one under the "
        "reference (ties half). A simulator result, not clinical evidence: see envs/MODEL_CARD.md.",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Run time {facts.get('seconds', float('nan')):.1f} s; adaptrx {facts.get('version')}.",
        "",
        "## Findings (from the numbers below)",
        "",
        *[f"- {line}" for line in findings(summary, differences, reference)],
        "",
        "## Policies",
        "",
        markdown_table(pd.DataFrame(policies).fillna("")),
        "",
        "## Outcomes per policy (mean [95 % CI])",
        "",
        summary_table(summary, ["return", "pain_w12", "pain_change_w12", "responder_w12", "function_change", "flares",
                                "dropped_out", "cost", "composite"]),
        "",
        "Interquartile means (robust to the few extreme patients):",
        "",
        summary_table(summary, ["pain_change_w12", "flares", "function_change", "composite"], statistic="iqm"),
        "",
        f"## Paired differences vs `{reference}`",
        "",
        differences_table(differences),
        "",
    ]
    if subgroup_table is not None and len(subgroup_table):
        metric = subgroup_table["metric"].iloc[0]
        table = subgroup_table.assign(difference=[interval(r.diff, r.low, r.high, metric, signed=True)
                                                  for r in subgroup_table.itertuples()])
        lines += [f"## Subgroups: {METRICS.get(metric, (metric,))[0]}, policy minus `{reference}`", "",
                  markdown_table(table[["variable", "level", "policy", "n", "difference"]]), ""]
    if figures:
        lines += ["## Figures", ""]
        lines += [f"![{caption}]({name})\n" for name, caption in figures.items()]
    lines += ["## Config", "", "```yaml", config_yaml.rstrip(), "```", ""]
    path = Path(path)
    atomic.write_text(path, "\n".join(lines))
    return path
