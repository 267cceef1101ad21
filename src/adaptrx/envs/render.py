"""Rendering of a progression episode: a readable weekly text line and a small matplotlib figure."""

from __future__ import annotations

from typing import Any

import numpy as np

from adaptrx.envs.actions import DELIVERY_NAMES


class AnsiRenderer:
    """Formats the latest week of an episode trace as one line of text."""

    def line(self, trace: list[dict[str, Any]], patient_id: str) -> str:
        """``"<patient> week  3 | load 0.36 x3 supervised (attended 2) | pain 4.1 | function 61 | flare"``."""
        if not trace:
            return f"{patient_id} week  0 | intake\n"
        t = trace[-1]
        flags = [flag for flag, on in (("flare", t["flare"]), ("DROPPED OUT", t["dropped_out"])) if on]
        return (
            f"{patient_id} week {t['week']:2d} | load {t['load']:.2f} x{t['sessions']} "
            f"{DELIVERY_NAMES[t['delivery']]} (attended {t['attended']}) | pain {t['pain']:.1f} | "
            f"function {t['function']:.0f} | reward {t['reward']:+.3f}"
            + (" | " + ", ".join(flags) if flags else "") + "\n"
        )


def render_rgb(trace: list[dict[str, Any]], weeks: int, width_px: int = 480, height_px: int = 320) -> np.ndarray:
    """An RGB image (``(height_px, width_px, 3)`` uint8) of true pain, prescribed load and attendance so far."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 80
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax_pain, ax_load = fig.subplots(2, 1, sharex=True)
    w = np.array([t["week"] for t in trace], dtype=float)
    if len(trace):
        ax_pain.plot(w, [t["pain"] for t in trace], color="tab:red", marker="o", ms=3, label="true pain")
        flares = [t["week"] for t in trace if t["flare"]]
        ax_pain.scatter(flares, [10.0] * len(flares) if flares else [], marker="v", color="k", label="flare")
        ax_load.bar(w, [t["load"] for t in trace], color="tab:blue", alpha=0.6, label="load")
        att = [t["attended"] / t["sessions"] if t["sessions"] else np.nan for t in trace]
        ax_att = ax_load.twinx()
        ax_att.plot(w, att, color="tab:green", marker=".", label="attendance")
        ax_att.set_ylim(0, 1.05)
        ax_att.set_ylabel("attended", fontsize=7)
    ax_pain.set_ylim(0, 10.5)
    ax_pain.set_ylabel("pain (NRS)", fontsize=7)
    ax_load.set_ylim(0, 1.55)
    ax_load.set_ylabel("load (x base)", fontsize=7)
    ax_load.set_xlim(0.5, weeks + 0.5)
    ax_load.set_xlabel("week", fontsize=7)
    for ax in (ax_pain, ax_load):
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
