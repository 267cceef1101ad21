"""recommend(): the shield always binds, the forecast is coherent, the policy is identified."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adaptrx import protocols
from adaptrx.agents import load_policy
from adaptrx.clinic import evidence
from adaptrx.clinic.history import parse_history
from adaptrx.clinic.recommend import default_policy_dir, gap_warnings, observation_values, recommend, risk_warnings
from adaptrx.clinic.synthetic import simulate_history
from adaptrx.envs.features import FEATURE_INDEX
from adaptrx.patient import make_cohort
from adaptrx.protocols.safety_rules import SafetyRules

FAST = {"n_particles": 1000, "horizon": 4}
ROOT = Path(__file__).resolve().parents[2]


def _check_rules(rec: dict[str, Any], history: Any, rules: SafetyRules) -> None:
    """The prescription against every safety rule, recomputed from the log's last week."""
    weeks = history.weeks()
    last = weeks.iloc[-1]
    last_load = max(float(last["load"]), 0.05)
    load, sessions = rec["prescription"]["load"], rec["prescription"]["sessions"]
    assert load <= last_load * (1 + rules.max_load_increase) + 1e-3
    last_sessions = max(int(last["sessions"]), 1)
    painful = (last["attended"] > 0 and last["session_pain_max"] > rules.pain_threshold) or (
        last["morning_change_mean"] >= rules.morning_threshold)
    inferred = (last["attended"] > 0 and last["session_pain_max"] >= rules.flare_pain
                and last["morning_change_mean"] >= rules.morning_threshold)
    factor = 1 + rules.max_load_increase
    if painful:
        assert load <= last_load + 1e-3 and sessions <= last_sessions
        factor = 1.0
    if last["flare"] or inferred:
        assert load <= last_load * (1 - rules.flare_regression) + 1e-3 and sessions <= last_sessions
        factor = 1 - rules.flare_regression
    assert load * sessions <= last_load * last_sessions * factor + 5e-3  # the weekly volume
    assert sessions <= rules.max_sessions
    assert sessions >= rules.min_sessions or last["flare"]


@pytest.mark.parametrize("policy", [None, "aggressive", "acsm", "pain_monitoring"])
def test_no_recommendation_breaks_a_safety_rule(policy: str | None) -> None:
    cohort = make_cohort("knee_oa", 6, seed=21, split="test")
    rules = SafetyRules()
    for i, row in cohort.iterrows():
        doc, _ = simulate_history(row.to_dict(), protocols.get("aggressive" if i % 2 else "linear"), 4 + i, seed=i)
        history = parse_history(doc)
        rec = recommend(history, policy=policy, seed=i, **FAST).to_dict()
        _check_rules(rec, history, rules)
        assert set(rec["safety"]["bound_by"]) <= set(rec["safety"]["explanations"])


def test_shield_binds_an_aggressive_policy_and_says_why(document: dict[str, Any]) -> None:
    history = parse_history(document)
    rec = recommend(history, policy="aggressive", **FAST).to_dict()
    assert rec["prescription"]["proposed"]["load"] > rec["prescription"]["load"]
    assert rec["safety"]["bound_by"] and "load" in rec["safety"]["summary"]


def test_rules_after_pain_and_flare(document: dict[str, Any]) -> None:
    last_week = [s for s in document["sessions"] if s["date"] >= "2026-02-24"]
    for s in last_week:
        if s["attended"]:
            s["pain_during"] = 8.0
    last_week[0]["flare"] = True
    history = parse_history(document)
    rec = recommend(history, policy="aggressive", **FAST).to_dict()
    _check_rules(rec, history, SafetyRules())
    assert rec["prescription"]["load_change"] <= -0.2 + 1e-3
    assert "regress_after_flare" in rec["safety"]["bound_by"]


def test_forecast_is_coherent(document: dict[str, Any]) -> None:
    rec = recommend(parse_history(document), n_particles=1000, horizon=6).to_dict()
    forecast = rec["forecast"]
    assert forecast["weeks"] == list(range(9, 15))
    assert set(forecast["plans"]) == {"recommended", "hold", "pain_monitoring"}
    for plan in forecast["plans"].values():
        q10, q50, q90 = (np.array(plan[k]) for k in ("pain_q10", "pain_median", "pain_q90"))
        assert len(q50) == 6 and (q10 <= q50).all() and (q50 <= q90).all()
        assert (q10 >= 0).all() and (q90 <= 10).all() and (q90 - q10 > 0.2).all()  # an 80 % band, not a point
        assert 0 <= plan["flare_probability"] <= 1 and 0 <= plan["dropout_probability"] <= 1
    assert forecast["plans"]["recommended"]["load_median"][0] == pytest.approx(rec["prescription"]["load"], abs=1e-3)
    hold = forecast["plans"]["hold"]["load_median"]
    assert hold[0] == pytest.approx(rec["history"]["load"][-1], abs=1e-3) and len(set(hold)) == 1
    json.dumps(rec)


def test_default_policy_is_the_shipped_one(document: dict[str, Any]) -> None:
    directory = default_policy_dir()
    assert directory is not None and directory.name == "dagger-knee_oa-v0"
    rec = recommend(parse_history(document), **FAST).to_dict()
    assert rec["policy"]["id"] == "dagger-knee_oa-v0" and rec["policy"]["kind"] == "trained"
    assert rec["policy"]["manifest_sha256"] == hashlib.sha256((directory / "manifest.json").read_bytes()).hexdigest()
    # the same id the card and the trial reports print
    assert rec["policy"]["policy_id"] == load_policy(directory).policy_id
    assert rec["policy"]["policy_id"][:12] in (directory / "card.md").read_text()


def test_a_policy_of_another_condition_falls_back_to_pain_monitoring(document: dict[str, Any]) -> None:
    document["patient"]["condition"] = "chronic_low_back_pain"
    knee = default_policy_dir("knee_oa")
    rec = recommend(parse_history(document), policy=str(knee), **FAST).to_dict()
    assert rec["policy"]["id"] == "pain_monitoring" and "knee_oa" in rec["policy"]["note"]
    assert rec["policy"]["note"] in rec["notes"]


@pytest.mark.parametrize("condition", ["knee_oa", "chronic_low_back_pain", "fibromyalgia", "lumbar_spinal_stenosis"])
def test_default_is_the_conditions_best_evidenced_policy(document: dict[str, Any], condition: str) -> None:
    """The default follows the patient's condition, shows the shipped trial's evidence for it with the trial's
    id, and warns where that policy does not beat the trial's reference."""
    document["patient"]["condition"] = condition
    rec = recommend(parse_history(document), **FAST)
    d = rec.to_dict()
    entry = evidence.load()[condition]
    assert d["policy"]["id"] == entry["policy"] in (f"dagger-{condition}-v0", "population_best")
    assert d["policy"]["evidence"]["trial"] == f"experiments/{condition}_trial/test"
    assert d["policy"]["evidence"]["trial_id"] == evidence.trial_id(ROOT / entry["trial"])
    assert d["policy"]["policy_id"] == entry["policy_id"]  # the agent the trial tested (None for a protocol)
    ret = entry["differences"]["return"]
    assert f"return {ret['diff']:+.2f} [{ret['low']:+.2f}, {ret['high']:+.2f}]" in d["policy"]["evidence_text"]
    weak = [w for w in d["warnings"] if "does not beat population_best" in w]
    assert bool(weak) == (entry["beats_reference"] is False)
    if entry["is_reference"]:  # the best fixed programme is the default: the agent's differences show why
        assert d["policy"]["kind"] == "protocol" and entry["compared"] == f"dagger-{condition}-v0"
        assert entry["mean_return"] >= entry["compared_mean_return"]
    else:
        assert entry["beats_reference"] == (ret["low"] > 0)
    text = rec.to_text()
    assert d["policy"]["evidence_text"] in text and entry["trial_id"] in text


def test_evidence_file_is_the_committed_trials() -> None:
    """The packaged evidence is what the code reads off the committed trials (make trial-report rewrites it)."""
    assert evidence.load() == json.loads(json.dumps(evidence.build(ROOT)))
    assert set(evidence.load()) == {"knee_oa", "chronic_low_back_pain", "fibromyalgia", "lumbar_spinal_stenosis"}


def test_population_best_runs_as_the_conditions_fixed_programme(document: dict[str, Any]) -> None:
    rec = recommend(parse_history(document), policy="population_best", **FAST).to_dict()
    best = protocols.get("population_best", condition="knee_oa")
    assert rec["policy"]["id"] == "population_best"
    assert rec["prescription"]["proposed"]["sessions"] == best.sessions
    # its fixed load, reached at the action's pace (at most +50 % a week: Progression-v0's load change)
    last = rec["prescription"]["last_week"]["load"]
    assert rec["prescription"]["proposed"]["load"] == pytest.approx(min(best.load, 1.5 * last), abs=2e-3)


def test_text_report_reads_in_a_physiotherapists_order(document: dict[str, Any]) -> None:
    rec = recommend(parse_history(document), **FAST)
    text = rec.to_text()
    heads = ["NEXT WEEK'S PRESCRIPTION", "PROPOSAL AND SAFETY RULES", "FORECAST:", "WARNINGS", "WHY THIS POLICY",
             "MODEL DETAILS"]
    positions = [text.index(h) for h in heads]
    assert positions == sorted(positions)
    rx = rec.to_dict()["prescription"]
    assert f"sessions:  {rx['sessions']} a week (last week {rx['last_week']['sessions']}" in text
    assert "x baseline capacity" in text and "load unit:" in text and "weekly mean daily pain" in text
    assert "flare:" in text
    # model jargon only in the details at the end
    assert text.index("envelope") > text.index("MODEL DETAILS")
    assert rx["volume"] == pytest.approx(rx["sessions"] * rx["load"], abs=2e-3)


def test_gaps_in_the_log_are_named_with_their_dates(document: dict[str, Any]) -> None:
    history = parse_history(document)
    start = history.start
    gap_first = start + dt.timedelta(days=7 * 3 + 1)  # weeks 4 and 5 (1-based) lose every session row
    gap_last = gap_first + dt.timedelta(days=13)
    document["sessions"] = [x for x in document["sessions"]
                            if not gap_first.isoformat() <= x["date"] <= gap_last.isoformat()]
    gappy = parse_history(document)
    assert gap_warnings(history) == []
    [warning] = gap_warnings(gappy)
    assert f"from {gap_first.isoformat()} to {gap_last.isoformat()} (weeks 4-5)" in warning
    rec = recommend(gappy, **FAST).to_dict()
    assert warning in rec["warnings"]


def test_risk_and_fit_warnings() -> None:
    hold = {"flare_probability": 0.10, "dropout_probability": 0.07}
    assert risk_warnings({"flare_probability": 0.14, "dropout_probability": 0.11}, hold) == []  # within 5 points
    [w] = risk_warnings({"flare_probability": 0.12, "dropout_probability": 0.16}, hold)
    assert "dropping out" in w and "16%" in w and "7%" in w
    assert len(risk_warnings({"flare_probability": 0.30, "dropout_probability": 0.20}, hold)) == 2


def test_same_seed_same_recommendation(document: dict[str, Any]) -> None:
    history = parse_history(document)
    a, b = recommend(history, seed=5, **FAST).to_dict(), recommend(history, seed=5, **FAST).to_dict()
    assert a == b


def test_missed_weeks_are_handled(document: dict[str, Any]) -> None:
    document["sessions"] = [s for s in document["sessions"] if s["date"] < "2026-02-10"]  # weeks 6-7 missing...
    document["sessions"].append({"date": "2026-03-02", "load": 0.2, "attended": False})  # ...and a missed session
    history = parse_history(document)
    weeks = history.weeks()
    assert weeks["sessions"].tolist()[-3:] == [0, 0, 1]
    rec = recommend(history, **FAST).to_dict()
    assert 1 <= rec["prescription"]["sessions"] <= 5
    values = observation_values(history, recommend(history, **FAST).fit)
    assert values[FEATURE_INDEX["attendance"]] == 0.0 and values[FEATURE_INDEX["sessions_attended"]] == 0.0
    assert values[FEATURE_INDEX["attendance_lag2"]] == 0.0  # the two missed weeks are in the history window


def test_observation_matches_the_env_for_logged_records(document: dict[str, Any]) -> None:
    """Records the log holds enter the policy's observation as the env would have written them."""
    row = make_cohort("knee_oa", 3, seed=3, split="test").iloc[1].to_dict()
    doc, batch = simulate_history(row, protocols.get("pain_monitoring", delivery="supervised"), 8, seed=0)
    history = parse_history(doc)
    values = observation_values(history, recommend(history, **FAST).fit)
    env = batch.features.values[:, 0]
    assert values[FEATURE_INDEX["intake_age"]] == pytest.approx(env[FEATURE_INDEX["intake_age"]], abs=0.5)  # years
    for name in ("intake_pain", "intake_sensitization", "intake_fear", "intake_function", "load",
                 "sessions", "supervised", "remote", "attendance", "sessions_attended", "flare_reported",
                 "load_lag2", "attendance_lag4", "flare_reported_lag3"):
        assert values[FEATURE_INDEX[name]] == pytest.approx(env[FEATURE_INDEX[name]], abs=1e-3), name
    for name in ("session_pain_mean", "rpe", "morning_change"):  # the log rounds the weekly means to 0.1
        assert values[FEATURE_INDEX[name]] == pytest.approx(env[FEATURE_INDEX[name]], abs=0.11), name


def test_bad_arguments(document: dict[str, Any], tmp_path: Path) -> None:
    history = parse_history(document)
    with pytest.raises(ValueError, match="horizon"):
        recommend(history, horizon=20)
    with pytest.raises(ValueError, match="seed"):
        recommend(history, seed=-1)
    with pytest.raises(ValueError, match="oracle"):
        recommend(history, policy="oracle")
    with pytest.raises(FileNotFoundError):
        recommend(history, policy=str(tmp_path / "nothing"))
    shipped = default_policy_dir()
    assert shipped is not None
    other = shutil.copytree(shipped, tmp_path / "other")  # a policy exported for another observation
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["feature_names"] = manifest["feature_names"][::-1]
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"^policy: .*other: feature_names: .* at position 0"):
        recommend(history, policy=str(other))
    (tmp_path / "model.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match=r"pickle-based model file, not a policy directory"):
        recommend(history, policy=str(tmp_path / "model.zip"))


def test_belief_planner_recommends_from_the_fitted_posterior() -> None:
    """--policy belief_planner: the oracle's planner over posterior particles of the fit; the forecast's first
    week is its recommendation and the output names it as a planner."""
    history = parse_history(json.loads((Path(__file__).resolve().parents[2] / "experiments" / "clinic_examples"
                                        / "after_flare.json").read_text()))
    rec = recommend(history, policy="belief_planner", n_particles=1000, horizon=6).to_dict()
    assert rec["policy"]["id"] == "belief_planner" and rec["policy"]["kind"] == "planner"
    assert 0 <= rec["prescription"]["sessions"] <= 5
    again = recommend(history, policy="belief_planner", n_particles=1000, horizon=6).to_dict()
    assert again["prescription"] == rec["prescription"]


def test_the_clinicians_plan_is_forecast_on_the_same_particles_behind_the_same_rules(
        document: dict[str, Any]) -> None:
    history = parse_history(document)
    base = recommend(history, **FAST).to_dict()
    rec = recommend(history, plan="sessions=5,load=1.2,delivery=home", **FAST).to_dict()
    # the other plans are unchanged (same particles, same noise)
    for name in ("recommended", "hold", "pain_monitoring"):
        assert rec["forecast"]["plans"][name] == base["forecast"]["plans"][name]
    own = rec["forecast"]["clinician_plan"]
    assert own["requested"] == {"sessions": 5, "load": 1.2, "delivery": "home"}
    assert "max_load_increase" in own["breaks"] and not own["reachable_in_one_week"]
    last = rec["prescription"]["last_week"]
    assert own["first_week"]["load"] <= last["load"] * 1.3 + 1e-3
    assert own["first_week"]["load"] * own["first_week"]["sessions"] <= last["load"] * last["sessions"] * 1.3 + 5e-3
    assert set(own["breaks"]) <= set(rec["safety"]["explanations"])
    assert "clinician" in rec["forecast"]["plans"]
    # a plan that keeps last week's prescription breaks nothing and is forecast like holding
    held = recommend(history, plan={"sessions": last["sessions"], "load": last["load"]}, **FAST).to_dict()
    assert held["forecast"]["clinician_plan"]["breaks"] == []


@pytest.mark.parametrize(("plan", "field"), [("sessions=9", "plan.sessions"), ("load=3", "plan.load"),
                                             ("delivery=gym", "plan.delivery"), ("speed=2", "plan.speed"),
                                             ("sessions", "plan")])
def test_a_bad_plan_names_its_field(document: dict[str, Any], plan: str, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}[.:]?"):
        recommend(parse_history(document), plan=plan, **FAST)
