"""Statistics of the paired in-silico trial, on small synthetic tidy tables (seeded numpy rng)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import trim_mean

from adaptrx.experiments.stats import bootstrap_mean
from adaptrx.experiments.trial.analysis import (
    AGE_BANDS,
    BINARY,
    KEYS,
    METRICS,
    PRIMARY,
    add_outcome_columns,
    compare,
    paired_matrix,
    subgroups,
    summarize,
)
from adaptrx.patient import make_cohort

REF = "reference"
COMPARED = ["pain_change_w12", "responder_w12", "flares", "function_change"]


def make_results(n_patients: int = 400, seeds: tuple[int, ...] = (0, 1), seed: int = 0) -> pd.DataFrame:
    """Tidy table of three policies on the same patient-episodes (one row per policy x patient x seed).

    ``B`` = reference + 0.5 on ``pain_change_w12`` (+ small noise), more flares (worse) and + 2 function points
    (better), same responders; ``C`` = the reference exactly. Patients differ a lot from one another (sd 1.5)."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in seeds:
        n = n_patients
        ids = [f"knee_oa-test-s{s}-{i:05d}" for i in range(n)]
        keys = {"condition": "knee_oa", "split": "test", "patient_id": ids, "seed": s}
        baseline = rng.uniform(4.0, 8.0, n)
        change = rng.normal(-1.5, 1.5, n)
        ref = {
            "pain_baseline": baseline,
            "pain_w12": baseline + change,
            "pain_change_w12": change,
            "responder_w12": change <= -2.0,
            "flares": rng.poisson(1.0, n).astype(float),
            "dropped_out": rng.random(n) < 0.15,
            "function_change": rng.normal(5.0, 5.0, n),
        }
        b = dict(ref)
        b["pain_change_w12"] = change + 0.5 + rng.normal(0.0, 0.05, n)
        b["flares"] = ref["flares"] + (rng.random(n) < 0.3)
        b["function_change"] = ref["function_change"] + 2.0 + rng.normal(0.0, 0.5, n)
        for policy, values in ((REF, ref), ("B", b), ("C", dict(ref))):
            frames.append(pd.DataFrame({"policy": policy, **keys, **values}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return make_results()


@pytest.fixture(scope="module")
def table(results: pd.DataFrame) -> pd.DataFrame:
    return compare(results, REF, COMPARED, n_boot=1000)


def _row(table: pd.DataFrame, policy: str, metric: str) -> pd.Series:
    rows = table[(table["policy"] == policy) & (table["metric"] == metric)]
    assert len(rows) == 1
    return rows.iloc[0]


def _hand_holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down with plain loops: sorted ascending, adj_(i) = max_{j<=i} min(1, (m - j) p_(j))."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


# compare ------------------------------------------------------------------------------------------------------


def test_compare_has_one_row_per_other_policy_and_metric(table: pd.DataFrame) -> None:
    assert len(table) == 2 * len(COMPARED)
    assert set(table["policy"]) == {"B", "C"}
    assert (table["reference"] == REF).all()
    assert (table["n"] == 800).all()  # 400 patients x 2 seeds
    assert list(table.columns) == ["policy", "reference", "metric", "n", "diff", "low", "high", "p", "p_holm",
                                   "median", "better", "worse", "tied", "poi", "poi_low", "poi_high", "mcid",
                                   "clinical", "lower_is_better"]
    np.testing.assert_allclose(table[["better", "worse", "tied"]].sum(axis=1), 1.0)


def test_compare_recovers_a_shift_of_half_a_point(table: pd.DataFrame) -> None:
    r = _row(table, "B", "pain_change_w12")
    assert abs(r["diff"] - 0.5) < 0.05
    assert r["low"] <= 0.5 <= r["high"]
    assert r["low"] > 0.0
    assert r["high"] - r["low"] < 0.05  # paired: the between-patient spread (sd 1.5) cancels
    assert r["p"] == pytest.approx(1 / 100_001)  # no sign flip reaches the observed mean
    assert r["p_holm"] < 1e-3
    assert r["worse"] > 0.99 and r["better"] < 0.01  # B is worse (higher pain change) on virtually every patient
    assert abs(r["median"] - 0.5) < 0.05
    assert r["mcid"] == 1.0 and r["clinical"] == "worse, below MCID"  # +0.5 NRS, MCID 1 NRS
    # P(a B patient has a lower change than a reference patient): Phi(-0.5 / (1.5 sqrt 2)) ~ 0.41
    assert 0.35 < r["poi"] < 0.47
    assert r["poi_low"] <= r["poi"] <= r["poi_high"] < 0.5


def test_compare_identical_policy_has_no_difference(table: pd.DataFrame) -> None:
    c = table[table["policy"] == "C"]
    assert (c["diff"] == 0.0).all() and (c["low"] == 0.0).all() and (c["high"] == 0.0).all()
    assert (c["p"] == 1.0).all() and (c["p_holm"] == 1.0).all()
    assert (c["poi"] == 0.5).all() and (c["tied"] == 1.0).all() and (c["median"] == 0.0).all()
    assert set(c["clinical"]) <= {"equivalent", ""}  # a CI of width 0 rules out every important effect
    assert np.allclose(c["poi_low"], 0.5) and np.allclose(c["poi_high"], 0.5)


def test_compare_directions_of_better(table: pd.DataFrame) -> None:
    for _, r in table.iterrows():
        assert r["lower_is_better"] == METRICS[r["metric"]][1]
    assert not _row(table, "B", "responder_w12")["lower_is_better"]
    assert _row(table, "B", "flares")["lower_is_better"]
    # more function is better: B (+2 points) wins; more flares is worse: B loses
    assert _row(table, "B", "function_change")["poi"] > 0.5
    assert _row(table, "B", "function_change")["better"] > 0.99
    flares = _row(table, "B", "flares")
    assert abs(flares["diff"] - 0.3) < 0.06 and flares["low"] > 0 and flares["poi"] < 0.5
    # same responders in B and the reference
    assert _row(table, "B", "responder_w12")["diff"] == 0.0


def test_compare_holm_adjusts_over_the_whole_table(table: pd.DataFrame) -> None:
    p, adj = table["p"].to_numpy(), table["p_holm"].to_numpy()
    assert (adj >= p).all()
    assert (adj <= 1.0).all()
    np.testing.assert_allclose(adj, _hand_holm(p), rtol=1e-12, atol=0)


def test_compare_unknown_metric_in_metrics_defaults_to_lower_is_better(results: pd.DataFrame) -> None:
    t = compare(results.assign(score=results["pain_w12"]), REF, ["score"], n_boot=200)
    assert t["lower_is_better"].all()


def test_compare_pairs_by_keys_not_by_row_order(results: pd.DataFrame, table: pd.DataFrame) -> None:
    shuffled = results.sample(frac=1.0, random_state=3).reset_index(drop=True)
    again = compare(shuffled, REF, COMPARED, n_boot=1000)
    order = ["policy", "metric"]
    pd.testing.assert_frame_equal(again.sort_values(order).reset_index(drop=True),
                                  table.sort_values(order).reset_index(drop=True))


def test_compare_row_order_within_policy_is_irrelevant(results: pd.DataFrame, table: pd.DataFrame) -> None:
    # B's rows reversed, the policies still in the same order: the same table, row for row
    b = results["policy"] == "B"
    ref_rows = results[results["policy"] == REF]
    mixed = pd.concat([ref_rows, results[b].iloc[::-1], results[results["policy"] == "C"]], ignore_index=True)
    again = compare(mixed, REF, COMPARED, n_boot=1000)
    pd.testing.assert_frame_equal(again, table)


def test_compare_skips_metrics_that_are_absent_or_nan(results: pd.DataFrame) -> None:
    t = compare(results.assign(pain_w26=np.nan), REF, ["pain_change_w12", "pain_w26", "cost"], n_boot=200)
    assert set(t["metric"]) == {"pain_change_w12"}


def test_compare_default_metrics_are_the_primary_outcomes_present(results: pd.DataFrame) -> None:
    t = compare(results, REF, n_boot=200)
    assert set(t["metric"]) == {m for m in PRIMARY if m in results.columns}


def test_compare_refuses_an_unpaired_trial(results: pd.DataFrame) -> None:
    gone = results[~((results["policy"] == "B") & (results["patient_id"].str.endswith("00007")))]
    with pytest.raises(ValueError, match="not paired") as err:
        compare(gone, REF, COMPARED, n_boot=100)
    assert "B" in str(err.value)


def test_compare_refuses_duplicated_patient_episodes(results: pd.DataFrame) -> None:
    doubled = pd.concat([results, results[results["policy"] == "C"].head(1)], ignore_index=True)
    with pytest.raises(ValueError, match="more than one row"):
        compare(doubled, REF, COMPARED, n_boot=100)


def test_compare_refuses_an_unknown_reference(results: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="reference") as err:
        compare(results, "no_such_policy", COMPARED, n_boot=100)
    assert "no_such_policy" in str(err.value)


def test_compare_refuses_missing_key_columns(results: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="seed"):
        compare(results.drop(columns="seed"), REF, COMPARED, n_boot=100)


def test_paired_matrix_aligns_policies_on_keys(results: pd.DataFrame) -> None:
    shuffled = results.sample(frac=1.0, random_state=1)
    wide, strata = paired_matrix(shuffled, "pain_change_w12", [REF, "B", "C"])
    assert wide.shape == (800, 3)
    assert list(wide.columns) == [REF, "B", "C"]
    assert list(wide.index.names) == list(KEYS)
    np.testing.assert_array_equal(wide["C"].to_numpy(), wide[REF].to_numpy())
    d = wide["B"] - wide[REF]
    assert d.between(0.3, 0.7).all()
    keys = wide.index.to_frame(index=False)
    np.testing.assert_array_equal(strata, ("knee_oa/" + keys["seed"].astype(str)).to_numpy())
    assert sorted(set(strata)) == ["knee_oa/0", "knee_oa/1"]


# summarize ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def summary(results: pd.DataFrame) -> pd.DataFrame:
    return summarize(results, [*COMPARED, "dropped_out"], n_boot=500)


def test_summarize_mean_and_iqm_match_pandas_and_scipy(results: pd.DataFrame, summary: pd.DataFrame) -> None:
    assert list(dict.fromkeys(summary["policy"])) == [REF, "B", "C"]
    for (policy, metric), r in summary.set_index(["policy", "metric"]).iterrows():
        x = results.loc[results["policy"] == policy, metric].astype(float)
        assert r["n"] == len(x) == 800
        assert r["mean"] == pytest.approx(x.mean(), rel=1e-12, abs=1e-12)
        assert r["mean_low"] <= r["mean"] <= r["mean_high"]
        if metric in BINARY:  # an interquartile mean of 0/1 outcomes says nothing
            assert np.isnan([r["iqm"], r["iqm_low"], r["iqm_high"]]).all()
            continue
        assert r["iqm"] == pytest.approx(trim_mean(x.to_numpy(), 0.25), rel=1e-12, abs=1e-12)
        assert r["iqm_low"] <= r["iqm"] <= r["iqm_high"]
        assert r["mean_low"] < r["mean_high"]
    by_group = results.groupby("policy")["pain_change_w12"].mean()
    got = summary[summary["metric"] == "pain_change_w12"].set_index("policy")["mean"]
    pd.testing.assert_series_equal(got.sort_index(), by_group.sort_index(), check_names=False)


def test_summarize_rates_of_binary_outcomes(summary: pd.DataFrame) -> None:
    rates = summary[summary["metric"].isin(["responder_w12", "dropped_out"])]
    assert len(rates) == 6
    for col in ("mean", "mean_low", "mean_high"):
        assert rates[col].between(0.0, 1.0).all()
    dropout = rates[rates["metric"] == "dropped_out"]["mean"]
    assert dropout.between(0.11, 0.19).all()  # drawn at 15 %


def test_summarize_skips_a_metric_that_is_nan_for_a_policy(results: pd.DataFrame) -> None:
    r = results.assign(pain_w26=np.where(results["policy"] == "C", np.nan, results["pain_w12"] - 0.5))
    s = summarize(r, ["pain_w12", "pain_w26", "cost"], n_boot=200)  # cost: not a column
    assert set(s["metric"]) == {"pain_w12", "pain_w26"}
    assert set(s.loc[s["metric"] == "pain_w26", "policy"]) == {REF, "B"}
    assert set(s.loc[s["metric"] == "pain_w12", "policy"]) == {REF, "B", "C"}


def test_summarize_counts_only_finite_values(results: pd.DataFrame) -> None:
    r = results.copy()
    r.loc[r.index[:10], "pain_w12"] = np.nan  # the first 10 rows are the reference's
    s = summarize(r, ["pain_w12"], n_boot=200).set_index("policy")
    assert s.loc[REF, "n"] == 790 and s.loc["B", "n"] == 800
    assert s.loc[REF, "mean"] == pytest.approx(r.loc[r["policy"] == REF, "pain_w12"].mean())


def test_summarize_stratifies_by_seed() -> None:
    rng = np.random.default_rng(5)
    n = 300
    frames = [pd.DataFrame({"policy": "p", "condition": "knee_oa", "split": "test",
                            "patient_id": [f"s{s}-{i}" for i in range(n)], "seed": s,
                            "pain_w12": rng.normal(10.0 * s, 1.0, n)}) for s in (0, 1)]
    r = pd.concat(frames, ignore_index=True)
    s = summarize(r, ["pain_w12"], n_boot=2000).iloc[0]
    plain = bootstrap_mean(r["pain_w12"].to_numpy(), n_boot=2000, seed=0)
    assert s["mean"] == pytest.approx(plain.value)
    # between-seed variance (25) dominates the plain bootstrap; within strata only the sd 1 remains:
    # width ratio ~ sqrt(1 / 26) ~ 0.2
    assert (s["mean_high"] - s["mean_low"]) < 0.4 * (plain.high - plain.low)
    assert s["mean_low"] <= s["mean"] <= s["mean_high"]
    assert s["mean_high"] - s["mean_low"] < 0.25  # ~ 2 x 1.96 x 1 / sqrt(600) = 0.16


def test_summarize_is_deterministic_in_its_seed(results: pd.DataFrame) -> None:
    a = summarize(results, ["pain_w12"], n_boot=300, seed=4)
    b = summarize(results, ["pain_w12"], n_boot=300, seed=4)
    c = summarize(results, ["pain_w12"], n_boot=300, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["mean_low"], c["mean_low"])
    np.testing.assert_array_equal(a["mean"], c["mean"])


def test_summarize_refuses_an_empty_table(results: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="empty"):
        summarize(results.iloc[:0], ["pain_w12"])


# subgroups ----------------------------------------------------------------------------------------------------


def make_subgroup_results(n_patients: int = 300, seed: int = 2) -> pd.DataFrame:
    """Policy ``B`` lowers ``pain_change_w12`` by 1 point only in the high sensitization tercile; elsewhere its
    paired differences are noise with mean exactly 0 within each tercile."""
    rng = np.random.default_rng(seed)
    frames = []
    for s in (0, 1):
        n = n_patients
        tercile = np.array(["low", "middle", "high"])[np.arange(n) % 3]
        sex = np.where(rng.random(n) < 0.5, "F", "M")
        sex[:5] = "X"  # a level too small to report (5 < min_n)
        noise = rng.normal(0.0, 0.3, n)
        for level in ("low", "middle", "high"):
            noise[tercile == level] -= noise[tercile == level].mean()
        ref = rng.normal(-1.0, 1.5, n)
        b = ref + noise - 1.0 * (tercile == "high")
        cov = {"condition": "knee_oa", "split": "test", "patient_id": [f"s{s}-{i:04d}" for i in range(n)], "seed": s,
               "sensitization_tercile": tercile, "sex": sex}
        frames += [pd.DataFrame({"policy": REF, **cov, "pain_change_w12": ref}),
                   pd.DataFrame({"policy": "B", **cov, "pain_change_w12": b})]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def groups() -> tuple[pd.DataFrame, pd.DataFrame]:
    r = make_subgroup_results()
    return r, subgroups(r, REF, n_boot=1000)


def test_subgroups_finds_an_effect_confined_to_one_level(groups: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, g = groups
    terc = g[g["variable"] == "sensitization_tercile"].set_index("level")
    assert list(terc.index) == ["low", "middle", "high"]  # in the natural order, not alphabetical
    high = terc.loc["high"]
    assert high["high"] < 0.0 and high["low"] <= -1.0 <= high["high"]
    assert abs(high["diff"] + 1.0) < 1e-9
    for level in ("low", "middle"):
        r = terc.loc[level]
        assert r["low"] < 0.0 < r["high"]
        assert abs(r["diff"]) < 1e-9
    assert (g["policy"] == "B").all() and (g["reference"] == REF).all()
    assert (g["metric"] == "pain_change_w12").all()


def test_subgroups_counts_patient_episodes_per_level(groups: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    r, g = groups
    ref = r[r["policy"] == REF]
    for _, row in g.iterrows():
        assert row["n"] == (ref[row["variable"]].astype(str) == row["level"]).sum()
    terc = g[g["variable"] == "sensitization_tercile"]
    assert terc["n"].sum() == len(ref) == 600


def test_subgroups_leaves_out_small_levels_and_single_level_variables(
        groups: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    r, g = groups
    assert set(g["variable"]) == {"sensitization_tercile", "sex"}  # condition has one level; others absent
    assert set(g.loc[g["variable"] == "sex", "level"]) == {"F", "M"}  # 10 "X" patient-episodes < min_n 20
    g9 = subgroups(r, REF, n_boot=100, min_n=10)
    assert "X" in set(g9.loc[g9["variable"] == "sex", "level"])
    g_big = subgroups(r, REF, n_boot=100, min_n=250)  # terciles have 200 rows, sexes ~300
    assert "sensitization_tercile" not in set(g_big["variable"])


def test_subgroups_refuses_an_unknown_reference(groups: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    r, _ = groups
    with pytest.raises(ValueError, match="reference"):
        subgroups(r, "nobody", n_boot=100)


def test_subgroups_refuses_an_unpaired_trial(groups: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    r, _ = groups
    with pytest.raises(ValueError, match="not paired"):
        subgroups(r.drop(index=r.index[-1]), REF, n_boot=100)


# add_outcome_columns ------------------------------------------------------------------------------------------


def _fake_results(cohort: pd.DataFrame, policies: tuple[str, ...] = (REF, "B"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(cohort)
    frames = []
    for policy in policies:
        frames.append(pd.DataFrame({
            "policy": policy, "condition": cohort["condition"].to_numpy(), "split": "test",
            "patient_id": cohort["patient_id"].to_numpy(), "seed": 0,
            "pain_baseline": rng.uniform(4.0, 8.0, n), "pain_w12": rng.uniform(0.0, 10.0, n),
            "pain_mean": rng.uniform(0.0, 10.0, n), "flares": rng.poisson(1.0, n),
            "dropped_out": rng.random(n) < 0.2, "sex": "stale"}))
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return make_cohort("knee_oa", 300, 0, "test")


def test_add_outcome_columns_derived_outcomes(cohort: pd.DataFrame) -> None:
    r = _fake_results(cohort)
    out = add_outcome_columns(r, cohort)
    assert len(out) == len(r)
    np.testing.assert_allclose(out["pain_change_w12"], out["pain_w12"] - out["pain_baseline"], rtol=0, atol=1e-12)
    expected = out["pain_mean"] + out["flares"] + 2.0 * out["dropped_out"].astype(float)
    np.testing.assert_allclose(out["composite"], expected, rtol=0, atol=1e-12)
    # the input is not modified
    assert "composite" not in r.columns and (r["sex"] == "stale").all()


def test_add_outcome_columns_covariates_of_the_cohort(cohort: pd.DataFrame) -> None:
    out = add_outcome_columns(_fake_results(cohort), cohort)
    merged = out.merge(cohort, on="patient_id", suffixes=("", "_cohort"))
    assert len(merged) == len(out)
    for col in ("sex", "adherence_class", "condition"):
        assert (merged[col] == merged[f"{col}_cohort"]).all()
    assert {"age_band", "sensitization_tercile", "adherence_class", "sex", "condition"} <= set(out.columns)
    assert "age" not in out.columns and "sensitization" not in out.columns


def test_add_outcome_columns_age_bands_follow_the_edges(cohort: pd.DataFrame) -> None:
    out = add_outcome_columns(_fake_results(cohort), cohort)
    age = out.merge(cohort[["patient_id", "age"]], on="patient_id")
    assert set(age["age_band"]) <= set(AGE_BANDS)
    for label, (low, high) in AGE_BANDS.items():
        inside = age[age["age_band"] == label]["age"]
        assert ((inside >= low) & (inside < high)).all()
        assert ((age["age"] >= low) & (age["age"] < high)).sum() == len(inside)
    assert age["age_band"].nunique() >= 3  # ages 42-86 in this cohort


def test_add_outcome_columns_age_band_edges_are_left_closed() -> None:
    cohort = pd.DataFrame({"patient_id": [f"p{i}" for i in range(6)], "condition": "knee_oa",
                           "age": [54.999, 55.0, 64.999, 65.0, 75.0, 110.0], "sensitization": np.arange(6.0),
                           "adherence_class": "low", "sex": "F"})
    results = pd.DataFrame({"policy": REF, "condition": "knee_oa", "split": "test", "patient_id": cohort["patient_id"],
                            "seed": 0, "pain_baseline": 5.0, "pain_w12": 4.0, "pain_mean": 4.5, "flares": 0.0,
                            "dropped_out": False})
    out = add_outcome_columns(results, cohort)
    assert list(out["age_band"]) == ["<55", "55-64", "55-64", "65-74", "75+", "75+"]
    assert list(out["sensitization_tercile"]) == ["low", "low", "middle", "middle", "high", "high"]


def test_add_outcome_columns_terciles_are_equal_and_ordered(cohort: pd.DataFrame) -> None:
    out = add_outcome_columns(_fake_results(cohort), cohort)
    one = out[out["policy"] == REF].merge(cohort[["patient_id", "sensitization"]], on="patient_id")
    counts = one["sensitization_tercile"].value_counts()
    assert set(counts.index) == {"low", "middle", "high"}
    assert all(abs(c - 100) <= 1 for c in counts)
    s = one.groupby("sensitization_tercile")["sensitization"]
    assert s.max()["low"] <= s.min()["middle"] and s.max()["middle"] <= s.min()["high"]
    # every policy gets the same label for the same patient
    labels = out.pivot(index="patient_id", columns="policy", values="sensitization_tercile")
    assert (labels[REF] == labels["B"]).all()


def test_add_outcome_columns_terciles_are_within_condition() -> None:
    knee = make_cohort("knee_oa", 150, 0, "test")
    back = make_cohort("chronic_low_back_pain", 150, 0, "test")
    back = back.assign(sensitization=back["sensitization"] + 100.0)  # all above knee: a pooled split would fail
    cohort = pd.concat([knee, back], ignore_index=True)
    out = add_outcome_columns(_fake_results(cohort, policies=(REF,)), cohort)
    counts = out.groupby(["condition", "sensitization_tercile"]).size()
    assert len(counts) == 6
    assert all(abs(c - 50) <= 1 for c in counts)
