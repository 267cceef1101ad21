"""Quick demo: the smallest paired virtual trial, through the same comparison path as the trial app.

``adaptrx-demo`` (``python -m adaptrx.demo``) runs two arms on one cohort of the chosen condition and split:
no exercise (the ``none`` protocol, natural history) and the GLA:D programme (the ``glad`` protocol: supervised
sessions twice a week through progressive difficulty levels, then home exercise), both over 26-week episodes.
Both arms meet the same virtual patients with the same noise streams (common random numbers), intention to
treat, so the difference is paired patient by patient: the printed table gives each arm's means and the mean
paired difference (glad minus none) with its bootstrap 95 % CI, Holm-adjusted sign-flip p-value and clinical
reading against the MCIDs (:mod:`adaptrx.experiments.trial.comparison`, the path of ``adaptrx-trial``).

The full apps do more on the same path: ``adaptrx-trial`` runs any policies, the oracle and shipped agents over
seeds, with subgroups, figures and a report; ``make demo`` (``adaptrx-train experiment=quick``) trains an agent
and compares it with every protocol on test patients.

Example::

    adaptrx-demo --n 2000 --seed 3 --condition chronic_low_back_pain
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import pandas as pd

from adaptrx.experiments.trial.analysis import METRICS
from adaptrx.experiments.trial.comparison import PairedComparison, protocol_arm, run_comparison
from adaptrx.experiments.trial.report import amount, interval, markdown_table, p_value
from adaptrx.patient import SPLITS, conditions, make_cohort
from adaptrx.patient.cohort import programme_modality

#: The arms: the control (the reference of the differences), then the programme.
CONTROL, PROGRAMME = "none", "glad"
#: Episode length (weeks).
WEEKS = 26
#: Outcomes of the printed table (columns of the results table; :data:`~adaptrx.experiments.trial.analysis.METRICS`).
OUTCOMES: tuple[str, ...] = ("pain_w12", "pain_change_w12", "responder_w12", "pain_w26", "function_change", "flares",
                             "dropped_out", "supervised_sessions", "return", "composite")
#: Bootstrap resamples of patients and sign flips per p-value.
RESAMPLES = 2000
PERMUTATIONS = 10_000
#: Largest cohort the command line accepts (the bootstrap holds RESAMPLES x n patient indices in memory).
MAX_PATIENTS = 10_000


def run_demo(condition: str = "knee_oa", n: int = 1000, seed: int = 0, split: str = "test") -> PairedComparison:
    """Both arms on ``n`` patients of ``condition``'s ``split`` (cohort and noise seed ``seed``), ``WEEKS``-week
    episodes of the condition's programme modality."""
    env = {"condition": condition, "split": split, "weeks": WEEKS, "modality": programme_modality(condition)}
    arms = [protocol_arm(CONTROL, condition), protocol_arm(PROGRAMME, condition)]
    return run_comparison(make_cohort(condition, n, seed, split), seed, arms, env)


def differences(trial: PairedComparison, seed: int = 0) -> pd.DataFrame:
    """The programme minus the control on :data:`OUTCOMES` (one row per outcome: ``diff`` [``low``, ``high``],
    ``p_holm``, ``clinical``, ...; :func:`~adaptrx.experiments.trial.analysis.compare`)."""
    return trial.differences(CONTROL, OUTCOMES, n_boot=RESAMPLES, seed=seed, n_perm=PERMUTATIONS)


def format_table(trial: PairedComparison, diffs: pd.DataFrame) -> str:
    """One row per outcome: its label (units), each arm's mean over patients and the paired difference with its
    95 % CI, Holm p-value and clinical reading; rates in % and their differences in percentage points (pp)."""
    means = trial.results.groupby("policy", sort=False)[list(OUTCOMES)].mean()
    by_metric = diffs.set_index("metric")
    rows = []
    for metric in OUTCOMES:
        d = by_metric.loc[metric]
        rows.append({"outcome": METRICS[metric][0],
                     CONTROL: amount(means.loc[CONTROL, metric], metric),
                     PROGRAMME: amount(means.loc[PROGRAMME, metric], metric),
                     f"{PROGRAMME} - {CONTROL} [95 % CI]": interval(d["diff"], d["low"], d["high"], metric,
                                                                    signed=True),
                     "p (Holm)": p_value(d["p_holm"]),
                     "clinical": d["clinical"]})
    return markdown_table(pd.DataFrame(rows))


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
        description=f"Paired virtual trial: no exercise ({CONTROL}) vs the GLA:D programme ({PROGRAMME}) on the same "
        f"virtual patients, {WEEKS}-week episodes, intention to treat.",
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
    trial = run_demo(args.condition, args.n, args.seed, args.split)
    diffs = differences(trial, args.seed)
    print(f"adaptrx demo: paired virtual trial, {args.condition}, n={args.n} ({args.split} split), seed={args.seed}, "
          f"{WEEKS} weeks")
    print("Both arms run on the same patients and noise streams (common random numbers); all patients analysed "
          "(intention to treat).")
    print()
    print(format_table(trial, diffs))
    d = diffs.set_index("metric").loc["pain_change_w12"]
    print(f"\nPaired difference in pain change to week 12 ({PROGRAMME} - {CONTROL}): {d['diff']:+.2f} NRS, 95% "
          f"bootstrap CI [{d['low']:+.2f}, {d['high']:+.2f}] ({RESAMPLES} resamples of patients), Holm p "
          f"{p_value(d['p_holm'])}")
    print("Pain is the true weekly mean (NRS 0-10); responders: >= 30 % or >= 2 NRS below baseline (Farrar 2001). "
          "For more policies, seeds, subgroups and a report: adaptrx-trial.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
