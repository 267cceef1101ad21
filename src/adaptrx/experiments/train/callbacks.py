"""Val evaluation during training: the paired clinical evaluator and the SB3 callback that evaluates, logs,
selects and checkpoints (used by every algorithm of ``adaptrx-train``, DAgger included).

:class:`ClinicalEvaluator` plays one paired, intention-to-treat episode per val patient (the same patients and
noise at every evaluation) and computes the clinical metrics; :class:`ClinicalEvalCallback` runs it every
``budget.eval_freq`` env steps, writes ``clinical/*`` and SB3's ``eval/*`` tags and figures to TensorBoard, keeps
the best checkpoint by val return under the env's default reward (the headline objective) and checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure, HParam, TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecNormalize

from adaptrx.agents.factory import OFF_POLICY
from adaptrx.common import atomic
from adaptrx.envs import CohortEpisodes
from adaptrx.envs.episodes import EpisodeOutcomes
from adaptrx.experiments.clinical_metrics import (
    METRICS,
    clinical_metrics,
    reference_observation,
    response_curve,
    response_figure,
    trajectory_figure,
)
from adaptrx.experiments.train import checkpoints
from adaptrx.experiments.train.config import TrainConfig
from adaptrx.patient import make_cohort
from adaptrx.protocols import get as get_protocol
from adaptrx.protocols.base import Policy
from adaptrx.protocols.safety_rules import SafetyRules

#: Val patients whose trajectories are drawn at every evaluation (cohort row indices).
FIGURE_PATIENTS: tuple[int, ...] = (0, 1, 2, 3)
#: Week (0-based observation index) of the reference observation of the load-response curves.
REFERENCE_WEEK = 4
#: Metrics shown in TensorBoard's custom-scalars layout, by chart.
LAYOUT: dict[str, list[str]] = {
    "pain": ["pain_w12", "pain_change_w12", "pain_mean"],
    "response": ["responder_rate_w12", "function_change", "capacity_change"],
    "safety": ["flares_per_patient", "dropout_rate", "safety_cost", "shield_interventions"],
    "objective": ["return", "composite", "supervised_sessions"],
}
#: Metrics written with the hparams (tags that exist as scalars).
HPARAM_METRICS: tuple[str, ...] = ("return", "pain_w12", "responder_rate_w12", "flares_per_patient", "dropout_rate",
                                   "composite")
#: TensorBoard outputs that must not receive figures and hparams.
_NOT_TEXT = ("stdout", "log", "json", "csv")


class SB3Policy(Policy):
    """A live SB3 model (with its VecNormalize observation statistics) behind the policy interface."""

    def __init__(self, model: BaseAlgorithm, vec_normalize: VecNormalize | None = None, name: str = "agent") -> None:
        self.model = model
        self.vec_normalize = vec_normalize
        self.name = name

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        x = np.asarray(obs, dtype=np.float32)
        if self.vec_normalize is not None:
            x = self.vec_normalize.normalize_obs(x)
        return self.model.predict(x, state=state, episode_start=episode_start, deterministic=deterministic)


@dataclass
class Evaluation:
    """The val evaluation of one policy: outcomes and metrics."""

    step: int
    outcomes: EpisodeOutcomes
    metrics: dict[str, float]


class ClinicalEvaluator:
    """Paired val episodes of fixed patients (``n`` from the ``val`` split, noise ``seed``) for any policy."""

    def __init__(self, cfg: TrainConfig, split: str = "val", n: int | None = None) -> None:
        e = cfg.env
        n = cfg.budget.eval_patients if n is None else n
        cohort = make_cohort(e.condition, n, cfg.eval_seed, split)
        # the headline objective: val returns under the env's default reward, whatever reward the run trains on
        # (a shaped training reward must not decide which checkpoint is selected)
        self.episodes = CohortEpisodes(cohort, seed=cfg.eval_seed, **e.env_kwargs(split, default_reward=True))
        self.discrete = e.discrete
        self.shield = SafetyRules() if e.shield else None

    def run(self, policy: Any, name: str = "agent", step: int = 0) -> Evaluation:
        out = self.episodes.run(policy, name=name, shield=self.shield, discrete=self.discrete)
        return Evaluation(step, out, clinical_metrics(out))


class ClinicalEvalCallback(BaseCallback):
    """Evaluates on val every ``eval_freq`` env steps (clinical metrics, figures to TensorBoard), keeps the best
    model by mean val return, and checkpoints every ``checkpoint_freq`` steps."""

    def __init__(self, cfg: TrainConfig, evaluator: ClinicalEvaluator, norm: VecNormalize | None, run_dir: Path,
                 state: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg, self.evaluator, self.norm = cfg, evaluator, norm
        self.ckpt_dir = run_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = run_dir / "evaluations.csv"
        state = state or {}
        self.history: list[dict[str, float]] = list(state.get("history", []))
        self.best_return: float = float(state.get("best_return", -np.inf))
        self.best_step: int = int(state.get("best_step", -1))
        self.last_eval_step = int(state.get("last_eval_step", -1))
        self._next_eval = self._next_ckpt = 0
        self._pain_monitoring_curve: tuple[np.ndarray, np.ndarray] | None = None
        self._reference_obs: np.ndarray | None = None

    # ------------------------------------------------------------------ hooks
    def _on_training_start(self) -> None:
        b = self.cfg.budget
        self._next_eval = (self.num_timesteps // b.eval_freq + 1) * b.eval_freq
        self._next_ckpt = (self.num_timesteps // b.checkpoint_freq + 1) * b.checkpoint_freq
        layout = {"clinical": {chart: ["Multiline", [f"clinical/{m}" for m in tags]] for chart, tags in LAYOUT.items()}}
        for writer in self._writers():
            writer.add_custom_scalars(layout)
        if not self.evaluator.discrete:
            weekly = self._weekly_reference()
            self._reference_obs = weekly[REFERENCE_WEEK]
            self._pain_monitoring_curve = response_curve(get_protocol("pain_monitoring"), self._reference_obs,
                                                         history=weekly[:REFERENCE_WEEK])

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self.evaluate()
            self._next_eval += self.cfg.budget.eval_freq
        if self.num_timesteps >= self._next_ckpt:
            self.checkpoint("last")
            self._next_ckpt += self.cfg.budget.checkpoint_freq
        return True

    def _on_training_end(self) -> None:
        if self.last_eval_step < self.num_timesteps:
            self.evaluate()
        self.checkpoint("last")
        best = [row for row in self.history if row["step"] == self.best_step]
        if best:
            self._log_hparams(best[-1])

    # --------------------------------------------------------------- helpers
    def _writers(self) -> list[Any]:
        return [f.writer for f in self.logger.output_formats if isinstance(f, TensorBoardOutputFormat)]

    def _weekly_reference(self) -> np.ndarray:
        """Median val observation of each week under pain_monitoring, ``(weeks, n_features)``: week
        :data:`REFERENCE_WEEK` is a typical patient a month into a programme."""
        seen: list[np.ndarray] = []

        class Recorder(Policy):
            def __init__(self) -> None:
                self.inner = get_protocol("pain_monitoring")

            def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None,
                        deterministic: bool = True) -> tuple[np.ndarray, Any]:
                seen.append(np.array(obs))
                return self.inner.predict(obs, state, episode_start, deterministic)

        self.evaluator.episodes.run(Recorder(), name="reference")
        return reference_observation(np.stack(seen))

    def policy(self) -> SB3Policy:
        return SB3Policy(self.model, self.norm)

    def evaluate(self) -> Evaluation:
        """Run the val evaluation now; log metrics and figures; keep the best model."""
        step = self.num_timesteps
        ev = self.evaluator.run(self.policy(), step=step)
        for key, value in ev.metrics.items():
            self.logger.record(f"clinical/{key}", value)
        # SB3's EvalCallback tags: the val return under the default reward (the headline objective) and the
        # mean episode length in weeks (a dropout ends the episode)
        lengths = np.where(ev.outcomes.dropout_week > 0, ev.outcomes.dropout_week, ev.outcomes.weeks)
        self.logger.record("eval/mean_reward", ev.metrics["return"])
        self.logger.record("eval/mean_ep_length", float(lengths.mean()))
        fig = trajectory_figure(ev.outcomes, FIGURE_PATIENTS, title=f"val patients, step {step}")
        self.logger.record("figures/trajectories", Figure(fig, close=True), exclude=_NOT_TEXT)
        if self._reference_obs is not None and self._pain_monitoring_curve is not None:
            curves = {"agent": response_curve(self.policy(), self._reference_obs),
                      "pain_monitoring": self._pain_monitoring_curve}
            self.logger.record("figures/load_response", Figure(response_figure(curves), close=True), exclude=_NOT_TEXT)
        self.logger.dump(step)
        self.history.append({"step": step, **ev.metrics})
        self._write_history()
        self.last_eval_step = step
        if ev.metrics["return"] > self.best_return:
            self.best_return, self.best_step = ev.metrics["return"], step
            self.checkpoint("best")
        return ev

    def _write_history(self) -> None:
        cols = ["step", *METRICS]
        lines = [",".join(cols)] + [",".join([str(int(row["step"]))] + [f"{row[c]:.6g}" for c in METRICS])
                                    for row in self.history]
        atomic.write_text(self.csv_path, "\n".join(lines) + "\n")

    def checkpoint(self, tag: str) -> None:
        """Save checkpoint ``<tag>`` (model, observation statistics, the replay buffer for ``last`` of off-policy
        algorithms, and the callback's state) atomically."""
        state = {"best_return": self.best_return, "best_step": self.best_step, "last_eval_step": self.last_eval_step,
                 "history": self.history}
        checkpoints.save(self.model, self.norm, self.ckpt_dir, tag, state,
                         replay=tag == "last" and self.cfg.algo.name in OFF_POLICY)

    def _log_hparams(self, metrics: dict[str, float]) -> None:
        c = self.cfg
        hparams: dict[str, Any] = {
            "algo": c.algo.name, "condition": c.env.condition, "seed": c.seed, "discrete": c.env.discrete,
            "shield": c.env.shield, "normalize_obs": c.env.normalize_obs, "n_envs": c.budget.n_envs,
            "total_timesteps": c.budget.total_timesteps, "net_pi": str(list(c.policy.net.pi)),
            "net_vf": str(list(c.policy.net.vf)), "activation": c.policy.net.activation,
        }
        for key, value in c.algo.kwargs.items():
            if isinstance(value, int | float | str | bool):
                hparams[f"algo.{key}"] = value
        # the HParams dashboard shows the last value of each metric's scalar tag: selected/* are written once,
        # with the selected (exported) checkpoint's values, so the dashboard shows that policy, not the last eval
        metric_dict = {f"selected/{m}": float(metrics[m]) for m in HPARAM_METRICS}
        for tag, value in metric_dict.items():
            self.logger.record(tag, value)
        self.logger.record("selected/step", float(self.best_step))
        self.logger.record("hparams", HParam(hparams, metric_dict), exclude=_NOT_TEXT)
        self.logger.dump(self.num_timesteps)
