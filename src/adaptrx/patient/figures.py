"""Figures of the calibration suite (``python -m adaptrx.patient.calibration``).

:func:`calibration_figures` turns the per-arm outcomes of :func:`adaptrx.patient.calibration.run_suite`
(keyed ``condition/arm``) into four PNGs:

* ``pain_trajectories_knee_oa.png`` - knee OA pain over 16 weeks by arm, and 52-week retention/detraining
  after the programme stops at week 12;
* ``intensity_and_abrupt_knee_oa.png`` - high vs low intensity, abrupt / +50 %/week vs gradual loading, and
  flares and dropout of those arms;
* ``conditions.png`` - chronic low back pain and fibromyalgia, exercise vs none;
* ``dropout_curves.png`` - cumulative dropout against the week-16 dropout targets.

Bands are 95 % confidence intervals of the mean across patients (mean ± 1.96 SE). An arm missing from
``outcomes`` is left out of its panel rather than raising. Figures are drawn with the object-oriented API
(``matplotlib.figure.Figure``) and the Agg renderer, so no display is ever needed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

# Headless by default; leave an already-running interactive pyplot session (e.g. a notebook) alone.
if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from adaptrx.patient.calibration_arms import DROPOUT_TARGETS, ArmOutcome

#: z value of a two-sided 95 % normal interval
Z95 = 1.96
DPI = 120
PAIN_LABEL = "true pain (NRS 0-10)"
WEEK_LABEL = "week"

_STYLE: dict[str, object] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
}


@dataclass(frozen=True)
class _ArmStyle:
    label: str
    color: str
    linestyle: str = "-"


#: one colour/label per arm name, so an arm looks the same in every figure
_ARMS: dict[str, _ArmStyle] = {
    "none": _ArmStyle("no exercise", "#555555", "--"),
    "attention_control": _ArmStyle("attention control", "#9467bd", "-."),
    "glad_2x": _ArmStyle("GLA:D-like 2x/wk", "#1f77b4"),
    "supervised_3x": _ArmStyle("supervised 3x/wk", "#2ca02c"),
    "high_intensity": _ArmStyle("high intensity (82.5 %)", "#d62728"),
    "low_intensity": _ArmStyle("low intensity (35 %)", "#17becf"),
    "abrupt_high": _ArmStyle("abrupt high load", "#ff7f0e"),
    "plus50_per_week": _ArmStyle("+50 %/week", "#8c564b"),
    "supervised_16w": _ArmStyle("supervised 2x/wk, 16 wk", "#1f77b4"),
    "home_16w": _ArmStyle("home 3x/wk, 16 wk", "#ff7f0e"),
    "exercise_2x": _ArmStyle("exercise 2x/wk", "#1f77b4"),
}

#: week-16 dropout targets (T7, T7b, T7c): key -> (target, accepted low, accepted high)


def trajectory_band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95 % confidence band of the mean across patients.

    Args:
        values: array of shape ``(weeks, n)`` (one row per week, one column per patient).

    Returns:
        ``(mean, lo, hi)``, each of shape ``(weeks,)``, with ``lo/hi = mean ∓ 1.96 * SE`` and
        ``SE = SD(ddof=1) / sqrt(n)``. With fewer than two patients the band has zero width.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ValueError(f"expected a (weeks, n) array, got shape {v.shape}")
    n = v.shape[1]
    if n == 0:
        raise ValueError("need at least one patient (column)")
    mean = v.mean(axis=1)
    se = v.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, mean - Z95 * se, mean + Z95 * se


def _pain_with_baseline(o: ArmOutcome, weeks: int | None = None) -> np.ndarray:
    """Pain as ``(weeks + 1, n)``: row 0 the enrolment-day pain, row w the mean pain of week w."""
    pain = o.pain if weeks is None else o.pain[:weeks]
    return np.vstack([o.baseline_pain[None, :], pain])


def _cumulative_dropout(o: ArmOutcome, weeks: int | None = None) -> np.ndarray:
    """Dropped-out indicator as ``(weeks + 1, n)`` floats, 0 at week 0 and never undone."""
    d = o.dropped_out if weeks is None else o.dropped_out[:weeks]
    d = np.maximum.accumulate(d.astype(bool), axis=0)
    return np.vstack([np.zeros((1, d.shape[1])), d.astype(float)])


def _style(key: str) -> _ArmStyle:
    arm = key.rsplit("/", 1)[-1]
    return _ARMS.get(arm, _ArmStyle(arm, "#333333"))


def band_line(ax: Axes, values: np.ndarray, style: _ArmStyle, label: str | None = None) -> None:
    """Plot the mean of ``values`` (``(weeks + 1, n)``, row = week 0..) with its 95 % band on ``ax``."""
    mean, lo, hi = trajectory_band(values)
    x = np.arange(len(mean))
    ax.fill_between(x, lo, hi, color=style.color, alpha=0.18, linewidth=0)
    ax.plot(x, mean, color=style.color, linestyle=style.linestyle, label=label or style.label)


def _trajectory_panel(
    ax: Axes,
    outcomes: dict[str, ArmOutcome],
    keys: Sequence[str],
    title: str,
    weeks: int | None = None,
    stop_week: int | None = None,
    labels: dict[str, str] | None = None,
) -> None:
    """Pain trajectories with bands for the arms in ``keys`` that exist in ``outcomes``."""
    plotted = 0
    for key in keys:
        o = outcomes.get(key)
        if o is None:
            continue
        band_line(ax, _pain_with_baseline(o, weeks), _style(key), (labels or {}).get(key))
        plotted += 1
    if stop_week is not None:
        ax.axvline(stop_week, color="black", linewidth=0.9, linestyle=":")
        ax.annotate("programme stops", xy=(stop_week, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -3), textcoords="offset points", ha="left", va="top", fontsize=8)
    _finish(ax, title, WEEK_LABEL, PAIN_LABEL, plotted)


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str, plotted: int, legend_loc: str = "best") -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if plotted:
        ax.set_xlim(left=0)
        ax.legend(loc=legend_loc, frameon=False)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="grey")


def _bar_panel(
    ax: Axes,
    names: Sequence[str],
    colors: Sequence[str],
    means: Sequence[float],
    ses: Sequence[float],
    title: str,
    ylabel: str,
    fmt: str,
) -> None:
    """Bars with 95 % error bars (± 1.96 SE) and value labels."""
    if not names:
        _finish(ax, title, "", ylabel, 0)
        return
    x = np.arange(len(names))
    err = Z95 * np.asarray(ses)
    ax.bar(x, means, color=colors, alpha=0.85, yerr=err, capsize=3, error_kw={"linewidth": 1.0})
    for xi, m, e in zip(x, means, err, strict=True):
        ax.annotate(fmt.format(m), xy=(xi, m + e), xytext=(0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    ax.margins(y=0.12)


def _new_figure(
    ncols: int, nrows: int = 1, width: float = 5.6, height: float = 4.0, sharey: bool = False
) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure (no pyplot) and its axes, flattened row-major."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel()
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _fig_knee_pain(outcomes: dict[str, ArmOutcome], path: Path) -> Path:
    fig, (left, right) = _new_figure(2, sharey=True)
    _trajectory_panel(left, outcomes, ["knee_oa/none", "knee_oa/attention_control", "knee_oa/glad_2x",
                                       "knee_oa/supervised_3x"],
                      "Knee OA: pain by arm, 16 weeks", weeks=16, stop_week=12)
    _trajectory_panel(right, outcomes, ["knee_oa/none", "knee_oa/glad_2x"],
                      "Knee OA: retention after stopping, 52 weeks", stop_week=12)
    fig.suptitle("Knee OA pain trajectories (mean, 95 % CI)", fontweight="bold")
    return _save(fig, path)


def _fig_intensity(outcomes: dict[str, ArmOutcome], path: Path) -> Path:
    fig, axes = _new_figure(2, 2, height=3.8)
    axes[1].sharey(axes[0])
    _trajectory_panel(axes[0], outcomes, ["knee_oa/high_intensity", "knee_oa/low_intensity"],
                      "High vs low intensity (3x/wk supervised)", stop_week=12)
    _trajectory_panel(axes[1], outcomes, ["knee_oa/glad_2x", "knee_oa/abrupt_high", "knee_oa/plus50_per_week"],
                      "Abrupt / rapid vs gradual loading (2x/wk)", weeks=16, stop_week=12)
    keys = ["knee_oa/glad_2x", "knee_oa/low_intensity", "knee_oa/high_intensity", "knee_oa/abrupt_high",
            "knee_oa/plus50_per_week"]
    present = [(k, outcomes[k]) for k in keys if k in outcomes]
    names = [_style(k).label for k, _ in present]
    colors = [_style(k).color for k, _ in present]
    # flares over the first 12 weeks: Poisson SE of the per-patient rate, sqrt(mean / n)
    flares = [o.flares[:12].sum(axis=0) for _, o in present]
    f_mean = [float(f.mean()) for f in flares]
    f_se = [float(np.sqrt(max(m, 0.0) / f.size)) for m, f in zip(f_mean, flares, strict=True)]
    _bar_panel(axes[2], names, colors, f_mean, f_se, "Flares per patient, weeks 1-12", "flares per patient",
               "{:.2f}")
    # dropout by week 12: binomial SE, sqrt(p (1 - p) / n)
    drop = [_cumulative_dropout(o, 12)[-1] for _, o in present]
    d_mean = [float(d.mean()) for d in drop]
    d_se = [float(np.sqrt(p * (1.0 - p) / d.size)) for p, d in zip(d_mean, drop, strict=True)]
    _bar_panel(axes[3], names, colors, d_mean, d_se, "Dropout by week 12", "dropped out (% of patients)",
               "{:.0%}")
    axes[3].yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    fig.suptitle("Knee OA: intensity and load progression (mean, 95 % CI)", fontweight="bold")
    return _save(fig, path)


def _fig_conditions(outcomes: dict[str, ArmOutcome], path: Path) -> Path:
    fig, axes = _new_figure(2)
    for ax, (cond, title) in zip(axes, (("chronic_low_back_pain", "Chronic low back pain (resistance)"),
                                        ("fibromyalgia", "Fibromyalgia (aerobic)")), strict=True):
        _trajectory_panel(ax, outcomes, [f"{cond}/none", f"{cond}/exercise_2x"], title)
    fig.suptitle("Other conditions: exercise 2x/wk supervised vs none (mean, 95 % CI)", fontweight="bold")
    return _save(fig, path)


def _fig_dropout(outcomes: dict[str, ArmOutcome], path: Path) -> Path:
    fig, (ax,) = _new_figure(1, width=6.4, height=4.2)
    plotted = 0
    colors = {"knee_oa/supervised_16w": "#1f77b4", "knee_oa/home_16w": "#ff7f0e",
              "fibromyalgia/exercise_2x": "#2ca02c"}
    labels = {"knee_oa/supervised_16w": "knee OA, supervised 2x/wk", "knee_oa/home_16w": "knee OA, home 3x/wk",
              "fibromyalgia/exercise_2x": "fibromyalgia, aerobic 2x/wk"}
    for key, (target, low, high) in DROPOUT_TARGETS.items():
        o = outcomes.get(key)
        if o is None:
            continue
        style = _ArmStyle(labels[key], colors[key])
        band_line(ax, _cumulative_dropout(o, 16), style)
        ax.errorbar([16.3 + 0.25 * plotted], [target], yerr=[[target - low], [high - target]], fmt="D",
                    color=style.color, markersize=6, markeredgecolor="black", capsize=3,
                    label=f"target {target:.0%} ({low:.0%}-{high:.0%})")
        plotted += 1
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.set_ylim(bottom=0)
    _finish(ax, "Cumulative dropout vs week-16 targets (Vancampfort 2024)", WEEK_LABEL,
            "dropped out (% of patients)", plotted, legend_loc="upper left")
    return _save(fig, path)


def calibration_figures(outcomes: dict[str, ArmOutcome], out_dir: Path) -> list[Path]:
    """Draw the calibration figures and save them as PNGs (dpi 120) in ``out_dir``.

    Args:
        outcomes: per-arm outcomes keyed ``condition/arm``, as returned by
            :func:`adaptrx.patient.calibration.run_suite`. Missing arms are left out of their panels.
        out_dir: output directory (created if needed).

    Returns:
        Paths of the written files: ``pain_trajectories_knee_oa.png``, ``intensity_and_abrupt_knee_oa.png``,
        ``conditions.png`` and ``dropout_curves.png``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = (
        (_fig_knee_pain, "pain_trajectories_knee_oa.png"),
        (_fig_intensity, "intensity_and_abrupt_knee_oa.png"),
        (_fig_conditions, "conditions.png"),
        (_fig_dropout, "dropout_curves.png"),
    )
    with matplotlib.rc_context(_STYLE):
        return [draw(outcomes, out_dir / name) for draw, name in plan]
