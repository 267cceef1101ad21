"""The clinic's forecast figure: a patient's past pain and the predicted pain under each plan.

Built from :meth:`adaptrx.clinic.recommend.Recommendation.to_dict` output only (plain JSON data), so the same
figure can be drawn from a saved recommendation. Units: pain is NRS 0-10 (past: the weekly means of the
in-session and next-morning reports; forecast: the weekly mean daily pain), load is in baseline-capacity units
(1.0 = the heaviest session tolerated at intake), the x axis is the programme week (week 1 starts the day
after intake). Forecast bands are the 10-90 % (80 %) interval of the fitted posterior predictive
(``pain_q10`` .. ``pain_q90``).

Every figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas: no pyplot, no global figure
registry, safe to call from worker threads of a web server.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = ["PLAN_STYLES", "figure_png", "forecast_figure", "prescription_title"]

#: Colour and line style of the plans the recommendation compares (others get :data:`_EXTRA_COLORS`).
PLAN_STYLES: dict[str, dict[str, Any]] = {
    "recommended": {"color": "#1b7837", "linestyle": "-"},
    "hold": {"color": "#2166ac", "linestyle": "--"},
    "pain_monitoring": {"color": "#b35806", "linestyle": "-."},
}
_EXTRA_COLORS = ("#762a83", "#8c510a", "#01665e", "#c51b7d")
_PAST_SESSION = "#333333"
_PAST_MORNING = "#7f7f7f"
_TODAY = "#b2182b"


def _floats(values: Any, n: int | None = None) -> np.ndarray:
    """``values`` (a list with ``None`` for missing) as a float array with ``NaN`` for missing/invalid entries;
    padded with ``NaN`` or truncated to ``n`` entries when ``n`` is given."""
    out: list[float] = []
    for v in values if isinstance(values, Sequence) and not isinstance(values, str | bytes) else []:
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = math.nan
        out.append(x if math.isfinite(x) else math.nan)
    arr = np.asarray(out, dtype=float)
    if n is not None:
        arr = np.concatenate([arr[:n], np.full(max(n - len(arr), 0), np.nan)])
    return arr


def _fmt_change(x: Any) -> str:
    """A relative load change (0.1 = 10 % more than last week) as ``+10 %``."""
    try:
        return f"{round(float(x) * 100):+d} %"
    except (TypeError, ValueError, OverflowError):
        return "?"


def prescription_title(rec: Mapping[str, Any]) -> str:
    """One line naming next week's prescription, e.g. ``Week 9: 3 supervised sessions at load 0.45 (+10 %)``.

    Load in baseline-capacity units; the change (``prescription.load_change``, a fraction) is relative to the
    last week of the history.
    """
    patient = rec.get("patient") or {}
    p = rec.get("prescription") or {}
    week = patient.get("next_week", "?")
    sessions = p.get("sessions", "?")
    delivery = p.get("delivery", "")
    try:
        load = f"{float(p.get('load')):.2f}"
    except (TypeError, ValueError):
        load = "?"
    change = "" if p.get("load_change") is None else f" ({_fmt_change(p.get('load_change'))} vs last week)"
    noun = "session" if sessions == 1 else "sessions"
    return f"Week {week}: {sessions} {delivery} {noun} at load {load}{change}".replace("  ", " ")


def forecast_figure(rec: Mapping[str, Any], width_in: float = 9.0, height_in: float = 6.0) -> Figure:
    """Past weekly pain and each plan's predicted weekly pain, from a ``Recommendation.to_dict()`` dict.

    Top panel (y: pain, NRS 0-10; x: programme week): left of a vertical "today" line, what was logged: the
    weekly mean in-session pain (filled dots) and next-morning pain (open squares; gaps are weeks without an
    attended session); right of it, labelled as a forecast of another quantity, for every plan in
    ``rec["forecast"]["plans"]`` the median predicted weekly mean daily pain with its 10-90 % band (the
    recommended plan drawn bold, on top and first among the plans in the legend). Bottom panel: prescribed load
    per session (baseline-capacity units) in the history (bars) and each plan's median planned load.

    Args:
        rec: the recommendation as JSON data (keys ``patient``, ``prescription``, ``forecast``, ``history``,
            ``policy``, ``safety``); missing parts are skipped, ``None`` values are gaps.
        width_in, height_in: figure size in inches (drawn at 100 dpi by default).

    Returns:
        A pyplot-free :class:`~matplotlib.figure.Figure` with an Agg canvas attached.
    """
    fig = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax, ax_load = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3.2, 1.0]})

    history = rec.get("history") or {}
    past_weeks = _floats(history.get("weeks"))
    n_past = len(past_weeks)
    during = _floats(history.get("pain_during"), n_past)
    morning = _floats(history.get("pain_next_morning"), n_past)
    past_load = _floats(history.get("load"), n_past)
    if n_past:
        ax.plot(past_weeks, during, color=_PAST_SESSION, marker="o", markersize=5, linewidth=1.2,
                label="logged: in-session pain (weekly mean of the sessions)")
        ax.plot(past_weeks, morning, color=_PAST_MORNING, marker="s", markersize=5, markerfacecolor="white",
                linewidth=1.0, linestyle=":", label="logged: next-morning pain")
        ax_load.bar(past_weeks, np.nan_to_num(past_load, nan=0.0), width=0.7, color="#bdbdbd",
                    edgecolor="#969696", label="past load")

    patient = rec.get("patient") or {}
    forecast = rec.get("forecast") or {}
    weeks = _floats(forecast.get("weeks"))
    next_week = patient.get("next_week")
    if next_week is None:
        next_week = weeks[0] if len(weeks) else (past_weeks[-1] + 1 if n_past else 1)
    today = float(next_week) - 0.5
    for a in (ax, ax_load):
        a.axvline(today, color=_TODAY, linewidth=1.2, linestyle="--", zorder=1)
    ax.annotate("today", xy=(today, 10.0), xytext=(-2, -4), textcoords="offset points", ha="right", va="top",
                rotation=90, color=_TODAY, fontsize=9)
    # two different quantities either side of today: say so on the plot itself
    ax.annotate("logged session reports", xy=(today, 10.0), xytext=(-14, -4), textcoords="offset points",
                ha="right", va="top", color=_PAST_SESSION, fontsize=8)
    ax.annotate("forecast: weekly mean daily pain", xy=(today, 10.0), xytext=(6, -4), textcoords="offset points",
                ha="left", va="top", color="#333333", fontsize=8)

    plans = forecast.get("plans") or {}
    order = [name for name in plans if name != "recommended"] + (["recommended"] if "recommended" in plans else [])
    extra = iter(_EXTRA_COLORS)
    for name in order:
        plan = plans[name] or {}
        style = PLAN_STYLES.get(name) or {"color": next(extra, "#555555"), "linestyle": "--"}
        main = name == "recommended"
        n = len(weeks)
        median = _floats(plan.get("pain_median"), n)
        q10 = _floats(plan.get("pain_q10"), n)
        q90 = _floats(plan.get("pain_q90"), n)
        label = str(plan.get("label") or name.replace("_", " "))
        if main and "recommend" not in label.lower():
            label = f"{label} (recommended)"
        label = "forecast: " + textwrap.shorten(label, width=60, placeholder="…")
        ax.fill_between(weeks, q10, q90, color=style["color"], alpha=0.22 if main else 0.08, linewidth=0,
                        zorder=3 if main else 2)
        ax.plot(weeks, median, color=style["color"], linestyle=style["linestyle"], linewidth=2.6 if main else 1.4,
                marker="o" if main else None, markersize=4, zorder=5 if main else 4, label=label)
        load = _floats(plan.get("load_median"), n)
        if np.isfinite(load).any():
            ax_load.plot(weeks, load, color=style["color"], linestyle=style["linestyle"],
                         linewidth=2.2 if main else 1.2, marker="o" if main else None, markersize=3,
                         zorder=5 if main else 4)

    ax.set_ylim(0.0, 10.0)
    ax.set_yticks(range(0, 11, 2))
    ax.set_ylabel("Pain (NRS 0-10)")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if "recommended" in plans and n_past:  # the recommended plan right after the two past series
        handles.insert(2, handles.pop())
        labels.insert(2, labels.pop())
    if plans:
        handles.append(Patch(facecolor="#999999", alpha=0.3, linewidth=0))
        labels.append("shaded: 10-90 % predicted range")
    if handles:
        fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=min(2, len(handles)),
                   frameon=False)
    ax_load.set_ylabel("Load\n(baseline units)")
    ax_load.set_xlabel("Programme week")
    ax_load.set_ylim(bottom=0.0)
    ax_load.grid(True, alpha=0.3)
    all_weeks = np.concatenate([past_weeks, weeks])
    all_weeks = all_weeks[np.isfinite(all_weeks)]
    if len(all_weeks):
        lo, hi = float(all_weeks.min()), float(all_weeks.max())
        ax_load.set_xlim(lo - 0.6, hi + 0.6)
        step = 1 if hi - lo <= 16 else 2 if hi - lo <= 32 else 4 if hi - lo <= 64 else 8
        ax_load.set_xticks(np.arange(math.ceil(lo), math.floor(hi) + 1, step))

    policy = rec.get("policy") or {}
    bound = (rec.get("safety") or {}).get("bound_by") or []
    subtitle = f"policy {policy.get('id', '?')}"
    if bound:
        subtitle += " · bound by " + ", ".join(str(b) for b in bound)
    pid = patient.get("patient_id")
    head = f"Patient {pid} — " if pid else ""
    ax.set_title(f"{head}{prescription_title(rec)}\n{subtitle}", fontsize=11)
    return fig


def figure_png(rec: Mapping[str, Any], dpi: int = 100) -> bytes:
    """:func:`forecast_figure` rendered as PNG bytes (Agg; ``dpi`` pixels per inch, 900x600 px by default)."""
    fig = forecast_figure(rec)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
