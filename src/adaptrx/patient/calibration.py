"""The calibration suite: virtual trials reproducing targets T1-T13 of ``DESIGN.md`` 2.5.

Run ``python -m adaptrx.patient.calibration`` (or ``adaptrx-calibrate``) to regenerate the target table
and figures under ``envs/`` (``envs/calibration/``) and print the table. Tests
(``tests/patient/test_calibration.py``) assert every accepted range on the same seeded suite.

Every arm of a scenario runs on the *same* virtual patients with the same noise (common random numbers),
~2000 per arm; between-arm differences are therefore paired, and between-arm SMDs use the pooled SD of
the outcome as trials report them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from adaptrx.patient.calibration_arms import (
    DROPOUT_TARGETS,
    Arm,
    ArmOutcome,
    abrupt_load,
    attention_control,
    geometric_load,
    gradual_load,
    no_exercise,
    programme,
    relative_load,
    run_arm,
)
from adaptrx.patient.cohort import make_cohort
from adaptrx.patient.constants import HOME_ALONE, SUPERVISED, ModelConstants
from adaptrx.patient.figures import calibration_figures

CALIBRATION_SEED = 20261125

@dataclass
class Target:
    """One calibration check: simulated value against an accepted range."""

    id: str
    scenario: str
    target: str
    low: float
    high: float
    simulated: float
    source: str

    @property
    def passed(self) -> bool:
        return bool(self.low <= self.simulated <= self.high)


def _smd(a: np.ndarray, b: np.ndarray) -> float:
    """Standardised mean difference (b - a) / pooled SD: positive when ``a`` has less pain."""
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2.0)
    return float((b.mean() - a.mean()) / pooled)


def _rate_ratio(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.mean() / max(b.mean(), 1e-9))


def _odds(p: float) -> float:
    return p / max(1e-9, 1.0 - p)


def knee_arms() -> dict[str, Arm]:
    """The scripted arms of the knee OA scenarios."""
    return {
        "none": no_exercise(),
        "attention_control": attention_control(12),
        "glad_2x": programme("glad_2x", 2, SUPERVISED, 12, lambda w, s: gradual_load(w, s),
                             description="GLA:D-like: 2x/week supervised, progressive, 12 weeks"),
        "supervised_3x": programme("supervised_3x", 3, SUPERVISED, 12, lambda w, s: gradual_load(w, s),
                                   description="3x/week supervised, progressive, 12 weeks"),
        "high_intensity": programme("high_intensity", 3, SUPERVISED, 12, relative_load(0.825),
                                    description="75-90 % of current capacity, 3x/week, supervised"),
        "low_intensity": programme("low_intensity", 3, SUPERVISED, 12, relative_load(0.35),
                                   description="30-40 % of current capacity, 3x/week, supervised"),
        "abrupt_high": programme("abrupt_high", 2, SUPERVISED, 12, abrupt_load(0.85),
                                 description="0.85 x baseline capacity from week 1, 2x/week supervised"),
        "plus50_per_week": programme("plus50_per_week", 2, SUPERVISED, 12, geometric_load(0.3, 1.5, 1.2),
                                     description="0.3 x baseline capacity, +50 %/week, 2x/week supervised"),
        "supervised_16w": programme("supervised_16w", 2, SUPERVISED, 16, lambda w, s: gradual_load(w, s),
                                    description="2x/week supervised, 16 weeks"),
        "home_16w": programme("home_16w", 3, HOME_ALONE, 16, lambda w, s: gradual_load(w, s),
                              description="3x/week unsupervised home programme, 16 weeks"),
    }


def run_suite(
    n: int = 2000, seed: int = CALIBRATION_SEED, constants: ModelConstants | None = None, progress: bool = True
) -> tuple[list[Target], dict[str, ArmOutcome]]:
    """Run every calibration scenario and evaluate targets T1-T13.

    Args:
        n: patients per arm (the same patients in every arm of a condition).
        seed: cohort and noise seed.
        constants: model constants to evaluate (default: the calibrated ones).
        progress: show a progress bar.

    Returns:
        The list of targets and the per-arm outcomes (keyed ``condition/arm``) used for figures.
    """
    knee = make_cohort("knee_oa", n, seed, "train")
    arms = knee_arms()
    plan: list[tuple[str, str, object, Arm, int]] = [
        ("knee_oa", name, knee, arm, 52 if name in {"none", "glad_2x"} else 16) for name, arm in arms.items()
    ]
    for cond, modality in (("chronic_low_back_pain", "resistance"), ("fibromyalgia", "aerobic")):
        cohort = make_cohort(cond, n, seed, "train")
        plan.append((cond, "none", cohort, no_exercise(), 16))
        plan.append((cond, "exercise_2x", cohort, programme(
            "exercise_2x", 2, SUPERVISED, 16, lambda w, s: gradual_load(w, s), modality=modality,
            description=f"2x/week supervised {modality}, progressive"), 16))
    out: dict[str, ArmOutcome] = {}
    for cond, name, cohort, arm, weeks in tqdm(plan, desc="calibration arms", disable=not progress):
        out[f"{cond}/{name}"] = run_arm(cohort, arm, weeks, seed=seed, constants=constants)  # type: ignore[arg-type]
    return evaluate(out), out


def evaluate(out: dict[str, ArmOutcome]) -> list[Target]:
    """Compute every target from the arm outcomes of :func:`run_suite`."""
    k = {name.split("/", 1)[1]: o for name, o in out.items() if name.startswith("knee_oa/")}
    none, att, glad, sup3 = k["none"], k["attention_control"], k["glad_2x"], k["supervised_3x"]
    hi, lo, abrupt, plus50 = k["high_intensity"], k["low_intensity"], k["abrupt_high"], k["plus50_per_week"]
    t: list[Target] = []
    diff12 = float(none.week(12).mean() - glad.week(12).mean())
    t.append(Target("T1", "GLA:D-like 2x/wk vs no exercise, week 12", "pain difference 1.2 NRS (0.9-1.5)",
                    0.9, 1.5, diff12, "Fransen 2015 Cochrane"))
    t.append(Target("T1b", "GLA:D-like 2x/wk vs no exercise, week 12", "SMD 0.4-0.6", 0.4, 0.6,
                    _smd(glad.week(12), none.week(12)), "Fransen 2015 Cochrane"))
    t.append(Target("T2", "GLA:D-like arm, within-arm change at week 12", "-1.2 to -1.9 NRS", -1.9, -1.2,
                    float((glad.week(12) - glad.baseline_pain).mean()), "GLA:D registry, Skou & Roos 2017"))
    sd0 = float(none.baseline_pain.std(ddof=1))
    t.append(Target("T3", "attention control, within-arm effect size at week 12", "ES ~0.5 (0.35-0.65)",
                    0.35, 0.65, float((att.baseline_pain - att.week(12)).mean() / sd0), "Zhang 2008"))
    t.append(Target("T3b", "untreated, within-arm effect size at week 12", "ES ~0 (-0.1-0.15)", -0.1, 0.15,
                    float((none.baseline_pain - none.week(12)).mean() / sd0), "Zhang 2008"))
    diff26 = float(none.week(26).mean() - glad.week(26).mean())
    diff52 = float(none.week(52).mean() - glad.week(52).mean())
    t.append(Target("T4", "stop at week 12: difference retained at week 26 (3.5 months after)",
                    "~50 % of end-of-treatment (30-70 %)", 0.3, 0.7, diff26 / diff12, "Fransen 2015; Pisters 2007"))
    t.append(Target("T4b", "stop at week 12: difference retained at week 52", "~0 (< 25 %)", -0.1, 0.25,
                    diff52 / diff12, "Fransen 2015; Pisters 2007"))
    smd3, smd2 = _smd(sup3.week(12), none.week(12)), _smd(glad.week(12), none.week(12))
    t.append(Target("T5", "supervised 3x/week vs no exercise", "SMD ~0.68 (0.55-0.85)", 0.55, 0.85, smd3,
                    "Juhl 2014"))
    t.append(Target("T5b", "SMD ratio 3x/week : 2x/week", "~0.68/0.41 = 1.66 (1.25-2.2)", 1.25, 2.2,
                    smd3 / smd2, "Juhl 2014"))
    t.append(Target("T6", "high (82.5 %) vs low (35 %) intensity, pain at week 12", "absolute difference < 0.3 NRS",
                    -0.3, 0.3, float(hi.week(12).mean() - lo.week(12).mean()), "START, Messier 2021"))
    t.append(Target("T6b", "high vs low intensity: capacity gain difference at week 12", "> 0 (high gains more)",
                    0.02, 10.0, float(hi.capacity[11].mean() - lo.capacity[11].mean()), "Messier 2021"))
    t.append(Target("T6c", "high vs low intensity: flare rate ratio", "> 1 (more flares)", 1.05, 10.0,
                    _rate_ratio(hi.flares[:12].sum(0), lo.flares[:12].sum(0)), "Messier 2021"))
    t.append(Target("T6d", "high vs low intensity: dropout difference at week 12", "> 0 (more dropout)", 0.01,
                    1.0, float(hi.dropped_out[11].mean() - lo.dropped_out[11].mean()), "Messier 2021"))
    fm = out["fibromyalgia/exercise_2x"]
    for (tid, scenario), (key, (centre, low, high)) in zip(
        (("T7", "dropout by week 16, supervised 2x/week (knee OA)"),
         ("T7b", "dropout by week 16, unsupervised home 3x/week (knee OA)"),
         ("T7c", "dropout by week 16, fibromyalgia aerobic")),
        DROPOUT_TARGETS.items(),
        strict=True,
    ):
        t.append(Target(tid, scenario, f"{100 * centre:.0f} % ({100 * low:.0f}-{100 * high:.0f} %)", low, high,
                        float(out[key].dropped_out[15].mean()), "Vancampfort 2024"))
    t.append(Target("T8", "minor flares over 12 weeks, GLA:D-like vs no exercise", "RR ~1.2 (1.1-1.3)", 1.1,
                    1.3, _rate_ratio(glad.flares[:12].sum(0), none.flares[:12].sum(0)), "Niemeijer 2020"))
    t.append(Target("T9", "responders at week 12 (>= 30 % or >= 2 NRS), exercise", "40-60 %", 0.40, 0.60,
                    float(glad.responders(12).mean()), "Farrar 2001 definition"))
    t.append(Target("T9b", "responders at week 12, attention control", "25-40 %", 0.25, 0.40,
                    float(att.responders(12).mean()), "Farrar 2001 definition"))
    s0 = glad.sensitization
    top = s0 >= np.quantile(s0, 2.0 / 3.0)
    non_resp = ~glad.responders(12)
    t.append(Target("T10", "most sensitized tercile vs rest: odds ratio of non-response", "~2 (1.5-3.0)", 1.5,
                    3.0, _odds(non_resp[top].mean()) / _odds(non_resp[~top].mean()), "O'Leary 2018"))
    lbp_n, lbp_x = out["chronic_low_back_pain/none"], out["chronic_low_back_pain/exercise_2x"]
    t.append(Target("T11", "chronic low back pain, exercise vs none at week 12", "~1.5 NRS (1.2-1.8)", 1.2, 1.8,
                    float(lbp_n.week(12).mean() - lbp_x.week(12).mean()), "Hayden 2021 Cochrane"))
    fm_n = out["fibromyalgia/none"]
    t.append(Target("T12", "fibromyalgia aerobic vs none at week 12", "~1.1 NRS (0.8-1.4)", 0.8, 1.4,
                    float(fm_n.week(12).mean() - fm.week(12).mean()), "Bidonde 2017"))
    for arm, label in ((abrupt, "abrupt high load from week 1"), (plus50, "+50 %/week")):
        tag = "T13" if arm is abrupt else "T13d"
        t.append(Target(tag, f"{label} vs gradual: flare rate ratio over 12 weeks", "> 1 (more flares; >= 1.3)",
                        1.3, 100.0, _rate_ratio(arm.flares[:12].sum(0), glad.flares[:12].sum(0)),
                        "pain-monitoring practice; ACWR literature"))
        t.append(Target(f"{tag}b", f"{label} vs gradual: dropout difference at week 12", "> 0 (more dropout)",
                        0.01, 1.0, float(arm.dropped_out[11].mean() - glad.dropped_out[11].mean()),
                        "ACWR literature"))
        t.append(Target(f"{tag}c", f"{label} vs gradual: pain difference at week 12", ">= 0 (no better pain)",
                        0.0, 10.0, float(arm.week(12).mean() - glad.week(12).mean()), "pain-monitoring practice"))
    return t


def format_table(targets: list[Target]) -> str:
    """Markdown table of target vs simulated."""
    lines = ["| # | scenario | target | accepted | simulated | ok |", "|---|---|---|---|---|---|"]
    for t in targets:
        hi = "" if t.high >= 10 else f"{t.high:g}"
        lines.append(f"| {t.id} | {t.scenario} | {t.target} | [{t.low:g}, {hi or 'inf'}] | {t.simulated:.3f} | "
                     f"{'yes' if t.passed else '**no**'} |")
    return "\n".join(lines)


CARD_START, CARD_END = "<!-- calibration-table:start -->", "<!-- calibration-table:end -->"


def update_model_card(card: Path, table: str) -> None:
    """Replace the calibration table between the markers of ``MODEL_CARD.md`` with ``table``."""
    text = card.read_text()
    if CARD_START not in text or CARD_END not in text:
        raise ValueError(f"{card}: missing the {CARD_START} / {CARD_END} markers")
    head, rest = text.split(CARD_START, 1)
    _, tail = rest.split(CARD_END, 1)
    card.write_text(f"{head}{CARD_START}\n{table}\n{CARD_END}{tail}")


def main(argv: list[str] | None = None) -> int:
    """Regenerate the calibration table (JSON + markdown) and figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="patients per arm (default 2000)")
    parser.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    parser.add_argument("--out", type=Path, default=Path("envs/calibration"), help="output directory")
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args(argv)
    if args.n < 50:
        parser.error("--n: need at least 50 patients per arm")
    targets, outcomes = run_suite(args.n, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "targets.json").write_text(json.dumps(
        [{**asdict(t), "passed": t.passed} for t in targets], indent=2) + "\n")
    table = format_table(targets)
    (args.out / "targets.md").write_text(table + "\n")
    card = args.out.parent / "MODEL_CARD.md"
    if card.is_file():
        update_model_card(card, table)
    if not args.no_figures:
        calibration_figures(outcomes, args.out)
    print(table)
    failed = [t.id for t in targets if not t.passed]
    print(f"\n{len(targets) - len(failed)}/{len(targets)} targets in range" + (f"; out: {failed}" if failed else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
