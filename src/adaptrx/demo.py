"""Quick demo: a two-arm paired virtual trial on the calibrated patient model.

Until the training and trial apps exist, ``make demo`` (``python -m adaptrx.demo`` or ``adaptrx-demo``)
runs one virtual trial: a test-split cohort of the chosen condition, once with no exercise and once with
a GLA:D-like supervised programme (2 sessions a week, progressive load, 12 weeks), both followed to
week 26. Both arms run on the same virtual patients with the same noise streams (common random numbers),
so the between-arm difference is paired, patient by patient.

Example::

    python -m adaptrx.demo --n 2000 --seed 3 --condition chronic_low_back_pain
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from adaptrx.patient import SPLITS, SUPERVISED, conditions, make_cohort
from adaptrx.patient.calibration_arms import Arm, ArmOutcome, gradual_load, no_exercise, programme, run_arm
from adaptrx.patient.cohort import programme_modality

#: Weeks of the supervised programme, and the week the trial follows patients to.
TREATMENT_WEEKS = 12
FOLLOW_UP_WEEKS = 26
#: Bootstrap resamples (of patients) for the confidence interval of the paired difference.
RESAMPLES = 2000
#: Largest cohort the command line accepts (about 20 s and 1 GB of memory on one core).
MAX_PATIENTS = 100_000


#: Display names of the arms.
ARM_LABELS = {"none": "no exercise", "exercise_2x": "exercise 2x/wk"}


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-patient differences with a percentile bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    level: float
    resamples: int


def exercise_arm(condition: str) -> Arm:
    """The GLA:D-like arm: 2x/week supervised, progressive load (:func:`gradual_load`), 12 weeks, then nothing.

    The modality follows the calibration suite: aerobic for fibromyalgia, resistance otherwise.
    """
    modality = programme_modality(condition)
    return programme(
        "exercise_2x", 2, SUPERVISED, TREATMENT_WEEKS, gradual_load, modality=modality,
        description=f"GLA:D-like, 2x/week supervised {modality}, progressive load, {TREATMENT_WEEKS} weeks",
    )


def demo_arms(condition: str) -> list[Arm]:
    """The two arms of the demo: no exercise (control) first, then :func:`exercise_arm`."""
    return [no_exercise(), exercise_arm(condition)]


def run_demo(condition: str = "knee_oa", n: int = 1000, seed: int = 0, split: str = "test") -> list[ArmOutcome]:
    """Run both arms on the same cohort and seed (common random numbers) to week 26.

    Returns:
        The outcomes of the no-exercise arm, then of the exercise arm.
    """
    cohort = make_cohort(condition, n, seed=seed, split=split)
    return [run_arm(cohort, arm, FOLLOW_UP_WEEKS, seed=seed) for arm in demo_arms(condition)]


def paired_bootstrap(
    diff: np.ndarray, rng: np.random.Generator, resamples: int = RESAMPLES, level: float = 0.95
) -> PairedDifference:
    """Percentile bootstrap CI of ``diff.mean()``, resampling patients (rows of ``diff``) with ``rng``.

    Resamples are drawn in chunks so memory stays bounded for large cohorts.
    """
    n = diff.shape[0]
    chunk = max(1, min(resamples, 20_000_000 // max(n, 1)))
    means = np.concatenate([
        diff[rng.integers(0, n, size=(min(chunk, resamples - start), n))].mean(axis=1)
        for start in range(0, resamples, chunk)
    ])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return PairedDifference(float(diff.mean()), float(low), float(high), level, resamples)


#: Table rows: label, key of :meth:`ArmOutcome.summary`, its week, scale, format spec, signed.
_ROWS: list[tuple[str, str, int, float, str, bool]] = [
    ("pain at baseline (NRS 0-10)", "pain_baseline", 12, 1.0, ".2f", False),
    ("pain, week 12", "pain_w12", 12, 1.0, ".2f", False),
    ("pain, week 26", "pain_w26", 26, 1.0, ".2f", False),
    ("pain change, week 12", "pain_change", 12, 1.0, ".2f", True),
    ("pain change, week 26", "pain_change", 26, 1.0, ".2f", True),
    ("responders, week 12 (%)", "responders", 12, 100.0, ".1f", False),
    ("responders, week 26 (%)", "responders", 26, 100.0, ".1f", False),
    ("flares per patient, weeks 1-12", "flares_per_patient", 12, 1.0, ".2f", False),
    ("flares per patient, weeks 1-26", "flares_per_patient", 26, 1.0, ".2f", False),
    ("attendance, weeks 1-12 (%)", "attendance", 12, 100.0, ".1f", False),
    ("dropout by week 12 (%)", "dropout", 12, 100.0, ".1f", False),
    ("capacity change, week 12 (x C0)", "capacity_change", 12, 1.0, ".3f", True),
    ("capacity change, week 26 (x C0)", "capacity_change", 26, 1.0, ".3f", True),
    ("function change, week 12 (0-100)", "function_change", 12, 1.0, ".1f", True),
    ("function change, week 26 (0-100)", "function_change", 26, 1.0, ".1f", True),
]


def format_table(outcomes: Sequence[ArmOutcome]) -> str:
    """Plain-text table: one row per metric, one column per arm, then the difference (last arm - first).

    Attendance of an arm that prescribes no sessions shows as ``-``.
    """
    summaries = [{w: o.summary(w) for w in (12, 26)} for o in outcomes]
    headers = ["", *(ARM_LABELS.get(o.arm, o.arm) for o in outcomes), "difference"]
    rows = [headers]
    for label, key, week, scale, spec, signed in _ROWS:
        values = [scale * s[week][key] for s in summaries]
        if key == "attendance":
            values = [v if o.prescribed[:week].any() else float("nan") for v, o in zip(values, outcomes, strict=True)]
        diff = values[-1] - values[0]
        cells = [format(v, ("+" if signed else "") + spec) for v in values] + [format(diff, "+" + spec)]
        rows.append([label, *("-" if "nan" in c else c for c in cells)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        label, *values = cells
        return "  ".join([label.ljust(widths[0]), *(v.rjust(w) for v, w in zip(values, widths[1:], strict=True))])

    return "\n".join([line(rows[0]), "  ".join("-" * w for w in widths), *map(line, rows[1:])])


def _int_in(minimum: int, maximum: int) -> Callable[[str], int]:
    """argparse type: an integer in ``[minimum, maximum]`` (argparse turns the error into exit status 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be between {minimum} and {maximum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of the demo."""
    parser = argparse.ArgumentParser(
        prog="adaptrx-demo",
        description="Paired virtual trial: no exercise vs a GLA:D-like 2x/week supervised progressive programme "
        f"({TREATMENT_WEEKS} weeks, followed to week {FOLLOW_UP_WEEKS}) on the same virtual patients.",
    )
    parser.add_argument("--n", type=_int_in(2, MAX_PATIENTS), default=1000,
                        help=f"patients, 2-{MAX_PATIENTS} (default 1000)")
    parser.add_argument("--seed", type=_int_in(0, 2**63 - 1), default=0,
                        help="cohort, noise and bootstrap seed (default 0)")
    parser.add_argument("--condition", choices=conditions(), default="knee_oa", help="condition (default knee_oa)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="cohort split (default test)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo trial and print the table; returns the exit status (argparse exits with 2 on bad input)."""
    args = build_parser().parse_args(argv)
    outcomes = run_demo(args.condition, args.n, args.seed, args.split)
    control, exercise = outcomes
    diff = exercise.week(12) - control.week(12)
    ci = paired_bootstrap(diff, np.random.default_rng([args.seed, 0xB007]))
    print(f"adaptrx demo: paired virtual trial, {args.condition}, n={args.n} ({args.split} split), seed={args.seed}")
    print("Both arms run on the same patients and noise streams (common random numbers); all patients analysed.")
    for arm in demo_arms(args.condition):
        print(f"  {ARM_LABELS[arm.name]}: {arm.description}")
    print()
    print(format_table(outcomes))
    print(f"\nPaired difference in week-12 pain ({ARM_LABELS['exercise_2x']} - {ARM_LABELS['none']}): "
          f"{ci.mean:+.2f} NRS, {ci.level:.0%} bootstrap CI [{ci.low:+.2f}, {ci.high:+.2f}] "
          f"({ci.resamples} resamples of patients)")
    print("Pain is the true weekly mean (0-10 NRS); responders: >= 30 % or >= 2 NRS below baseline (Farrar 2001).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
