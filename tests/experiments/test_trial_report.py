"""Markdown of the trial reports: tables, intervals, p-values, automatic findings and the report file."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba

from adaptrx.experiments.trial.analysis import METRICS, compare, mcids, subgroups, summarize
from adaptrx.experiments.trial.figures import DIRECTION_COLORS, forest_figure
from adaptrx.experiments.trial.report import (
    COLUMNS,
    differences_table,
    findings,
    interval,
    markdown_table,
    p_value,
    significant,
    summary_table,
    write_report,
)

REF = "pain_monitoring"
MCID = mcids()


def _cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |")
    return [c.strip() for c in line[2:-2].split(" | ")]


# markdown_table -----------------------------------------------------------------------------------------------


def test_markdown_table_shape_and_cells() -> None:
    frame = pd.DataFrame({
        "policy": ["a", "b", "c"],
        "flag": [True, False, True],
        "value": [1.23456, np.nan, -0.5],
        "count": [1, 20, 300],
    })
    lines = markdown_table(frame, digits=3).split("\n")
    assert len(lines) == 2 + len(frame)
    assert _cells(lines[0]) == ["policy", "flag", "value", "count"]
    assert lines[1] == "|---|---|---|---|"
    assert [_cells(x) for x in lines[2:]] == [["a", "yes", "1.235", "1"], ["b", "no", "", "20"],
                                              ["c", "yes", "-0.500", "300"]]
    for line in lines:
        assert line.count("|") == frame.shape[1] + 1


def test_markdown_table_digits_and_numpy_scalars() -> None:
    frame = pd.DataFrame({"x": np.array([0.125, 2.0], dtype=np.float32), "ok": np.array([True, False])})
    lines = markdown_table(frame, digits=1).split("\n")
    assert _cells(lines[2]) == ["0.1", "yes"] and _cells(lines[3]) == ["2.0", "no"]
    assert _cells(markdown_table(frame).split("\n")[2]) == ["0.12", "yes"]  # default 2 digits
    # bools in an object column (mixed with NaN) still render as yes/no, the NaN as empty
    mixed = pd.DataFrame({"m": pd.Series([True, np.nan, False], dtype=object)})
    assert [_cells(x) for x in markdown_table(mixed).split("\n")[2:]] == [["yes"], [""], ["no"]]


def test_markdown_table_of_an_empty_frame_is_a_header() -> None:
    lines = markdown_table(pd.DataFrame(columns=["a", "b"])).split("\n")
    assert lines == ["| a | b |", "|---|---|"]


# interval, p_value --------------------------------------------------------------------------------------------


def test_interval_formats() -> None:
    assert interval(0.123, 0.05, 0.2, "responder_w12") == "12.3 [5.0, 20.0] %"
    assert interval(0.1, 0.05, 0.15, "dropped_out") == "10.0 [5.0, 15.0] %"
    assert interval(-0.04, -0.08, 0.0, "dropped_out", signed=True) == "-4.0 [-8.0, +0.0] pp"  # a rate difference
    assert interval(-0.5, -0.8, -0.2, "pain_change_w12", signed=True) == "-0.50 [-0.80, -0.20]"
    assert interval(0.5, 0.2, 0.8, "flares", signed=True) == "+0.50 [+0.20, +0.80]"
    assert interval(5.678, 5.0, 6.25, "pain_w12") == "5.68 [5.00, 6.25]"
    assert interval(0.62, 0.55, 0.7) == "0.62 [0.55, 0.70]"  # no metric: plain numbers, not %


def test_p_value_formats() -> None:
    assert p_value(0.0) == "<0.001"
    assert p_value(0.000999) == "<0.001"
    assert p_value(0.001) == "0.001"
    assert p_value(0.0456) == "0.046"
    assert p_value(1.0) == "1.000"


# significant --------------------------------------------------------------------------------------------------


def _diff(diff: float, low: float, high: float, p_holm: float = 0.001, lower_is_better: bool = True,
          metric: str = "pain_change_w12", policy: str = "ppo", clinical: str = "") -> dict:
    return {"policy": policy, "reference": REF, "metric": metric, "n": 100, "diff": diff, "low": low, "high": high,
            "p": p_holm / 4, "p_holm": p_holm, "median": diff, "better": 0.5, "worse": 0.4, "tied": 0.1, "poi": 0.5,
            "poi_low": 0.45, "poi_high": 0.55, "mcid": np.nan, "clinical": clinical,
            "lower_is_better": lower_is_better}


@pytest.mark.parametrize(("row", "expected"), [
    (_diff(-0.5, -0.8, -0.2), 1),  # lower is better, lower: better
    (_diff(0.5, 0.2, 0.8), -1),  # lower is better, higher: worse
    (_diff(0.1, 0.05, 0.15, lower_is_better=False), 1),  # higher is better, higher: better
    (_diff(-0.1, -0.15, -0.05, lower_is_better=False), -1),  # higher is better, lower: worse
    (_diff(-0.5, -0.8, 0.1), 0),  # CI contains 0
    (_diff(-0.5, -0.8, 0.0), 0),  # CI touches 0
    (_diff(-0.5, -0.8, -0.2, p_holm=0.2), 0),  # Holm p not small enough
    (_diff(-0.5, -0.8, -0.2, p_holm=0.05), 0),  # p == alpha: not significant
    (_diff(-0.5, -0.8, -0.2, p_holm=0.049), 1),
])
def test_significant(row: dict, expected: int) -> None:
    assert significant(SimpleNamespace(**row)) == expected
    assert significant(next(pd.DataFrame([row]).itertuples())) == expected


def test_significant_alpha() -> None:
    row = SimpleNamespace(**_diff(-0.5, -0.8, -0.2, p_holm=0.02))
    assert significant(row, alpha=0.05) == 1
    assert significant(row, alpha=0.01) == 0


# findings -----------------------------------------------------------------------------------------------------


def _summary(means: dict[str, dict[str, float]]) -> pd.DataFrame:
    rows = []
    for policy, by_metric in means.items():
        for metric, mean in by_metric.items():
            rows.append({"policy": policy, "metric": metric, "n": 100, "mean": mean, "mean_low": mean - 0.1,
                         "mean_high": mean + 0.1, "iqm": mean, "iqm_low": mean - 0.1, "iqm_high": mean + 0.1})
    return pd.DataFrame(rows)


SUMMARY = _summary({
    REF: {"return": 5.0, "pain_change_w12": -1.0, "composite": 6.0, "flares": 1.0, "dropped_out": 0.10,
          "responder_w12": 0.3},
    "ppo": {"return": 4.0, "pain_change_w12": -1.5, "composite": 6.5, "flares": 1.4, "dropped_out": 0.05,
            "responder_w12": 0.5},
    "oracle": {"return": 6.5, "pain_change_w12": -1.2, "composite": 5.0, "flares": 0.9, "dropped_out": 0.08,
               "responder_w12": 0.4},
})
DIFFERENCES = pd.DataFrame([
    _diff(-1.0, -1.3, -0.7, metric="return", lower_is_better=False, policy="ppo"),  # worse on the headline
    _diff(-0.5, -0.7, -0.3, policy="ppo", clinical="better, below MCID"),
    _diff(0.4, 0.2, 0.6, metric="flares", policy="ppo", clinical="worse, possibly important"),
    _diff(0.2, 0.1, 0.3, lower_is_better=False, metric="responder_w12", policy="ppo"),
    _diff(-0.05, -0.09, -0.01, metric="dropped_out", policy="ppo", p_holm=0.3),  # CI excludes 0, p does not
    _diff(1.5, 1.0, 2.0, metric="return", lower_is_better=False, policy="oracle"),
    _diff(-0.2, -0.5, 0.1, policy="oracle", clinical="inconclusive"),
    _diff(-0.1, -0.3, 0.1, metric="flares", policy="oracle"),
])


def test_findings_lead_with_the_headline_objective() -> None:
    lines = findings(SUMMARY, DIFFERENCES, REF)
    assert lines[0] == ("Headline objective, the episode return under the env's default reward (higher is better): "
                        f"`oracle` 6.50, `{REF}` 5.00, `ppo` 4.00 per patient.")


def test_findings_name_no_trivial_winner_of_a_harm_outcome() -> None:
    """ppo has the lowest dropout but is worse on the return: the best on dropout is named among the others, and
    ppo's lower dropout is called trivial. Benefit outcomes name the best policy whatever its return."""
    best = [x for x in findings(SUMMARY, DIFFERENCES, REF) if x.startswith("Best on")]
    among = f"among the policies not worse than `{REF}` on the return"
    assert best == [
        f"Best on {METRICS['pain_change_w12'][0]}: `ppo` (-1.50).",
        f"Best on {METRICS['responder_w12'][0]}: `ppo` (50.0 %).",
        f"Best on {METRICS['flares'][0]} {among}: `oracle` (0.90).",
        f"Best on {METRICS['dropped_out'][0]} {among}: `oracle` (8.0 %). `ppo` (5.0 %) is lower only trivially, at "
        f"the cost of the headline objective: return -1.00 [-1.30, -0.70] against `{REF}`.",
        f"Best on {METRICS['composite'][0]} {among}: `oracle` (5.00).",
    ]


def test_findings_lists_better_and_worse_per_policy() -> None:
    lines = findings(SUMMARY, DIFFERENCES, REF)
    verdicts = [x for x in lines if not x.startswith(("Best on", "Headline"))]
    assert verdicts == [
        f"`ppo` vs `{REF}`: return -1.00 [-1.30, -0.70] (p 0.001, worse); components better on pain_change_w12 "
        "-0.50 [-0.70, -0.30] (below MCID); responder_w12 +20.0 [+10.0, +30.0] pp; worse on flares +0.40 [+0.20, "
        "+0.60] (possibly important); no difference shown on dropped_out.",
        f"`oracle` vs `{REF}`: return +1.50 [+1.00, +2.00] (p 0.001, better); components better on nothing; worse "
        "on nothing; no difference shown on pain_change_w12, flares.",
    ]


def test_findings_skips_outcomes_absent_from_the_summary() -> None:
    lines = findings(SUMMARY[SUMMARY["metric"] == "flares"], DIFFERENCES.iloc[:0], REF)
    assert lines == [f"Best on {METRICS['flares'][0]} among the policies not worse than `{REF}` on the return: "
                     "`oracle` (0.90)."]


# tables from the analysis -------------------------------------------------------------------------------------


def make_results(n_patients: int = 120, seed: int = 0) -> pd.DataFrame:
    """Three policies on the same patient-episodes: ``ppo`` clearly lowers pain and raises flares; ``random`` is
    the reference plus small symmetric noise."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in (0, 1):
        n = n_patients
        keys = {"condition": "knee_oa", "split": "test", "patient_id": [f"s{s}-{i:04d}" for i in range(n)], "seed": s,
                "sensitization_tercile": np.array(["low", "middle", "high"])[np.arange(n) % 3],
                "sex": np.where(np.arange(n) % 2 == 0, "F", "M")}
        change = rng.normal(-1.0, 1.5, n)
        flares = rng.poisson(1.0, n).astype(float)
        dropped = rng.random(n) < 0.2
        function = rng.normal(5.0, 5.0, n)
        base = {"pain_w12": 6.0 + change, "pain_change_w12": change, "responder_w12": change <= -2.0,
                "flares": flares, "dropped_out": dropped, "function_change": function, "cost": flares,
                "composite": 6.0 + change + flares + 2.0 * dropped}
        ppo = dict(base, pain_change_w12=change - 1.0 + rng.normal(0, 0.1, n), flares=flares + 1.0,
                   composite=base["composite"] + 0.3 + rng.normal(0, 0.1, n))
        rnd = {k: (v + rng.normal(0, 0.01, n) if v.dtype == float else v) for k, v in base.items()}
        for policy, values in ((REF, base), ("ppo", ppo), ("random", rnd)):
            frames.append(pd.DataFrame({"policy": policy, **keys, **values}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def analysis() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    r = make_results()
    return (summarize(r, n_boot=300), compare(r, REF, n_boot=300),
            subgroups(r, REF, n_boot=200))


def test_summary_table_cells(analysis: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    summary, _, _ = analysis
    text = summary_table(summary, ["pain_change_w12", "responder_w12", "pain_w26"])  # pain_w26: absent
    lines = text.split("\n")
    assert _cells(lines[0]) == ["policy", "pain_change_w12", "responder_w12"]
    assert [_cells(x)[0] for x in lines[2:]] == [REF, "ppo", "random"]
    by = summary.set_index(["policy", "metric"])
    ppo = _cells(lines[3])
    r = by.loc[("ppo", "pain_change_w12")]
    assert ppo[1] == f"{r['mean']:.2f} [{r['mean_low']:.2f}, {r['mean_high']:.2f}]"
    r = by.loc[("ppo", "responder_w12")]
    assert ppo[2] == f"{100 * r['mean']:.1f} [{100 * r['mean_low']:.1f}, {100 * r['mean_high']:.1f}] %"
    iqm = _cells(summary_table(summary, ["pain_change_w12"], statistic="iqm").split("\n")[3])
    r = by.loc[("ppo", "pain_change_w12")]
    assert iqm[1] == f"{r['iqm']:.2f} [{r['iqm_low']:.2f}, {r['iqm_high']:.2f}]"


def test_summary_table_leaves_a_policy_without_the_metric_empty() -> None:
    s = SUMMARY[~((SUMMARY["policy"] == "ppo") & (SUMMARY["metric"] == "flares"))]
    lines = summary_table(s, ["flares"]).split("\n")
    assert _cells(lines[3]) == ["ppo", ""]
    assert _cells(lines[2]) == [REF, "1.00 [0.90, 1.10]"]


def test_differences_table_cells(analysis: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    _, differences, _ = analysis
    lines = differences_table(differences, ["pain_change_w12", "flares"]).split("\n")
    assert _cells(lines[0]) == ["policy", "metric", f"mean difference vs {REF} [95 % CI]", "p (Holm)", "clinical",
                                "median difference", "better / worse / tied", "P(improvement)"]
    assert len(lines) == 2 + 4  # 2 policies x 2 metrics
    rows = {(c[0], c[1]): c for c in map(_cells, lines[2:])}
    pain = rows[("ppo", "pain_change_w12")]
    assert pain[2].startswith("-1.0") and pain[3] == "<0.001"
    assert rows[("ppo", "flares")][2] == "+1.00 [+1.00, +1.00]"
    assert all(float(rows[k][3].lstrip("<")) >= 0 for k in rows)
    assert len(differences_table(differences).split("\n")) == 2 + len(differences)


# write_report -------------------------------------------------------------------------------------------------


FACTS = {"patients": 240, "condition": "knee_oa", "split": "test", "seeds": "0,1", "weeks": 12, "level": 0.95,
         "seconds": 12.34, "version": "0.0.test"}
POLICIES = [{"label": REF, "kind": "protocol", "checkpoint": None}, {"label": "ppo", "kind": "ppo",
                                                                      "checkpoint": "runs/ppo/model.zip"},
            {"label": "random", "kind": "random", "checkpoint": None}]


def test_write_report(tmp_path: Path, analysis: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    summary, differences, groups = analysis
    figures = {"figures/forest.png": "Paired differences vs the reference",
               "figures/safety.png": "Flares and dropout"}
    command = "adaptrx-trial policies=[pain_monitoring,ppo,random] n_patients=120"
    path = write_report(tmp_path / "report.md", title="Trial test: knee_oa, test", command=command,
                        config_yaml="name: test\nweeks: 12\n", policies=POLICIES, summary=summary,
                        differences=differences, subgroup_table=groups, figures=figures, facts=FACTS,
                        reference=REF, mcid=MCID)
    assert path == tmp_path / "report.md"
    text = path.read_text()
    assert text.startswith("# Trial test: knee_oa, test\n")
    assert f"```bash\n{command}\n```" in text
    assert "240 patient-episodes per policy (knee_oa, `test` split, seeds 0,1, 12 weeks)" in text
    assert "95 % CI over patients" in text and "Run time 12.3 s; adaptrx 0.0.test." in text
    for line in findings(summary, differences, REF):
        assert f"- {line}\n" in text
    assert "`ppo` vs `pain_monitoring`: components better on pain_change_w12" in text  # no return column here
    # every outcome and column is defined once; the MCIDs are listed with their sources
    for metric in ("return", "pain_change_w12", "responder_w12", "function_change", "flares", "dropped_out", "cost",
                   "composite"):
        assert text.count(f"- `{metric}`: ") == 1
    for column in COLUMNS:
        assert text.count(f"- {column}: ") == 1
    assert "| pain_change_w12 | 1.0 NRS points | Busse et al. 2018" in text
    assert "worse on flares +1.00" in text
    assert summary_table(summary, ["return", "pain_w12", "pain_change_w12", "responder_w12", "function_change",
                                   "flares", "dropped_out", "cost", "composite"]) in text
    assert differences_table(differences) in text
    assert "| label | kind | checkpoint |" in text and "runs/ppo/model.zip" in text and "None" not in text
    assert f"## Subgroups: {METRICS['pain_change_w12'][0]}, policy minus `{REF}`" in text
    assert "| variable | level | policy | n | difference |" in text
    assert "| sensitization_tercile | high | ppo | 80 |" in text
    for name, caption in figures.items():
        assert f"![{caption}]({name})" in text
    assert "```yaml\nname: test\nweeks: 12\n```" in text
    # the sections in their order
    heads = [x for x in text.split("\n") if x.startswith("## ")]
    assert heads == ["## Findings (from the numbers below)", "## Policies", "## Definitions",
                     "## Outcomes per policy (mean [95 % CI])",
                     f"## Paired differences vs `{REF}`",
                     f"## Subgroups: {METRICS['pain_change_w12'][0]}, policy minus `{REF}`", "## Figures",
                     "## Config"]


def test_write_report_without_subgroups_or_figures(tmp_path: Path,
                                                   analysis: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    summary, differences, _ = analysis
    for groups in (None, pd.DataFrame()):
        text = write_report(tmp_path / "r.md", title="t", command="adaptrx-trial", config_yaml="a: 1",
                            policies=POLICIES, summary=summary, differences=differences, subgroup_table=groups,
                            figures={}, facts=FACTS, reference=REF, mcid=MCID).read_text()
        assert "## Subgroups" not in text and "## Figures" not in text and "![" not in text
        assert "## Config" in text


def test_write_report_of_a_reference_only_trial(tmp_path: Path) -> None:
    r = make_results(30)
    r = r[r["policy"] == REF]
    summary, differences = summarize(r, n_boot=50), compare(r, REF, n_boot=50)
    assert len(differences) == 0
    text = write_report(tmp_path / "r.md", title="t", command="adaptrx-trial", config_yaml="a: 1",
                        policies=POLICIES[:1], summary=summary, differences=differences, subgroup_table=None,
                        figures={}, facts=FACTS, reference=REF, mcid=MCID).read_text()
    assert "## Findings" in text


# one estimand: a synthetic case where the mean and the median point in opposite directions ----------------------


def test_mean_and_median_disagreeing_are_reported_without_contradiction() -> None:
    """90 % of patients are 0.5 NRS worse under ``skewed``, 10 % are 6 NRS better: the mean pain change is
    better (-0.15), the median worse (+0.5). The interval, the p-value, the verdict and the forest-plot colour
    all describe the mean; the median and the shares are shown beside it, labelled."""
    n = 1000
    rng = np.random.default_rng(5)
    shift = np.where(np.arange(n) % 10 == 0, -6.0, 0.5)
    base = rng.normal(-1.0, 1.0, n)
    keys = {"condition": "knee_oa", "split": "test", "patient_id": [f"p{i:04d}" for i in range(n)], "seed": 0}
    results = pd.concat([pd.DataFrame({"policy": REF, **keys, "pain_change_w12": base}),
                         pd.DataFrame({"policy": "skewed", **keys, "pain_change_w12": base + shift})])
    table = compare(results, REF, ["pain_change_w12"], n_boot=1000)
    row = next(table.itertuples())
    assert row.diff == pytest.approx(-0.15) and row.high < 0 and row.p_holm < 0.05
    assert row.median == pytest.approx(0.5) and row.worse == pytest.approx(0.9)
    assert significant(row) == 1 and row.clinical == "better, below MCID"
    cells = _cells(differences_table(table).split("\n")[2])
    assert cells[2].startswith("-0.15 [") and cells[3] != "1.000" and cells[4] == "better, below MCID"
    assert cells[5] == "+0.50" and cells[6] == "10 / 90 / 0 %"
    lines = findings(pd.DataFrame(columns=["policy", "metric", "mean"]), table, REF)
    assert lines == [f"`skewed` vs `{REF}`: components better on pain_change_w12 "
                     f"{interval(row.diff, row.low, row.high, signed=True)} (below MCID); worse on nothing."]
    [points] = [c for c in forest_figure(table).axes[0].collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(points.get_facecolors(), [to_rgba(DIRECTION_COLORS["better"])])
