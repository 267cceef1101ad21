"""Report figures of the paired in-silico trial, on small synthetic tables (seeded numpy rng)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from adaptrx.experiments.trial.figures import (
    DIRECTION_COLORS,
    TRAJECTORY_LABELS,
    effect_direction,
    forest_figure,
    format_p,
    mean_trajectories_figure,
    policy_colors,
    safety_figure,
    save_figures,
    subgroup_forest_figure,
    weekly_means,
)

POLICIES = ["pain_monitoring", "ppo", "oracle"]
REFERENCE = "pain_monitoring"


def make_weekly(policies: list[str] = POLICIES, n_patients: int = 6, seeds: tuple[int, ...] = (0, 1),
                weeks: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for policy in policies:
        for p in range(n_patients):
            for s in seeds:
                for w in range(1, weeks + 1):
                    rows.append({
                        "policy": policy, "patient_id": f"P{p:03d}", "seed": s, "week": w,
                        "pain": float(np.clip(rng.normal(5.0 - 0.2 * w, 1.0), 0, 10)),
                        "function": float(rng.uniform(30, 80)), "capacity": float(rng.uniform(0.8, 1.5)),
                        "flares": int(rng.integers(0, 2)), "load": float(rng.uniform(0.2, 1.0)),
                        "sessions_attended": int(rng.integers(0, 4)), "in_programme": bool(rng.random() < 0.9),
                        "extra_column": "ignored",
                    })
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # weeks, patients out of order within each policy
    order = {p: i for i, p in enumerate(policies)}
    return df.sort_values("policy", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def make_summary(policies: list[str] = POLICIES, metrics: tuple[str, ...] = (
        "pain_w12", "flares", "dropped_out", "responder_w12", "composite"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for policy in policies:
        for metric in metrics:
            rate = metric in ("dropped_out", "responder_w12")
            mean = float(rng.uniform(0.05, 0.6) if rate else rng.uniform(0.5, 4.0))
            half = float(rng.uniform(0.01, 0.05) if rate else rng.uniform(0.1, 0.5))
            rows.append({"policy": policy, "metric": metric, "n": 40, "mean": mean, "mean_low": mean - half,
                         "mean_high": mean + 0.5 * half, "iqm": mean, "iqm_low": mean - half,
                         "iqm_high": mean + half})
    return pd.DataFrame(rows)


def make_differences(policies: list[str] = ("ppo", "oracle", "aggressive"), reference: str = REFERENCE,
                     seed: int = 0) -> pd.DataFrame:
    """pain_w12 (lower is better): ppo better, oracle better, aggressive worse; responder_w12 (higher is better):
    ppo neither, oracle better, aggressive worse; flares: rng."""
    rng = np.random.default_rng(seed)
    planned = {
        "pain_w12": (True, [(-0.8, -1.2, -0.4), (-1.5, -2.0, -1.0), (0.6, 0.2, 1.0)]),
        "responder_w12": (False, [(0.05, -0.02, 0.12), (0.3, 0.2, 0.4), (-0.2, -0.3, -0.1)]),
    }
    rows = []
    for metric, (lib, cis) in planned.items():
        for policy, (d, lo, hi) in zip(policies, cis, strict=True):
            rows.append({"policy": policy, "reference": reference, "metric": metric, "n": 40, "diff": d, "low": lo,
                         "high": hi, "p_wilcoxon": 0.01, "p_holm": 0.0004 if lo * hi > 0 else 0.31,
                         "poi": 0.6, "poi_low": 0.5, "poi_high": 0.7, "lower_is_better": lib})
    for policy in policies:
        d = float(rng.normal(0, 0.5))
        rows.append({"policy": policy, "reference": reference, "metric": "flares", "n": 40, "diff": d,
                     "low": d - 0.3, "high": d + 0.3, "p_wilcoxon": 0.02, "p_holm": 0.0031, "poi": 0.5,
                     "poi_low": 0.4, "poi_high": 0.6, "lower_is_better": True})
    return pd.DataFrame(rows)


def make_subgroups(policies: list[str] = ("ppo", "oracle"), reference: str = REFERENCE,
                   seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    levels = {"age_band": [("18-44", 14), ("45-64", 16), ("65+", 10)], "condition": [("knee_oa", 25), ("clbp", 15)]}
    rows = []
    for variable, lv in levels.items():
        for level, n in lv:
            for policy in policies:
                for metric in ("composite", "pain_w12"):
                    d = float(rng.normal(-0.3, 0.4))
                    rows.append({"variable": variable, "level": level, "policy": policy, "reference": reference,
                                 "metric": metric, "n": n, "diff": d, "low": d - 0.25, "high": d + 0.35})
    return pd.DataFrame(rows)


def scatter_collections(ax) -> list[PathCollection]:
    return [c for c in ax.collections if isinstance(c, PathCollection)]


def line_collections(ax) -> list[LineCollection]:
    return [c for c in ax.collections if isinstance(c, LineCollection)]


# ------------------------------------------------------------------------------------------------- helpers


def test_policy_colors_distinct_stable_first_appearance() -> None:
    c = policy_colors(["b", "a", "b", "oracle"])
    assert list(c) == ["b", "a", "oracle"]
    assert len(set(c.values())) == 3
    assert c == policy_colors(["b", "a", "oracle"])  # duplicates ignored, same order -> same colours
    assert all(len(v) == 4 and all(0.0 <= x <= 1.0 for x in v) for v in c.values())
    many = policy_colors([f"p{i}" for i in range(12)])
    assert len(set(many.values())) == 12  # tab20 beyond 10 policies


def test_format_p_and_effect_direction() -> None:
    assert format_p(0.0031) == "p=0.003"
    assert format_p(0.0004) == "p<0.001"
    assert format_p(0.25) == "p=0.250"
    assert format_p(float("nan")) == "p=n/a"
    assert effect_direction(-1.0, -0.1, lower_is_better=True) == "better"
    assert effect_direction(-1.0, -0.1, lower_is_better=False) == "worse"
    assert effect_direction(0.1, 1.0, lower_is_better=False) == "better"
    assert effect_direction(0.1, 1.0, lower_is_better=True) == "worse"
    assert effect_direction(-0.1, 0.1, lower_is_better=True) == "neither"
    assert effect_direction(float("nan"), 0.1, lower_is_better=True) == "neither"


# --------------------------------------------------------------------------------------------- trajectories


@pytest.mark.parametrize("metric", ["pain", "function", "capacity", "load"])
def test_trajectory_lines_equal_groupby_means(metric: str) -> None:
    weekly = make_weekly()
    fig = mean_trajectories_figure(weekly, metric=metric)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == POLICIES
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == len(POLICIES)  # one band each
    expected = weekly.groupby(["policy", "week"])[metric].mean()
    for ln, policy in zip(lines, POLICIES, strict=True):
        np.testing.assert_array_equal(ln.get_xdata(), np.arange(1, 6))
        np.testing.assert_allclose(ln.get_ydata(), expected.loc[policy].to_numpy(), rtol=1e-12)
    assert ax.get_xlabel() == "week"
    assert ax.get_ylabel() == TRAJECTORY_LABELS[metric]
    assert lines[POLICIES.index("oracle")].get_linestyle() == "--"
    assert lines[0].get_linestyle() == "-"


def test_trajectory_band_is_mean_plus_minus_1_96_se() -> None:
    weekly = make_weekly()
    stats = weekly_means(weekly, "pain")
    g = weekly.groupby(["policy", "week"])["pain"]
    se = g.std(ddof=1) / np.sqrt(g.count())
    for _, row in stats.iterrows():
        key = (row["policy"], row["week"])
        assert row["n"] == 12  # 6 patients x 2 seeds
        assert row["low"] == pytest.approx(g.mean()[key] - 1.96 * se[key])
        assert row["high"] == pytest.approx(g.mean()[key] + 1.96 * se[key])
    fig = mean_trajectories_figure(weekly, "pain")
    band = next(c for c in fig.axes[0].collections if isinstance(c, PolyCollection))
    y = band.get_paths()[0].vertices[:, 1]
    s0 = stats[stats["policy"] == POLICIES[0]]
    assert y.min() == pytest.approx(s0["low"].min())
    assert y.max() == pytest.approx(s0["high"].max())


def test_trajectory_policy_subset_order_and_colors() -> None:
    colors = policy_colors(["pain_monitoring", "ppo", "oracle", "other"])
    fig = mean_trajectories_figure(make_weekly(), policies=["oracle", "pain_monitoring"], title="T", colors=colors)
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == ["oracle", "pain_monitoring"]
    assert to_rgba(lines[0].get_color()) == pytest.approx(colors["oracle"])
    assert fig.axes[0].get_title() == "T"


def test_trajectory_single_row_per_week_has_zero_width_band() -> None:
    weekly = make_weekly(policies=["a"], n_patients=1, seeds=(0,))
    stats = weekly_means(weekly, "pain")
    np.testing.assert_array_equal(stats["se"].to_numpy(), 0.0)
    mean_trajectories_figure(weekly, "pain")


def test_trajectory_bad_input() -> None:
    weekly = make_weekly()
    with pytest.raises(ValueError, match=r"weekly.*'pain'"):
        mean_trajectories_figure(weekly.drop(columns="pain"))
    with pytest.raises(ValueError, match=r"weekly.*'week'"):
        mean_trajectories_figure(weekly.drop(columns="week"))
    with pytest.raises(ValueError, match=r"weekly.*empty"):
        mean_trajectories_figure(weekly.iloc[:0])
    with pytest.raises(ValueError, match=r"weekly.*metric 'nope'"):
        mean_trajectories_figure(weekly, metric="nope")
    with pytest.raises(ValueError, match=r"weekly.*policy 'ghost'"):
        mean_trajectories_figure(weekly, policies=["ppo", "ghost"])


# ---------------------------------------------------------------------------------------------------- forest


def test_forest_markers_whiskers_colors_and_p_text() -> None:
    diffs = make_differences()
    fig = forest_figure(diffs)
    metrics = ["pain_w12", "responder_w12", "flares"]
    assert len(fig.axes) == len(metrics)
    expected_dirs = {"pain_w12": ["better", "better", "worse"], "responder_w12": ["neither", "better", "worse"]}
    for ax, metric in zip(fig.axes, metrics, strict=True):
        d = diffs[diffs["metric"] == metric]
        assert metric in ax.get_title()
        scale = 100.0 if metric == "responder_w12" else 1.0  # a rate: drawn in percentage points
        assert ("(pp" in ax.get_title()) == (scale == 100.0)
        assert ax.get_xlabel() == f"difference vs {REFERENCE}"
        [points] = scatter_collections(ax)
        offsets = points.get_offsets()
        np.testing.assert_allclose(offsets[:, 0], scale * d["diff"].to_numpy())
        np.testing.assert_array_equal(offsets[:, 1], [0, 1, 2])
        [whiskers] = line_collections(ax)
        segs = whiskers.get_segments()
        np.testing.assert_allclose([s[0][0] for s in segs], scale * d["low"].to_numpy())
        np.testing.assert_allclose([s[1][0] for s in segs], scale * d["high"].to_numpy())
        assert any(np.allclose(ln.get_xdata(), 0.0) for ln in ax.get_lines())  # the zero line
        np.testing.assert_array_equal(ax.get_yticks(), [0, 1, 2])
        texts = [t.get_text() for t in ax.texts]
        assert texts == [format_p(p) for p in d["p_holm"]]
        if metric in expected_dirs:
            want = [to_rgba(DIRECTION_COLORS[k]) for k in expected_dirs[metric]]
            np.testing.assert_allclose(points.get_facecolors(), want)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["ppo", "oracle", "aggressive"]  # left column
    assert [t.get_text() for t in fig.axes[0].texts] == ["p<0.001", "p<0.001", "p<0.001"]
    assert [t.get_text() for t in fig.axes[2].texts] == ["p=0.003"] * 3


def test_forest_metric_selection_order_and_missing_rows() -> None:
    diffs = make_differences()
    diffs = diffs[~((diffs["policy"] == "oracle") & (diffs["metric"] == "flares"))]
    fig = forest_figure(diffs, metrics=["flares", "pain_w12"], title="F")
    assert [ax.get_title().split(" ")[0] for ax in fig.axes] == ["flares", "pain_w12"]
    [points] = scatter_collections(fig.axes[0])
    np.testing.assert_array_equal(points.get_offsets()[:, 1], [0, 2])  # oracle's row left empty
    assert fig._suptitle.get_text() == "F"


def test_forest_bad_input() -> None:
    diffs = make_differences()
    with pytest.raises(ValueError, match=r"differences.*'p_holm'"):
        forest_figure(diffs.drop(columns="p_holm"))
    with pytest.raises(ValueError, match=r"differences.*empty"):
        forest_figure(diffs.iloc[:0])
    with pytest.raises(ValueError, match=r"differences.*metric 'nope'"):
        forest_figure(diffs, metrics=["pain_w12", "nope"])
    two_refs = pd.concat([diffs, diffs.assign(reference="oracle")])
    with pytest.raises(ValueError, match=r"differences.*'reference'"):
        forest_figure(two_refs)
    fig = forest_figure(two_refs, reference="oracle")
    assert fig.axes[0].get_xlabel() == "difference vs oracle"


# ---------------------------------------------------------------------------------------------------- safety


def test_safety_bar_heights_and_error_bars() -> None:
    summary = make_summary()
    fig = safety_figure(summary)
    assert len(fig.axes) == 3
    for ax, (metric, scale) in zip(fig.axes, [("flares", 1.0), ("dropped_out", 100.0), ("responder_w12", 100.0)],
                                   strict=True):
        d = summary[summary["metric"] == metric].set_index("policy").loc[POLICIES]
        heights = [p.get_height() for p in ax.patches]
        np.testing.assert_allclose(heights, d["mean"].to_numpy() * scale)
        [err] = line_collections(ax)  # the error bars
        segs = err.get_segments()
        np.testing.assert_allclose([s[0][1] for s in segs], d["mean_low"].to_numpy() * scale)
        np.testing.assert_allclose([s[1][1] for s in segs], d["mean_high"].to_numpy() * scale)
        assert [t.get_text() for t in ax.get_xticklabels()] == POLICIES
    assert "%" in fig.axes[1].get_ylabel() and "%" in fig.axes[2].get_ylabel()
    assert fig.axes[0].patches[POLICIES.index("oracle")].get_hatch() == "//"


def test_safety_skips_absent_panel_and_rejects_bad_input() -> None:
    summary = make_summary(metrics=("flares", "responder_w12"))
    fig = safety_figure(summary, policies=["ppo", "pain_monitoring"])
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["ppo", "pain_monitoring"]
    assert len(fig.axes[1].patches) == 2
    with pytest.raises(ValueError, match=r"summary.*'mean_high'"):
        safety_figure(summary.drop(columns="mean_high"))
    with pytest.raises(ValueError, match=r"summary.*metrics"):
        safety_figure(make_summary(metrics=("pain_w12",)))
    with pytest.raises(ValueError, match=r"summary.*empty"):
        safety_figure(summary.iloc[:0])


# ------------------------------------------------------------------------------------------------- subgroups


def test_subgroup_forest_rows_markers_and_offsets() -> None:
    subgroups = make_subgroups()
    fig = subgroup_forest_figure(subgroups, "composite")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["age_band: 18-44 (n=14)", "age_band: 45-64 (n=16)", "age_band: 65+ (n=10)",
                      "condition: knee_oa (n=25)", "condition: clbp (n=15)"]
    scatters = scatter_collections(ax)
    assert [c.get_label() for c in scatters] == ["ppo", "oracle"]
    assert len(line_collections(ax)) == 2
    ys = []
    for c in scatters:
        d = subgroups[(subgroups["metric"] == "composite") & (subgroups["policy"] == c.get_label())]
        off = c.get_offsets()
        np.testing.assert_allclose(off[:, 0], d["diff"].to_numpy())
        np.testing.assert_allclose(np.round(off[:, 1]), np.arange(5))  # row index, plus a small offset
        ys.append(off[:, 1])
    assert np.all(ys[0] < ys[1])  # offset apart, first policy on top (axis inverted)
    assert np.all(np.abs(ys[0] - ys[1]) > 0.1)
    assert any(np.allclose(ln.get_xdata(), 0.0) for ln in ax.get_lines())
    assert REFERENCE in ax.get_xlabel()


def test_subgroup_forest_policy_subset_and_bad_input() -> None:
    subgroups = make_subgroups()
    fig = subgroup_forest_figure(subgroups, "pain_w12", policies=["oracle"])
    assert [c.get_label() for c in scatter_collections(fig.axes[0])] == ["oracle"]
    with pytest.raises(ValueError, match=r"subgroups.*metric 'nope'"):
        subgroup_forest_figure(subgroups, "nope")
    with pytest.raises(ValueError, match=r"subgroups.*'variable'"):
        subgroup_forest_figure(subgroups.drop(columns="variable"), "composite")
    with pytest.raises(ValueError, match=r"subgroups.*policy 'ghost'"):
        subgroup_forest_figure(subgroups, "composite", policies=["ghost"])


# ------------------------------------------------------------------------------------------- scale and save


def test_twelve_policies_four_metrics_build() -> None:
    policies = [f"policy_{i:02d}" for i in range(12)]
    weekly = make_weekly(policies=policies, n_patients=2, seeds=(0,), weeks=3)
    assert len(mean_trajectories_figure(weekly).axes[0].get_lines()) == 12
    assert len(safety_figure(make_summary(policies=policies)).axes[0].patches) == 12
    diffs = pd.concat([make_differences(policies=policies[i:i + 3]) for i in (1, 4, 7)], ignore_index=True)
    diffs = pd.concat([diffs, diffs[diffs["metric"] == "flares"].assign(metric="composite")], ignore_index=True)
    fig = forest_figure(diffs)
    assert len(fig.axes) == 4
    assert fig.get_figheight() > 6.0  # rows get room as policies grow
    assert len(scatter_collections(subgroup_forest_figure(make_subgroups(policies=policies), "composite")
                                   .axes[0])) == 12


def test_save_figures_writes_readable_pngs(tmp_path: Path) -> None:
    figures = {"trajectories": mean_trajectories_figure(make_weekly()), "safety": safety_figure(make_summary())}
    paths = save_figures(figures, tmp_path / "figs", dpi=50)
    assert paths == [tmp_path / "figs" / "trajectories.png", tmp_path / "figs" / "safety.png"]
    for path, fig in zip(paths, figures.values(), strict=True):
        assert path.stat().st_size > 0
        img = mpimg.imread(path)
        w, h = fig.get_size_inches() * 50
        assert img.shape[:2] == (round(h), round(w))
    with pytest.raises(ValueError, match="name"):
        save_figures({"../escape": figures["safety"]}, tmp_path)
    with pytest.raises(ValueError, match="Figure"):
        save_figures({"x": "not a figure"}, tmp_path)  # type: ignore[dict-item]


def test_forest_marks_the_mcid_in_the_units_drawn() -> None:
    diffs = make_differences()
    diffs["mcid"] = diffs["metric"].map({"pain_w12": 1.0, "responder_w12": 0.10, "flares": np.nan})
    fig = forest_figure(diffs)
    for ax, (metric, want) in zip(fig.axes, [("pain_w12", [-1.0, 1.0]), ("responder_w12", [-10.0, 10.0]),
                                             ("flares", [])], strict=True):
        assert metric in ax.get_title()
        marks = sorted(float(ln.get_xdata()[0]) for ln in ax.get_lines() if ln.get_linestyle() == ":")
        np.testing.assert_allclose(marks, want)
    assert "+-MCID" in [t.get_text() for t in fig.legends[0].get_texts()]
