"""The committed experiment reports a reviewer reads: one estimand per comparison, and text that cannot drift
from its tables (reports re-rendered from the stored tables, README and card numbers found in generated text)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba

from adaptrx.experiments.trial.app import render_report
from adaptrx.experiments.trial.figures import DIRECTION_COLORS, effect_direction, forest_figure

ROOT = Path(__file__).resolve().parents[2]
RUNS = sorted(p.parent for p in ROOT.glob("experiments/*_trial/*/trial.json"))
CARDS = sorted(ROOT.glob("agents/*/card.md"))
#: "value [low, high]" as the reports print an estimate with its CI.
INTERVAL = re.compile(r"[+-]?\d+\.\d+ \[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]")


def _ids(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def test_the_committed_trials_are_found() -> None:
    assert len(RUNS) == 8  # four conditions x (test, ood)
    assert len(CARDS) == 4


@pytest.mark.parametrize("run_dir", RUNS, ids=_ids)
def test_interval_and_p_value_agree(run_dir: Path) -> None:
    """Every CI and p-value of a table describe the mean difference: a Holm-significant p always has a CI that
    excludes 0, and unadjusted they agree away from the 5 % boundary (bootstrap and Monte Carlo error); a CI
    that excludes 0 without a Holm-significant p is explained by the adjustment (its raw p is small)."""
    for name in ("differences.csv", "safety_differences.csv"):
        d = pd.read_csv(run_dir / name)
        assert len(d) >= 24
        excludes = (d["low"] > 0) | (d["high"] < 0)
        assert excludes[d["p_holm"] < 0.05].all(), d[(d["p_holm"] < 0.05) & ~excludes]
        assert excludes[d["p"] < 0.04].all() and not excludes[d["p"] > 0.06].any()
        assert (d.loc[excludes & (d["p_holm"] >= 0.05), "p"] < 0.06).all()
        np.testing.assert_allclose(d[["better", "worse", "tied"]].sum(axis=1), 1.0)


@pytest.mark.parametrize("run_dir", RUNS, ids=_ids)
def test_report_is_rendered_from_its_tables(run_dir: Path, tmp_path: Path) -> None:
    """report.md is exactly what the code writes from summary.csv, differences.csv, safety_differences.csv,
    subgroups.csv and trial.json: no number in it was typed by hand or left behind by an older table."""
    again = render_report(run_dir, tmp_path / "report.md").read_text()
    assert again == (run_dir / "report.md").read_text()


@pytest.mark.parametrize("run_dir", RUNS[:2], ids=_ids)
def test_forest_colours_follow_the_interval(run_dir: Path) -> None:
    d = pd.read_csv(run_dir / "differences.csv")
    fig = forest_figure(d)
    metrics = list(dict.fromkeys(d["metric"]))
    for ax, metric in zip(fig.axes, metrics, strict=True):
        rows = d[d["metric"] == metric]
        [points] = [c for c in ax.collections if isinstance(c, PathCollection)]
        want = [to_rgba(DIRECTION_COLORS[effect_direction(r.low, r.high, r.lower_is_better)])
                for r in rows.itertuples()]
        np.testing.assert_allclose(points.get_facecolors(), want)


def _normalised(text: str) -> str:
    return text.replace("+", "")


def _sources() -> dict[Path, list[Path]]:
    """Hand-written documents of committed experiments -> the generated files their intervals must come from."""
    reports = sorted(ROOT.glob("experiments/*_trial/*/report.md"))
    baseline = ROOT / "experiments" / "protocols_baseline"
    out = {readme: sorted(readme.parent.glob("*/report.md")) + CARDS
           for readme in ROOT.glob("experiments/*_trial/README.md")}
    out[baseline / "README.md"] = [baseline / "summary.md", baseline / "oracle_sensitivity.md"]
    out[ROOT / "agents" / "notes" / "dagger.md"] = reports + CARDS
    return out


@pytest.mark.parametrize("document", sorted(_sources()), ids=lambda p: str(p.relative_to(ROOT)))
def test_hand_written_intervals_come_from_generated_text(document: Path) -> None:
    """Every "value [low, high]" a README or the development notes quote appears in a generated report or card
    (signs aside: a README may write -0.8 [-2.2, +0.7] points for the report's -0.8 [-2.2, +0.7] pp)."""
    sources = _sources()[document]
    generated = _normalised("\n".join(p.read_text() for p in sources))
    quoted = INTERVAL.findall(document.read_text())
    missing = [q for q in quoted if _normalised(q) not in generated]
    assert not missing, f"{document.relative_to(ROOT)} quotes intervals no generated file holds: {missing}"


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.parent.name)
def test_card_headline_is_its_manifest_evaluation(card: Path) -> None:
    """The card's test headline prints the numbers stored in the manifest (what load_policy users read)."""
    test = json.loads((card.parent / "manifest.json").read_text())["evaluation"]["test"]
    text = card.read_text()
    for key, scale in (("return", 1.0), ("pain_w12", 1.0), ("flares", 1.0), ("dropout", 100.0)):
        value, low, high = (scale * v for v in test[f"{key}_vs_reference"])
        assert f"{key.replace('_', ' ')} {value:+.2f} [{low:+.2f}, {high:+.2f}]" in text, key
