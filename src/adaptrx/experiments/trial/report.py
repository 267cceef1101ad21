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

from adaptrx.common import atomic
from adaptrx.experiments.stats import Estimate
from adaptrx.experiments.trial.analysis import BINARY, DEFINITIONS, METRICS, Mcid

#: The components of the headline objective, in the order the findings give them.
COMPONENTS: tuple[str, ...] = ("pain_change_w12", "responder_w12", "function_change", "flares", "dropped_out", "cost",
                               "composite")
#: Harm outcomes: doing less wins them, so their best policy is named among those not worse on the return.
HARMS: tuple[str, ...] = ("flares", "dropped_out", "cost", "composite")
#: What each column of the paired-differences table means (the report's definitions section).
COLUMNS: dict[str, str] = {
    "mean difference [95 % CI]": "mean over patient-episodes of policy minus reference (the estimand of every "
                                 "interval, p-value and forest-plot colour), stratified percentile-bootstrap CI; "
                                 "rates in percentage points (pp)",
    "p (Holm)": "two-sided sign-flip permutation test of that mean, Holm-adjusted over every row of the table",
    "clinical": "the difference against the outcome's MCID (below): important (whole CI beyond it), possibly "
                "important (estimate beyond it), below MCID, equivalent (CI within +-MCID) or inconclusive; empty "
                "where no MCID is declared",
    "median difference": "median over patient-episodes of policy minus reference (descriptive, not tested)",
    "better / worse / tied": "shares of patient-episodes on which the policy did better than, worse than or "
                             "exactly the same as the reference (descriptive)",
    "P(improvement)": "probability that a patient under the policy does better than an independent patient under "
                      "the reference, ties half (Agarwal et al. 2021; a different estimand, with its own CI)",
}


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
    """``value [low, high]``; for rate metrics in % (a level) or, ``signed`` (a difference: ``+1.2``), in
    percentage points (pp)."""
    scale, unit, digits = (100.0, " pp" if signed else " %", 1) if metric in BINARY else (1.0, "", 2)
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{fmt.format(scale * value)} [{fmt.format(scale * low)}, {fmt.format(scale * high)}]{unit}"


def amount(value: float, metric: str = "", signed: bool = False) -> str:
    """One number as the tables print it: rates in % (a level) or pp (``signed``, a difference)."""
    if metric in BINARY:
        return f"{100 * value:{'+' if signed else ''}.1f} {'pp' if signed else '%'}"
    return f"{value:{'+' if signed else ''}.2f}"


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
    """One row per (policy, metric) of :func:`adaptrx.experiments.trial.analysis.compare`: the mean difference
    [CI], its Holm p and clinical reading, then the descriptive median difference, shares better / worse / tied
    and P(improvement) (:data:`COLUMNS` defines them)."""
    d = differences if metrics is None else differences[differences["metric"].isin(metrics)]
    reference = d["reference"].iloc[0] if len(d) else ""
    table = pd.DataFrame({
        "policy": d["policy"],
        "metric": d["metric"],
        f"mean difference vs {reference} [95 % CI]": [interval(r.diff, r.low, r.high, r.metric, signed=True)
                                                      for r in d.itertuples()],
        "p (Holm)": [p_value(p) for p in d["p_holm"]],
        "clinical": d["clinical"].fillna(""),
        "median difference": [amount(r.median, r.metric, signed=True) for r in d.itertuples()],
        "better / worse / tied": [f"{100 * r.better:.0f} / {100 * r.worse:.0f} / {100 * r.tied:.0f} %"
                                  for r in d.itertuples()],
        "P(improvement)": [interval(r.poi, r.poi_low, r.poi_high) for r in d.itertuples()],
    })
    return markdown_table(table)


def significant(row: Any, alpha: float = 0.05) -> int:
    """+1 if the paired mean difference is better than the reference (CI excludes 0 and Holm p < ``alpha``), -1
    if worse, 0 if neither."""
    if row.p_holm >= alpha or row.low <= 0.0 <= row.high:
        return 0
    better = row.diff < 0 if row.lower_is_better else row.diff > 0
    return 1 if better else -1


def _effect(row: Any) -> str:
    text = f"{row.metric} {interval(row.diff, row.low, row.high, row.metric, signed=True)}"
    clinical = str(row.clinical) if isinstance(row.clinical, str) else ""
    return text + (f" ({clinical.split(', ', 1)[-1]})" if ", " in clinical else "")


def findings(summary: pd.DataFrame, differences: pd.DataFrame, reference: str) -> list[str]:
    """Plain sentences read off the numbers (Holm-adjusted, alpha 0.05): the headline objective first, each
    policy's difference from the reference on it and then on its components (with the clinical reading where
    an MCID is declared), and the best policy per component; for a harm outcome (:data:`HARMS`, which doing less
    wins) among the policies not worse than the reference on the headline objective, naming a lower one outside
    them as a trivial winner."""
    lines = []
    means = summary.pivot_table(index="policy", columns="metric", values="mean", sort=False)
    worse_on_return: dict[str, Any] = {}
    if "return" in means:
        ranking = means["return"].sort_values(ascending=False)
        lines.append("Headline objective, the episode return under the env's default reward (higher is better): "
                     + ", ".join(f"`{p}` {v:.2f}" for p, v in ranking.items()) + " per patient.")
    for policy, frame in differences.groupby("policy", sort=False):
        verdict: dict[int, list[str]] = {1: [], -1: [], 0: []}
        headline = ""
        for row in frame.itertuples():
            s = significant(row)
            if row.metric == "return":
                word = {1: "better", -1: "worse", 0: "no difference shown"}[s]
                headline = (f"return {interval(row.diff, row.low, row.high, 'return', signed=True)} "
                            f"(p {p_value(row.p_holm)}, {word}); ")
                if s == -1:
                    worse_on_return[policy] = row
                continue
            verdict[s].append(_effect(row) if s else str(row.metric))
        unclear = f"; no difference shown on {', '.join(verdict[0])}" if verdict[0] else ""
        lines.append(f"`{policy}` vs `{reference}`: {headline}components better on "
                     f"{'; '.join(verdict[1]) or 'nothing'}; worse on {'; '.join(verdict[-1]) or 'nothing'}{unclear}.")
    for metric in COMPONENTS:
        if metric not in means:
            continue
        column = means[metric].dropna()
        lower = METRICS[metric][1]
        overall = column.idxmin() if lower else column.idxmax()
        if metric not in HARMS:
            lines.append(f"Best on {METRICS[metric][0]}: `{overall}` ({amount(column[overall], metric)}).")
            continue
        contenders = column[[p not in worse_on_return for p in column.index]]
        best = contenders.idxmin() if lower else contenders.idxmax()
        text = (f"Best on {METRICS[metric][0]} among the policies not worse than `{reference}` on the return: "
                f"`{best}` ({amount(column[best], metric)}).")
        if overall != best and column[overall] != column[best]:
            row = worse_on_return[overall]
            text += (f" `{overall}` ({amount(column[overall], metric)}) is lower only trivially, at the cost of "
                     f"the headline objective: return {interval(row.diff, row.low, row.high, 'return', signed=True)}"
                     f" against `{reference}`.")
        lines.append(text)
    return lines


def definitions(mcid: Mapping[str, Mcid], outcomes: Sequence[str]) -> list[str]:
    """The report's definitions: each outcome of ``outcomes`` and each column of the differences table once,
    then the MCIDs with their sources (markdown lines)."""
    lines = ["Outcomes (per patient-episode, intention to treat):", ""]
    lines += [f"- `{m}`: {DEFINITIONS.get(m, METRICS.get(m, (m,))[0])}." for m in outcomes]
    lines += ["", "Columns of the paired differences:", ""]
    lines += [f"- {name}: {text}." for name, text in COLUMNS.items()]
    if mcid:
        lines += ["", "Minimal clinically important differences between arms (`configs/mcid/default.yaml`, "
                  "`stats.mcid` of the trial config):", ""]
        table = pd.DataFrame([{"outcome": m, "MCID": f"{v.value} {v.unit}", "source": v.source}
                              for m, v in mcid.items()])
        lines.append(markdown_table(table))
    return lines


def write_report(path: Path, *, title: str, command: str, config_yaml: str, policies: Sequence[Mapping[str, Any]],
                 summary: pd.DataFrame, differences: pd.DataFrame, subgroup_table: pd.DataFrame | None,
                 figures: Mapping[str, str], facts: Mapping[str, Any], reference: str,
                 mcid: Mapping[str, Mcid], safety: pd.DataFrame | None = None) -> Path:
    """Write the trial's ``report.md``: how it was produced, findings, definitions, tables (``safety``: the
    safety comparison of :func:`~adaptrx.experiments.trial.app.analyse`, if any) and the embedded figures
    (``figures``: file name relative to the report -> caption)."""
    n = facts.get("patients")
    outcomes = ["return", "pain_w12", "pain_change_w12", "responder_w12", "function_change", "flares", "dropped_out",
                "cost", "composite"]
    lines = [
        f"# {title}",
        "",
        f"Paired in-silico trial on the virtual patients of adaptrx: {n} patient-episodes per policy "
        f"({facts.get('condition')}, `{facts.get('split')}` split, seeds {facts.get('seeds')}, "
        f"{facts.get('weeks')} weeks). Every policy met the same patients with the same random streams; dropouts "
        "were followed to the horizon without exercise (intention to treat). One estimand per comparison: the "
        "mean paired difference, policy minus reference. Its interval is a stratified (condition x seed) "
        f"percentile-bootstrap {100 * facts.get('level', 0.95):.0f} % CI over patients, its p-value a two-sided "
        f"sign-flip permutation test of the mean ({facts.get('n_perm', 100_000):,} flips), Holm-adjusted over every "
        "comparison of the table, and the forest plot colours it by its CI; the median difference, the shares "
        "of patients better / worse / tied and P(improvement) describe the spread and are not tests. "
        "Definitions and MCIDs are below the findings. A simulator result, not clinical evidence: see "
        "envs/MODEL_CARD.md.",
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
        "## Definitions",
        "",
        *definitions(mcid, outcomes),
        "",
        "## Outcomes per policy (mean [95 % CI])",
        "",
        summary_table(summary, outcomes),
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
    if safety is not None and len(safety):
        other = safety["reference"].iloc[0]
        lines += [f"## Safety vs `{other}`", "",
                  f"The safety outcomes of every policy minus `{other}`'s, the clinical safety benchmark (DESIGN.md "
                  "section 3); a family of its own for the Holm adjustment.", "", differences_table(safety), ""]
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
