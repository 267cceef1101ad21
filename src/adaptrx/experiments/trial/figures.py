"""Figures of the ``adaptrx-trial`` report, drawn from the trial's tidy pandas tables.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot: no global figure registry, safe in
threads and under any backend) and reads only the columns it needs, so extra columns are ignored. Input tables:

* ``weekly``: one row per (policy, patient_id, seed, week): ``pain`` (weekly mean, NRS 0-10), ``function``
  (0-100), ``capacity`` (x baseline), ``load`` (baseline-capacity units), ``flares`` and ``sessions_attended``
  (counts that week) -> :func:`mean_trajectories_figure`;
* ``summary``: one row per (policy, metric) with ``mean``, ``mean_low``, ``mean_high`` (95 % bootstrap CI)
  -> :func:`safety_figure`;
* ``differences``: one row per (policy, metric), policy minus ``reference`` paired over patients: ``diff``,
  ``low``, ``high`` (95 % CI), ``p_holm``, ``lower_is_better`` -> :func:`forest_figure`;
* ``subgroups``: one row per (variable, level, policy, metric) with ``n``, ``diff``, ``low``, ``high``
  -> :func:`subgroup_forest_figure`.

Empty tables, missing columns and unknown metrics or policies raise ``ValueError`` naming the table and the
column, metric or policy. :func:`save_figures` writes the figures as PNG files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import blended_transform_factory

from adaptrx.common import atomic
from adaptrx.experiments.trial.analysis import BINARY

#: An RGBA colour, components in 0-1.
Color = tuple[float, float, float, float]

#: Name of the oracle policy: drawn dashed (trajectories) or hatched (bars) to set it apart from real policies.
ORACLE = "oracle"

#: y-axis label (with units) of each metric :func:`mean_trajectories_figure` can draw (a ``weekly`` column).
TRAJECTORY_LABELS: dict[str, str] = {
    "pain": "mean pain (NRS 0-10)",
    "function": "mean function (0-100)",
    "capacity": "mean capacity (x baseline)",
    "load": "mean load (x baseline capacity)",
    "flares": "mean flares per week (count)",
    "sessions_attended": "mean sessions attended per week (count)",
}

#: The panels of :func:`safety_figure`: ``summary`` metric -> (scale factor, y label, panel title).
SAFETY_PANELS: dict[str, tuple[float, str, str]] = {
    "flares": (1.0, "flares per patient (count)", "Flares"),
    "dropped_out": (100.0, "dropout rate (%)", "Dropout"),
    "responder_w12": (100.0, "responder rate (%)", "Responders (responder_w12)"),
}

#: Marker colour of a forest-plot row by :func:`effect_direction`.
DIRECTION_COLORS: dict[str, str] = {"better": "tab:green", "worse": "tab:red", "neither": "tab:gray"}

_WEEKLY_KEYS = ("policy", "patient_id", "seed", "week")
_SUMMARY_COLUMNS = ("policy", "metric", "mean", "mean_low", "mean_high")
_DIFFERENCE_COLUMNS = ("policy", "reference", "metric", "diff", "low", "high", "p_holm", "lower_is_better")
_SUBGROUP_COLUMNS = ("variable", "level", "policy", "reference", "metric", "n", "diff", "low", "high")
_Z95 = 1.96


# --------------------------------------------------------------------------------------------------- helpers


def _check_table(df: pd.DataFrame, table: str, columns: Iterable[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{table}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{table}: missing column(s) {', '.join(repr(c) for c in missing)}")
    if df.empty:
        raise ValueError(f"{table}: the table is empty")


def _unique(values: Iterable[object]) -> list[str]:
    """Distinct values as strings, in order of first appearance."""
    return list(dict.fromkeys(str(v) for v in values))


def _select_policies(available: Sequence[str], policies: Sequence[str] | None, table: str) -> list[str]:
    if policies is None:
        return list(available)
    chosen = _unique(policies)
    if not chosen:
        raise ValueError(f"{table}: policies is empty; give at least one policy or None for all")
    unknown = [p for p in chosen if p not in set(available)]
    if unknown:
        raise ValueError(f"{table}: policy {unknown[0]!r} not in column 'policy' (has {list(available)})")
    return chosen


def _select_reference(df: pd.DataFrame, table: str, reference: str | None) -> tuple[pd.DataFrame, str]:
    refs = _unique(df["reference"])
    if reference is None:
        if len(refs) > 1:
            raise ValueError(f"{table}: column 'reference' holds several references {refs}; pass reference=")
        return df, refs[0]
    if str(reference) not in refs:
        raise ValueError(f"{table}: reference {reference!r} not in column 'reference' (has {refs})")
    return df[df["reference"].astype(str) == str(reference)], str(reference)


def _resolve_colors(policies: Sequence[str], colors: Mapping[str, Color] | None) -> dict[str, Color]:
    auto = policy_colors(policies)
    if colors is None:
        return auto
    return {p: colors.get(p, auto[p]) for p in policies}


def _is_oracle(policy: str) -> bool:
    return policy.lower() == ORACLE


def format_p(p: float) -> str:
    """A p-value as the forest plots print it: ``"p<0.001"``, ``"p=0.003"``, ``"p=0.250"``; ``"p=n/a"`` if NaN."""
    p = float(p)
    if not math.isfinite(p):
        return "p=n/a"
    if p < 0.001:
        return "p<0.001"
    return f"p={min(p, 1.0):.3f}"


def effect_direction(low: float, high: float, lower_is_better: bool) -> str:
    """``"better"``/``"worse"`` if the CI ``[low, high]`` excludes 0 on that side of the reference, else ``"neither"``.

    With ``lower_is_better`` a CI entirely below 0 is ``"better"``, entirely above 0 ``"worse"``; the other way
    round otherwise. A CI touching 0, or one with a NaN bound, is ``"neither"``.
    """
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "neither"
    if high < 0.0:
        return "better" if lower_is_better else "worse"
    if low > 0.0:
        return "worse" if lower_is_better else "better"
    return "neither"


def policy_colors(policies: Sequence[str]) -> dict[str, Color]:
    """A distinct RGBA colour per policy, stable for a given order: ``tab10`` for up to 10 distinct policies, else
    ``tab20`` (colours repeat past 20), assigned in order of first appearance (duplicates ignored).

    Pass one mapping built from the full policy list to the figure functions' ``colors`` argument to keep a policy's
    colour the same across figures whose tables hold different subsets (a differences table lacks its reference).
    """
    names = _unique(policies)
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    out: dict[str, Color] = {}
    for i, name in enumerate(names):
        r, g, b, a = cmap(i % cmap.N)
        out[name] = (float(r), float(g), float(b), float(a))
    return out


# ---------------------------------------------------------------------------------------------- trajectories


def weekly_means(weekly: pd.DataFrame, metric: str = "pain") -> pd.DataFrame:
    """Per (policy, week): ``mean``, ``se``, ``n``, ``low``, ``high`` of ``metric`` over the patient-seed rows.

    ``se`` is the standard error of the mean (sample standard deviation / sqrt(n), 0 when n = 1) and the band is
    ``mean -/+ 1.96 se`` (a normal-approximation 95 % CI treating every patient-seed row as independent). NaN values
    are left out. Units are those of ``metric`` (see :data:`TRAJECTORY_LABELS`). Rows sorted by policy (first
    appearance) then week.
    """
    if metric not in TRAJECTORY_LABELS:
        raise ValueError(f"weekly: unknown metric {metric!r}; expected one of {list(TRAJECTORY_LABELS)}")
    _check_table(weekly, "weekly", (*_WEEKLY_KEYS, metric))
    values = pd.to_numeric(weekly[metric], errors="coerce").astype(np.float64)
    d = pd.DataFrame({"policy": weekly["policy"].astype(str), "week": weekly["week"].astype(np.int64),
                      "value": values})
    g = d.groupby(["policy", "week"], sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    g = g.rename(columns={"count": "n"})
    g["n"] = g["n"].astype(np.int64)
    std = g["std"].where(g["n"] > 1, 0.0).fillna(0.0)
    g["se"] = std / np.sqrt(g["n"].clip(lower=1))
    g["low"] = g["mean"] - _Z95 * g["se"]
    g["high"] = g["mean"] + _Z95 * g["se"]
    order = {p: i for i, p in enumerate(_unique(d["policy"]))}
    g = g.sort_values(["policy", "week"], key=lambda s: s.map(order) if s.name == "policy" else s)
    return g[["policy", "week", "mean", "se", "n", "low", "high"]].reset_index(drop=True)


def mean_trajectories_figure(weekly: pd.DataFrame, metric: str = "pain", policies: Sequence[str] | None = None,
                             title: str = "", colors: Mapping[str, Color] | None = None) -> Figure:
    """Weekly mean of ``metric`` per policy, with a 95 % band: one line per policy, policies in the given order.

    For each policy and week: the mean over all patient-seed rows of ``weekly`` (intention to treat) and a band of
    mean -/+ 1.96 standard errors across those rows (:func:`weekly_means`; a normal-approximation 95 % CI that treats
    every patient-seed row as independent). ``metric`` is one of :data:`TRAJECTORY_LABELS` (``pain`` NRS 0-10,
    ``function`` 0-100, ``capacity`` x baseline, ``load`` x baseline capacity, ``flares``, ``sessions_attended``
    counts per week); x is the week (1-based). ``policies`` picks and orders the lines (default: all, in order of
    first appearance); ``colors`` overrides :func:`policy_colors`. The oracle is dashed. One axes; each policy adds
    one line and one band (a ``PolyCollection``), legend outside on the right.
    """
    stats = weekly_means(weekly, metric)
    chosen = _select_policies(_unique(stats["policy"]), policies, "weekly")
    palette = _resolve_colors(chosen, colors)
    fig = Figure(figsize=(9.0, 5.0), layout="constrained")
    ax = fig.subplots()
    band_alpha = 0.15 if len(chosen) <= 4 else 0.08  # many overlapping bands stay see-through
    for policy in chosen:
        s = stats[stats["policy"] == policy]
        x = s["week"].to_numpy(np.float64)
        color = palette[policy]
        ax.fill_between(x, s["low"].to_numpy(), s["high"].to_numpy(), color=color, alpha=band_alpha, lw=0)
        ax.plot(x, s["mean"].to_numpy(), ls="--" if _is_oracle(policy) else "-", color=color, lw=1.8,
                marker="o", ms=3, label=policy)
    ax.set_xlabel("week")
    ax.set_ylabel(TRAJECTORY_LABELS[metric])
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Mean {metric} per week (95 % band: mean -/+ 1.96 SE over patient-seed rows)",
                 fontsize=10)
    fig.legend(loc="outside right upper", fontsize=8, title="policy", title_fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------------- forest


def _panel_grid(fig: Figure, n: int, ncols: int, sharey: bool) -> list[Axes]:
    nrows = math.ceil(n / ncols)
    axes = list(np.asarray(fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)).ravel())
    for ax in axes[n:]:
        fig.delaxes(ax)
    return axes[:n]


def forest_figure(differences: pd.DataFrame, metrics: Sequence[str] | None = None, title: str = "",
                  reference: str | None = None) -> Figure:
    """Paired differences vs the reference policy: one panel per metric, one row per policy.

    Each row is the policy-minus-reference mean difference ``diff`` (a point, metric units; rates in percentage
    points) with its 95 % CI ``[low, high]`` (a whisker); a dashed vertical line marks 0 (no difference), dotted
    lines mark +-MCID where the table has a finite ``mcid``, the x label names the reference
    (``difference vs <reference>``) and a text column right of each panel gives the Holm-adjusted p-value of the
    same mean (:func:`format_p`). Points and whiskers are coloured by :func:`effect_direction`
    (``lower_is_better`` per row): green if the CI excludes 0 on the better side, red on the worse side, gray
    otherwise (:data:`DIRECTION_COLORS`).

    ``metrics`` picks and orders the panels (default: all, in order of appearance). Rows are the policies in order
    of first appearance, shared by all panels; a policy without a row for a metric leaves its line empty. If the
    table holds several references, ``reference`` must pick one. Each panel has one scatter (``PathCollection``:
    offsets = (diff, row)), one ``LineCollection`` of whiskers and one vertical line at 0.
    """
    _check_table(differences, "differences", _DIFFERENCE_COLUMNS)
    df, ref = _select_reference(differences, "differences", reference)
    available = _unique(df["metric"])
    if metrics is None:
        chosen = available
    else:
        chosen = _unique(metrics)
        if not chosen:
            raise ValueError("differences: metrics is empty; give at least one metric or None for all")
        for m in chosen:
            if m not in available:
                raise ValueError(f"differences: metric {m!r} not in column 'metric' (has {available})")
    df = df[df["metric"].astype(str).isin(chosen)]
    dup = df.duplicated(["policy", "metric"])
    if dup.any():
        row = df[dup].iloc[0]
        raise ValueError(f"differences: several rows for policy {row['policy']!r}, metric {row['metric']!r}")
    policies = _unique(df["policy"])
    rows = {p: i for i, p in enumerate(policies)}
    ncols = min(len(chosen), 2)
    panel_h = 0.32 * len(policies) + 1.3
    fig = Figure(figsize=(6.2 * ncols, panel_h * math.ceil(len(chosen) / ncols) + 0.6), layout="constrained")
    axes = _panel_grid(fig, len(chosen), ncols, sharey=True)
    for ax, metric in zip(axes, chosen, strict=True):
        d = df[df["metric"].astype(str) == metric]
        y = d["policy"].astype(str).map(rows).to_numpy(np.float64)
        scale = 100.0 if metric in BINARY else 1.0  # rate differences in percentage points
        diff = scale * d["diff"].to_numpy(np.float64)
        low = scale * d["low"].to_numpy(np.float64)
        high = scale * d["high"].to_numpy(np.float64)
        lib = d["lower_is_better"].astype(bool).to_numpy()
        dirs = [effect_direction(lo, hi, bool(b)) for lo, hi, b in zip(low, high, lib, strict=True)]
        cols = [DIRECTION_COLORS[k] for k in dirs]
        finite = np.isfinite(diff)
        ax.axvline(0.0, color="black", ls="--", lw=0.9)
        mcid = d["mcid"].to_numpy(np.float64) if "mcid" in d else np.array([np.nan])
        if np.isfinite(mcid).any():  # the clinically important difference on either side
            for x in (-1.0, 1.0):
                ax.axvline(x * scale * float(np.nanmax(mcid)), color="tab:purple", ls=":", lw=1.0)
        whisker = np.isfinite(low) & np.isfinite(high)
        ax.hlines(y[whisker], low[whisker], high[whisker], colors=[c for c, w in zip(cols, whisker, strict=True)
                                                                  if w], lw=1.8)
        ax.scatter(diff[finite], y[finite], c=[c for c, f in zip(cols, finite, strict=True) if f], s=36,
                   zorder=3, edgecolors="black", linewidths=0.5)
        text_at = blended_transform_factory(ax.transAxes, ax.transData)
        for yy, p in zip(y, d["p_holm"].to_numpy(np.float64), strict=True):
            ax.text(1.02, yy, format_p(p), transform=text_at, va="center", ha="left", fontsize=8)
        ax.set_yticks(np.arange(len(policies)), policies, fontsize=8)
        ax.set_ylim(len(policies) - 0.5, -0.5)  # first policy on top
        better = "lower is better" if bool(lib.all()) else ("higher is better" if not lib.any() else "")
        ax.set_title(metric + (" (pp" if scale != 1.0 else " (") + (f"; {better})" if better else ")")
                     if better or scale != 1.0 else metric, fontsize=10)
        ax.set_xlabel(f"difference vs {ref}")
        ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color=DIRECTION_COLORS[k], marker="o", lw=1.8, label=label) for k, label in
               (("better", "CI excludes 0, better"), ("worse", "CI excludes 0, worse"), ("neither", "CI includes 0"))]
    if "mcid" in df and np.isfinite(df["mcid"].to_numpy(np.float64)).any():
        handles.append(Line2D([], [], color="tab:purple", ls=":", lw=1.0, label="+-MCID"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title or f"Paired mean differences vs {ref} (95 % CI; Holm-adjusted sign-flip p)", fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------------- safety


def safety_figure(summary: pd.DataFrame, title: str = "", policies: Sequence[str] | None = None,
                  colors: Mapping[str, Color] | None = None) -> Figure:
    """Safety and response at a glance: bar panels of :data:`SAFETY_PANELS`, one bar per policy with its 95 % CI.

    Panels, left to right: flares per patient (``flares``, count), dropout rate (``dropped_out`` mean x 100, %),
    responder rate (``responder_w12`` mean x 100, %); a panel whose metric is absent from ``summary`` is skipped
    (``ValueError`` if all three are). Bar height is ``mean`` and the error bar ``[mean_low, mean_high]``, both
    scaled like the panel. ``policies`` picks and orders the bars (default: all, in order of first appearance);
    ``colors`` overrides :func:`policy_colors`; the oracle's bar is hatched. Each panel is one axes whose bars
    (``ax.patches``) follow the policy order, skipping policies without that metric.
    """
    _check_table(summary, "summary", _SUMMARY_COLUMNS)
    metric_col = summary["metric"].astype(str)
    present = [m for m in SAFETY_PANELS if (metric_col == m).any()]
    if not present:
        raise ValueError(f"summary: none of the safety metrics {list(SAFETY_PANELS)} in column 'metric'")
    chosen = _select_policies(_unique(summary["policy"]), policies, "summary")
    palette = _resolve_colors(chosen, colors)
    width = max(4.0, 0.38 * len(chosen) + 1.6)
    fig = Figure(figsize=(width * len(present), 4.8), layout="constrained")
    axes = _panel_grid(fig, len(present), len(present), sharey=False)
    x_of = {p: i for i, p in enumerate(chosen)}
    for ax, metric in zip(axes, present, strict=True):
        scale, ylabel, panel_title = SAFETY_PANELS[metric]
        d = summary[(metric_col == metric) & summary["policy"].astype(str).isin(chosen)]
        d = d.drop_duplicates("policy").copy()
        d["_x"] = d["policy"].astype(str).map(x_of)
        d = d.sort_values("_x")
        names = d["policy"].astype(str).tolist()
        mean = d["mean"].to_numpy(np.float64) * scale
        low = d["mean_low"].to_numpy(np.float64) * scale
        high = d["mean_high"].to_numpy(np.float64) * scale
        yerr = np.vstack([np.clip(mean - low, 0.0, None), np.clip(high - mean, 0.0, None)])
        bars = ax.bar(d["_x"].to_numpy(np.float64), mean, width=0.7, color=[palette[p] for p in names],
                      yerr=yerr, capsize=3, ecolor="black", error_kw={"lw": 1.0}, edgecolor="black", linewidth=0.5)
        for bar, p in zip(bars, names, strict=True):
            if _is_oracle(p):
                bar.set_hatch("//")
        ax.set_xticks(np.arange(len(chosen)), chosen, rotation=45, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(chosen) - 0.4)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0.0)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or "Safety and response per policy (mean, 95 % bootstrap CI)", fontsize=11)
    return fig


# ------------------------------------------------------------------------------------------------- subgroups


def _n_label(ns: np.ndarray) -> str:
    ns = ns[np.isfinite(ns)].astype(np.int64)
    if len(ns) == 0:
        return "n=?"
    lo, hi = int(ns.min()), int(ns.max())
    return f"n={lo}" if lo == hi else f"n={lo}-{hi}"


def subgroup_forest_figure(subgroups: pd.DataFrame, metric: str, policies: Sequence[str] | None = None,
                           title: str = "", reference: str | None = None,
                           colors: Mapping[str, Color] | None = None) -> Figure:
    """Differences vs the reference within subgroups, for one ``metric``: one row per (variable, level).

    Rows are grouped by ``variable`` then ``level`` (each in order of first appearance) and labelled
    ``"variable: level (n=...)"`` (``n`` patients in the subgroup; a range if policies disagree); thin gray lines
    separate the variables. In each row every policy has its own marker at ``diff`` (metric units, policy minus
    reference) with its 95 % CI whisker ``[low, high]``, offset vertically so the policies don't overlap (first
    policy on top); a dashed vertical line marks 0. ``policies`` picks and orders them (default: all, in order of
    first appearance), ``colors`` overrides :func:`policy_colors`; if the table holds several references,
    ``reference`` must pick one. One axes; each policy adds one scatter (``PathCollection``, label = policy, offsets
    = (diff, row + offset)) and one ``LineCollection`` of whiskers.
    """
    _check_table(subgroups, "subgroups", _SUBGROUP_COLUMNS)
    metric_col = subgroups["metric"].astype(str)
    if not (metric_col == str(metric)).any():
        raise ValueError(f"subgroups: metric {metric!r} not in column 'metric' (has {_unique(metric_col)})")
    df, ref = _select_reference(subgroups[metric_col == str(metric)], "subgroups", reference)
    chosen = _select_policies(_unique(df["policy"]), policies, "subgroups")
    df = df[df["policy"].astype(str).isin(chosen)].copy()
    df["variable"] = df["variable"].astype(str)
    df["level"] = df["level"].astype(str)
    df["policy"] = df["policy"].astype(str)
    row_keys: list[tuple[str, str]] = []
    boundaries: list[float] = []
    for variable in _unique(df["variable"]):
        if row_keys:
            boundaries.append(len(row_keys) - 0.5)
        row_keys += [(variable, level) for level in _unique(df.loc[df["variable"] == variable, "level"])]
    row_of = {k: i for i, k in enumerate(row_keys)}
    labels = []
    for variable, level in row_keys:
        ns = pd.to_numeric(df.loc[(df["variable"] == variable) & (df["level"] == level), "n"], errors="coerce")
        labels.append(f"{variable}: {level} ({_n_label(ns.to_numpy(np.float64))})")
    palette = _resolve_colors(chosen, colors)
    k = len(chosen)
    step = min(0.8 / k, 0.25)
    offsets = (np.arange(k) - (k - 1) / 2.0) * step
    height = min(40.0, max(3.5, 1.4 + len(row_keys) * (0.3 + 0.08 * k)))
    fig = Figure(figsize=(10.0, height), layout="constrained")
    ax = fig.subplots()
    ax.axvline(0.0, color="black", ls="--", lw=0.9)
    for b in boundaries:
        ax.axhline(b, color="0.75", lw=0.8)
    for policy, off in zip(chosen, offsets, strict=True):
        d = df[df["policy"] == policy]
        y = np.array([row_of[(v, lv)] for v, lv in zip(d["variable"], d["level"], strict=True)],
                     dtype=np.float64) + off
        diff = d["diff"].to_numpy(np.float64)
        low = d["low"].to_numpy(np.float64)
        high = d["high"].to_numpy(np.float64)
        whisker = np.isfinite(low) & np.isfinite(high)
        finite = np.isfinite(diff)
        color = palette[policy]
        ax.hlines(y[whisker], low[whisker], high[whisker], colors=[color], lw=1.2)
        ax.scatter(diff[finite], y[finite], color=color, s=22, zorder=3, label=policy,
                   marker="D" if _is_oracle(policy) else "o", edgecolors="black", linewidths=0.3)
    ax.set_yticks(np.arange(len(row_keys)), labels, fontsize=8)
    ax.set_ylim(len(row_keys) - 0.5, -0.5)
    ax.set_xlabel(f"{metric}: difference vs {ref}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or f"Subgroup differences in {metric} vs {ref} (95 % CI)", fontsize=10)
    fig.legend(loc="outside right upper", fontsize=8, title="policy", title_fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------------ save


def save_figures(figures: Mapping[str, Figure], out_dir: Path, dpi: int = 120) -> list[Path]:
    """Write each figure to ``out_dir / f"{name}.png"`` at ``dpi`` (created if needed); the paths, in order.

    Names must be plain file names (no directory part). The PNG is ``figsize x dpi`` pixels. ``ValueError`` on a
    bad name or a value that is not a :class:`~matplotlib.figure.Figure`.
    """
    if isinstance(dpi, bool) or not isinstance(dpi, int | np.integer) or dpi <= 0:
        raise ValueError(f"dpi: expected a positive integer, got {dpi!r}")
    items = list(figures.items())
    for name, fig in items:
        if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
            raise ValueError(f"figures: name {name!r} is not a plain file name")
        if not isinstance(fig, Figure):
            raise ValueError(f"figures: {name!r} is a {type(fig).__name__}, not a matplotlib Figure")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in items:
        path = out / f"{name}.png"
        with atomic.replacing(path) as tmp:
            fig.savefig(tmp, dpi=int(dpi), format="png")
        paths.append(path)
    return paths
