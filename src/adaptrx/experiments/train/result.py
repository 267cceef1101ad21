"""What one ``adaptrx-train`` run produced: :class:`TrainResult` (paths and headline numbers), shared by the
training loop (:mod:`adaptrx.experiments.train.training`, which makes it) and the policy card
(:mod:`adaptrx.experiments.train.policy_card`, which reports it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainResult:
    """What a run produced (paths) and its headline numbers."""

    run_dir: Path
    tensorboard_dir: Path
    policy_dir: Path
    timesteps: int
    seconds: float
    best_step: int
    val_metrics: dict[str, float]
    test: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # every val evaluation (step, metrics)

    def decline(self) -> str:
        """A sentence when the selected evaluation is not the last one: how far val return fell after it
        (empty when the last evaluation is the selected one)."""
        if not self.history or int(self.history[-1]["step"]) == self.best_step:
            return ""
        best = max((row for row in self.history if int(row["step"]) == self.best_step), key=lambda r: r["return"],
                   default=None)
        if best is None:
            return ""
        last = self.history[-1]
        worst = min(self.history[self.history.index(best):], key=lambda r: r["return"])
        return (f"the selected policy (step {self.best_step:,}) is not the last: later evaluations fell to val "
                f"return {last['return']:.2f} at the last (step {int(last['step']):,}; lowest {worst['return']:.2f}) "
                f"from {best['return']:.2f}, dropout {100 * best['dropout_rate']:.0f} % -> "
                f"{100 * last['dropout_rate']:.0f} %")

    def summary_line(self) -> str:
        """One line: what ran, the selected policy's val numbers, the test verdict, and where things went."""
        m = self.val_metrics
        line = (f"adaptrx-train: {self.timesteps:,} steps in {self.seconds / 60:.1f} min; best at step "
                f"{self.best_step:,}: val return {m['return']:.2f}, pain w12 {m['pain_w12']:.2f}, flares "
                f"{m['flares_per_patient']:.2f}/patient, dropout {100 * m['dropout_rate']:.0f} %")
        if self.decline():
            line += f"; NOTE: {self.decline()}"
        if self.test:
            line += f"; test: {self.test['headline']}"
        return line + f" | logs: {self.tensorboard_dir} | policy: {self.policy_dir}"
