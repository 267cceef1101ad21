"""Statistics of a paired virtual trial, from its tidy results table (one row per policy x patient x seed).

Every policy met the same patients with the same noise, so a patient is the unit of resampling: the
bootstrap resamples patients within strata (condition x seed: each seed drew its own patients), the same
resample for every policy of a paired comparison. The tables:

* :func:`summarize`: per policy and metric, mean and IQM (interquartile mean) with stratified bootstrap CIs;
  for 0/1 metrics (``responder_w12``, ``dropped_out``) the mean is the rate;
* :func:`compare`: per policy and metric, one estimand, the mean paired difference (policy minus reference):
  its bootstrap CI and its sign-flip permutation p-value, Holm-adjusted across every comparison of the table,
  and whether it is clinically important (:func:`clinical_reading`, against the MCIDs of
  ``configs/mcid/default.yaml``); beside it, labelled as descriptive, the median difference, the shares of
  patients better, worse and tied, and the probability of improvement (Agarwal et al. 2021) with its CI;
* :func:`subgroups`: paired differences of one metric within subgroups (age band, sensitization tercile,
  adherence class, sex, condition).

:data:`METRICS` says which direction is better for each outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd
import yaml

from adaptrx.experiments.clinical_metrics import DROPOUT_WEIGHT, composite_score
from adaptrx.experiments.stats import (
    Estimate,
    bootstrap_iqm,
    bootstrap_mean,
    holm,
    outcome_shares,
    paired_difference,
    probability_of_improvement,
    sign_flip_p,
    stratified_resample_index,
)

#: Outcome column -> (label with units, lower is better).
METRICS: dict[str, tuple[str, bool]] = {
    "pain_w12": ("pain at week 12 (NRS 0-10)", True),
    "pain_change_w12": ("pain change to week 12 (NRS points)", True),
    "pain_w26": ("pain at week 26 (NRS 0-10)", True),
    "responder_w12": ("responder at week 12 (>= 2 points or >= 30 %)", False),
    "pain_mean": ("mean weekly pain over the episode (NRS)", True),
    "flares": ("flares per patient", True),
    "dropped_out": ("dropout", True),
    "function_change": ("function change (points, 0-100)", False),
    "capacity_change": ("capacity change (x baseline)", False),
    "cost": ("safety cost (weeks with in-session pain > 5 or a flare; a dropout adds 1 + the weeks it loses)",
             True),
    "supervised_sessions": ("supervised sessions attended", True),
    "composite": (f"composite harm (secondary): mean pain + flares + {DROPOUT_WEIGHT:g} x dropout", True),
    "return": ("episode return (headline objective: env reward, default weights)", False),
}
#: 0/1 outcomes: their mean is a rate; an interquartile mean says nothing (NaN in the summary).
BINARY: tuple[str, ...] = ("responder_w12", "dropped_out", "responder")
#: Outcomes of the paired comparison (the report's forest plot).
PRIMARY: tuple[str, ...] = ("return", "pain_change_w12", "responder_w12", "function_change", "flares", "dropped_out",
                            "cost", "composite")
#: Definitions of the outcomes of a report, once (units; what "better" means).
DEFINITIONS: dict[str, str] = {
    "return": "episode return under the env's default reward weights, per patient; the headline objective that "
              "weighs pain relief, function, flares, supervision and dropout together (envs/MODEL_CARD.md); "
              "higher is better",
    "pain_w12": "weekly mean pain at week 12, NRS 0-10; lower is better",
    "pain_change_w12": "pain at week 12 minus pain at intake, NRS points; negative is relief, lower is better",
    "responder_w12": "share of patients whose week-12 pain fell by >= 2 NRS points or >= 30 % (Farrar et al. "
                     "2001); differences in percentage points (pp)",
    "function_change": "function at the end minus at intake, points on a 0-100 scale; higher is better",
    "flares": "flare weeks per patient over the episode (a flare: a pain exacerbation from tissue irritation "
              "or a background flare; at most one onset a week); lower is better",
    "dropped_out": "share of patients who left the programme before its end; differences in pp; lower is better",
    "cost": "safety cost per patient: weeks with in-session pain > 5 or a flare, plus, on dropout, 1 + the "
            "weeks the dropout loses; lower is better (a constraint, not the objective: no exercise scores best)",
    "composite": f"secondary harm score: mean weekly pain (NRS) + flare weeks + {DROPOUT_WEIGHT:g} if dropped out; "
                 "lower is better",
}
#: Outcomes of the safety comparison (every policy vs the safety reference, ``pain_monitoring`` by default).
SAFETY: tuple[str, ...] = ("cost", "flares", "dropped_out")
#: Subgroup variables: cohort covariates of the results table.
SUBGROUPS: tuple[str, ...] = ("age_band", "sensitization_tercile", "adherence_class", "sex", "condition")
#: Columns that identify a patient-episode across policies.
KEYS: tuple[str, ...] = ("condition", "split", "patient_id", "seed")
#: Age bands of the subgroup table (years): label -> [low, high).
AGE_BANDS: dict[str, tuple[float, float]] = {"<55": (0, 55), "55-64": (55, 65), "65-74": (65, 75),
                                             "75+": (75, 200)}


@dataclass(frozen=True)
class Mcid:
    """A minimal clinically important difference between two arms: ``value`` (> 0) in ``unit`` (rates in pp,
    percentage points), and where the value comes from."""

    value: float
    unit: str
    source: str

    def in_metric_units(self, metric: str) -> float:
        """The MCID on the scale of the results column (rates are stored as 0-1 fractions)."""
        return self.value / 100.0 if metric in BINARY else self.value


def mcid_config() -> dict[str, dict[str, object]]:
    """The packaged MCIDs, ``configs/mcid/default.yaml``, as plain data (metric -> {value, unit, source})."""
    return dict(yaml.safe_load(resources.files("adaptrx.configs").joinpath("mcid", "default.yaml").read_text()))


def mcids(config: Mapping[str, Mapping[str, object]] | None = None) -> dict[str, Mcid]:
    """MCIDs per outcome: ``config`` (metric -> {value, unit, source}, e.g. a trial's ``stats.mcid``) or, with
    ``None``, the packaged defaults of ``configs/mcid/default.yaml``. Raises ``ValueError`` naming the field."""
    if config is None:
        config = mcid_config()
    out = {}
    for metric, entry in config.items():
        field = f"stats.mcid.{metric}"
        if metric not in METRICS:
            raise ValueError(f"{field}: unknown outcome (known: {', '.join(METRICS)})")
        if not isinstance(entry, Mapping) or set(entry) != {"value", "unit", "source"}:
            raise ValueError(f"{field}: expected value, unit and source, got {entry!r}")
        value = entry["value"]
        if not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
            raise ValueError(f"{field}.value: expected a positive number, got {value!r}")
        if not str(entry["source"]).strip():
            raise ValueError(f"{field}.source: say where the value comes from")
        out[str(metric)] = Mcid(float(value), str(entry["unit"]), str(entry["source"]))
    return out


def clinical_reading(diff: float, low: float, high: float, mcid: float | None, lower_is_better: bool) -> str:
    """Whether a paired mean difference ``diff [low, high]`` is clinically important against ``mcid`` (> 0, the
    metric's units; ``None`` or NaN: no MCID, returns ``""``).

    * CI excludes 0: ``"<better|worse>, important"`` if the whole CI lies beyond the MCID, ``"..., possibly
      important"`` if only the estimate does, ``"..., below MCID"`` otherwise;
    * CI includes 0: ``"equivalent"`` if the CI lies within +-MCID (an important effect is ruled out),
      ``"inconclusive"`` otherwise.
    """
    if mcid is None or not np.isfinite(mcid):
        return ""
    if low <= 0.0 <= high:
        return "equivalent" if -mcid < low and high < mcid else "inconclusive"
    side = "better" if (diff < 0) == lower_is_better else "worse"
    if min(abs(low), abs(high)) >= mcid:
        return f"{side}, important"
    return f"{side}, possibly important" if abs(diff) >= mcid else f"{side}, below MCID"


def add_derived_outcomes(results: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``results`` with the derived outcomes: ``pain_change_w12`` (NRS points, negative is relief) and
    ``composite`` (:func:`~adaptrx.experiments.clinical_metrics.composite_score`)."""
    out = results.copy()
    out["pain_change_w12"] = out["pain_w12"] - out["pain_baseline"]
    out["composite"] = composite_score(out["pain_mean"], out["flares"], out["dropped_out"])
    return out


def add_outcome_columns(results: pd.DataFrame, cohort: pd.DataFrame) -> pd.DataFrame:
    """Add the derived outcomes (:func:`add_derived_outcomes`) and the subgroup covariates of ``cohort``
    (``age_band``, ``sensitization_tercile`` within condition, ``adherence_class``, ``sex``, ``condition``)."""
    out = add_derived_outcomes(results)
    cov = cohort[["patient_id", "condition", "age", "sensitization", "adherence_class", "sex"]].copy()
    cov["age_band"] = pd.cut(cov["age"], bins=[b[0] for b in AGE_BANDS.values()] + [200],
                             labels=list(AGE_BANDS), right=False).astype(str)
    cov["sensitization_tercile"] = cov.groupby("condition")["sensitization"].transform(
        lambda s: pd.qcut(s.rank(method="first"), 3, labels=["low", "middle", "high"]).astype(str))
    cov = cov.drop(columns=["age", "sensitization"]).drop_duplicates("patient_id")
    out = out.drop(columns=[c for c in cov.columns if c != "patient_id" and c in out.columns])
    return out.merge(cov, on="patient_id", how="left", validate="many_to_one")


def _strata(frame: pd.DataFrame) -> np.ndarray:
    return (frame["condition"].astype(str) + "/" + frame["seed"].astype(str)).to_numpy()


def _check(results: pd.DataFrame, metrics: Sequence[str]) -> None:
    missing = [c for c in ("policy", *KEYS, *metrics) if c not in results.columns]
    if missing:
        raise ValueError(f"results: missing column(s) {missing}")
    if len(results) == 0:
        raise ValueError("results: empty table")


def summarize(results: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS), n_boot: int = 2000, seed: int = 0,
              level: float = 0.95) -> pd.DataFrame:
    """Per (policy, metric): ``n``, ``mean`` [``mean_low``, ``mean_high``], ``iqm`` [``iqm_low``, ``iqm_high``];
    policies in order of appearance, metrics absent from the table skipped."""
    metrics = [m for m in metrics if m in results.columns]
    _check(results, metrics)
    rows = []
    for policy, frame in results.groupby("policy", sort=False):
        strata = _strata(frame)
        index = stratified_resample_index(strata, len(frame), n_boot, seed)  # shared by the metrics
        for m in metrics:
            x = frame[m].to_numpy(dtype=np.float64)
            ok = np.isfinite(x)
            if not ok.any():  # e.g. pain_w26 of a shorter episode
                continue
            kw = {"index": index} if ok.all() else {"strata": strata[ok]}
            mean = bootstrap_mean(x[ok], n_boot, seed, level, **kw)
            nan = Estimate(np.nan, np.nan, np.nan)
            q = nan if m in BINARY else bootstrap_iqm(x[ok], n_boot, seed, level, **kw)
            rows.append({"policy": policy, "metric": m, "n": int(ok.sum()), "mean": mean.value, "mean_low": mean.low,
                         "mean_high": mean.high, "iqm": q.value, "iqm_low": q.low, "iqm_high": q.high})
    return pd.DataFrame(rows)


def paired_matrix(results: pd.DataFrame, metric: str, policies: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """``metric`` as a (patient-episodes x policies) table aligned on :data:`KEYS`, and the strata per row.

    Raises ``ValueError`` if the policies did not meet the same patient-episodes (not a paired trial)."""
    if results.duplicated(["policy", *KEYS]).any():
        raise ValueError("results: a policy has more than one row for a patient-episode (condition, split, "
                         "patient_id, seed)")
    indexed = results.set_index([*KEYS, "policy"])
    present = pd.Series(True, index=indexed.index).unstack("policy").reindex(columns=list(policies))
    if present.isna().any().any():
        bad = [p for p in policies if present[p].isna().any()]
        raise ValueError(f"results: policies {bad} lack some patient-episodes of the others (not paired)")
    wide = indexed[metric].unstack("policy").reindex(columns=list(policies))
    if wide.isna().any().any():
        bad = [p for p in policies if wide[p].isna().any()]
        raise ValueError(f"results: metric {metric!r} has missing values for policies {bad}")
    keys = wide.index.to_frame(index=False)
    return wide, _strata(keys)


def compare(results: pd.DataFrame, reference: str, metrics: Sequence[str] = PRIMARY, n_boot: int = 2000,
            seed: int = 0, level: float = 0.95, mcid: Mapping[str, Mcid] | None = None,
            n_perm: int = 100_000) -> pd.DataFrame:
    """Paired differences of every other policy vs ``reference`` (one row per policy x metric).

    One estimand, the mean of policy minus reference over patient-episodes: ``diff`` [``low``, ``high``]
    (stratified percentile bootstrap at ``level``), ``p`` (two-sided sign-flip permutation test of that mean,
    ``n_perm`` flips) and ``p_holm`` (Holm-adjusted over every row of the table). ``mcid``/``clinical``: the MCID
    (metric units; NaN if none declared; default :func:`mcids`) and :func:`clinical_reading`. Descriptive, not
    tests: ``median`` (of the paired differences), ``better``/``worse``/``tied`` (shares of patient-episodes, 0-1)
    and ``poi`` [``poi_low``, ``poi_high``] (probability that a patient under the policy does better than an
    independent one under the reference, ties half). Plus ``n`` and ``lower_is_better``.
    """
    metrics = [m for m in metrics if m in results.columns and results[m].notna().all()]
    _check(results, metrics)
    policies = list(dict.fromkeys(results["policy"]))
    if reference not in policies:
        raise ValueError(f"reference: {reference!r} is not a policy of the results ({', '.join(policies)})")
    declared = mcids() if mcid is None else mcid
    others = [p for p in policies if p != reference]
    rows, differences = [], []
    index = None
    for m in metrics:
        lower = METRICS.get(m, ("", True))[1]
        threshold = declared[m].in_metric_units(m) if m in declared else np.nan
        wide, strata = paired_matrix(results, m, policies)
        if index is None:  # the same patient-episodes (rows of wide) for every metric: resample them once
            index = stratified_resample_index(strata, len(wide), n_boot, seed)
        ref = wide[reference].to_numpy(dtype=np.float64)
        for p in others:
            x = wide[p].to_numpy(dtype=np.float64)
            d = paired_difference(x, ref, n_boot, seed, level, strata, index=index)
            poi = probability_of_improvement(x, ref, lower_is_better=lower, strata=strata, level=level, index=index)
            better, worse, tied = outcome_shares(x, ref, lower_is_better=lower)
            differences.append(x - ref)
            rows.append({"policy": p, "reference": reference, "metric": m, "n": len(x), "diff": d.value,
                         "low": d.low, "high": d.high, "median": float(np.median(x - ref)), "better": better,
                         "worse": worse, "tied": tied, "poi": poi.value, "poi_low": poi.low, "poi_high": poi.high,
                         "mcid": threshold, "clinical": clinical_reading(d.value, d.low, d.high, threshold, lower),
                         "lower_is_better": lower})
    columns = ["policy", "reference", "metric", "n", "diff", "low", "high", "median", "better", "worse", "tied",
               "poi", "poi_low", "poi_high", "mcid", "clinical", "lower_is_better"]
    table = pd.DataFrame(rows, columns=columns)
    p_values = sign_flip_p(np.array(differences), n_perm, seed) if rows else np.empty(0)
    table.insert(columns.index("median"), "p", p_values)
    table.insert(columns.index("median") + 1, "p_holm", holm(p_values))
    return table


def subgroups(results: pd.DataFrame, reference: str, metric: str = "pain_change_w12",
              variables: Sequence[str] = SUBGROUPS, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
              min_n: int = 20) -> pd.DataFrame:
    """Paired difference of ``metric`` (policy minus ``reference``) within each level of each subgroup variable.

    Columns: ``variable, level, policy, reference, metric, n, diff, low, high``. Levels with fewer than
    ``min_n`` patient-episodes are left out; a variable with a single level (e.g. ``condition`` in a
    one-condition trial) is left out too.
    """
    variables = [v for v in variables if v in results.columns]
    _check(results, [metric, *variables])
    policies = list(dict.fromkeys(results["policy"]))
    if reference not in policies:
        raise ValueError(f"reference: {reference!r} is not a policy of the results ({', '.join(policies)})")
    wide, strata = paired_matrix(results, metric, policies)
    covariates = (results[results["policy"] == reference].set_index(list(KEYS), drop=False)[variables]
                  .reindex(wide.index))
    ref = wide[reference].to_numpy(dtype=np.float64)
    rows = []
    for var in variables:
        levels = covariates[var].astype(str).to_numpy()
        if len(set(levels)) < 2:
            continue
        for level_name in sorted(set(levels), key=_level_order):
            mask = levels == level_name
            if mask.sum() < min_n:
                continue
            for p in policies:
                if p == reference:
                    continue
                x = wide[p].to_numpy(dtype=np.float64)[mask]
                d = paired_difference(x, ref[mask], n_boot, seed, level, strata=strata[mask])
                rows.append({"variable": var, "level": level_name, "policy": p, "reference": reference,
                             "metric": metric, "n": int(mask.sum()), "diff": d.value, "low": d.low, "high": d.high})
    return pd.DataFrame(rows)


def _level_order(level: str) -> tuple[int, str]:
    order = [*AGE_BANDS, "low", "middle", "high"]
    return (order.index(level), level) if level in order else (len(order), level)
