"""The training loop behind ``adaptrx-train``: env, model, clinical evaluation, checkpoints, resume, export.

:func:`train` runs one composed :class:`~adaptrx.experiments.train.config.TrainConfig` into a run
directory::

    <run_dir>/
      .hydra/                 the composed config (Hydra)
      tb/<ALGO>_1/            TensorBoard: SB3 losses, clinical/* metrics, figures, hparams, custom scalars
      checkpoints/last/       model, observation statistics (+ replay buffer), state: every checkpoint_freq steps
      checkpoints/best/       the same at every new best val return (see adaptrx.experiments.train.checkpoints)
      evaluations.csv         the clinical metrics of every evaluation on val
      figures/                trajectories and load-vs-pain response of the selected policy (PNG)
      policy/                 the selected (best val return) policy: policy.safetensors + manifest.json + card.md
      test_comparison.*       the paired comparison on test patients (see adaptrx.experiments.train.policy_card)

Evaluation is a paired, intention-to-treat episode per val patient (:class:`~adaptrx.envs.CohortEpisodes`):
the same ``budget.eval_patients`` patients with the same noise (``eval_seed``) at every evaluation, so the
curve in TensorBoard moves only with the policy. Model selection uses the mean val return under the env's
default reward (the headline objective, ``adaptrx.envs.reward``), whatever reward the run trains on.

Checkpoints are written atomically and read back without unpickling (:mod:`adaptrx.experiments.train.checkpoints`:
the model is rebuilt from the config and only the tensors of SB3's zip are loaded); a run killed at any point
resumes from its last complete checkpoint. The shipped format is the safetensors export
(:mod:`adaptrx.agents.export`).
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from adaptrx.agents.export import export_policy, load_policy
from adaptrx.agents.factory import make_model
from adaptrx.envs import PatientVecEnv
from adaptrx.envs.programme_end import ProgrammeEnd
from adaptrx.experiments.clinical_metrics import response_curve, response_figure, trajectory_figure
from adaptrx.experiments.train import checkpoints
from adaptrx.experiments.train.callbacks import (
    FIGURE_PATIENTS,
    ClinicalEvalCallback,
    ClinicalEvaluator,
    SB3Policy,
)
from adaptrx.experiments.train.config import TrainConfig, validate
from adaptrx.experiments.train.distillation import run_dagger
from adaptrx.experiments.train.policy_card import compare_on_test, log_test_comparison, write_card
from adaptrx.experiments.train.result import TrainResult
from adaptrx.protocols.safety_rules import SafetyRules

__all__ = ["ClinicalEvaluator", "SB3Policy", "TrainResult", "train"]


def _unwrap_config(cfg: TrainConfig | DictConfig) -> TrainConfig:
    if isinstance(cfg, TrainConfig):
        return cfg
    obj = OmegaConf.to_object(cfg)
    if not isinstance(obj, TrainConfig):
        raise TypeError("cfg: expected a TrainConfig (compose with the train_schema)")
    return obj


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON-able data (what the manifest stores and hashes)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def env_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The env keyword arguments of the run (also stored in the exported manifest)."""
    e = cfg.env
    return {"condition": e.condition, "weeks": e.weeks, "modality": e.modality, "reward": e.reward.weights(),
            "discrete": e.discrete, "shield": e.shield, "belief": e.belief, "belief_particles": e.belief_particles}


def feature_names(cfg: TrainConfig) -> tuple[str, ...]:
    """The observation's feature names of the run's env (records, then belief features if ``env.belief``)."""
    return cfg.env.env_config().feature_names


def make_train_env(cfg: TrainConfig) -> tuple[VecEnv, VecNormalize | None]:
    """The batched training env (seeded with ``cfg.seed``), normalised as configured."""
    e = cfg.env
    shield = SafetyRules() if e.shield else None
    patients = PatientVecEnv(cfg.budget.n_envs, discrete=e.discrete, shield=shield, **e.env_kwargs())
    patients.seed(cfg.seed)
    # the programme's last week ends the objective: no value bootstrapped past it (adaptrx.envs.programme_end)
    env: VecEnv = ProgrammeEnd(patients) if e.programme_end else patients
    # episode statistics for SB3's standard rollout/ep_rew_mean and rollout/ep_len_mean (training reward)
    env = VecMonitor(env)
    norm = None
    if e.normalize_obs or e.normalize_reward:
        gamma = float(cfg.algo.kwargs.get("gamma", 0.99))
        norm = VecNormalize(env, norm_obs=e.normalize_obs, norm_reward=e.normalize_reward, gamma=gamma)
        env = norm
    return env, norm


def _resume_dir(cfg: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint folder to resume from: ``resume_from``'s, or the latest earlier run's (``resume``)."""
    if cfg.resume_from:
        found = checkpoints.find(Path(cfg.resume_from) / "checkpoints", "last")
        if found is None:
            raise ValueError(f"resume_from: no complete checkpoint under {Path(cfg.resume_from) / 'checkpoints'}")
        return found
    if not cfg.resume:
        return None
    # newest run first: find() hashes a checkpoint's files, so stop at the first complete one
    for earlier in sorted(run_dir.parent.iterdir(), reverse=True):
        found = checkpoints.find(earlier / "checkpoints", "last") if earlier != run_dir else None
        if found is not None:
            return found
    raise ValueError(f"resume: no earlier run with a complete checkpoint under {run_dir.parent}")


def _new_model(cfg: TrainConfig, env: VecEnv, tb_dir: Path | None) -> BaseAlgorithm:
    net = OmegaConf.to_container(OmegaConf.structured(cfg.policy.net))
    return make_model(cfg.algo.name, env, dict(cfg.algo.kwargs), net, seed=cfg.seed,  # type: ignore[arg-type]
                      tensorboard_log=tb_dir, action_noise_std=cfg.algo.action_noise_std)


def _restore(cfg: TrainConfig, src: Path, env: VecEnv, norm: VecNormalize | None, run_dir: Path,
             tb_dir: Path) -> tuple[BaseAlgorithm, dict[str, Any]]:
    """A model of ``cfg`` with the tensors, counters (and replay buffer) of checkpoint ``src``; its best
    checkpoint is carried over into this run."""
    model = checkpoints.load_into(_new_model(cfg, env, tb_dir), src)
    stats = checkpoints.load_stats(src)
    if norm is not None and stats is not None:
        norm.obs_rms = stats
    best = checkpoints.find(src.parent, "best")
    if best is not None:
        shutil.copytree(best, run_dir / "checkpoints" / "best", dirs_exist_ok=True)
    return model, checkpoints.read_state(src)


def train(cfg: TrainConfig | DictConfig, run_dir: str | Path) -> TrainResult:
    """Train, evaluate, select, export and compare one run of ``cfg`` into ``run_dir`` (see the module doc)."""
    cfg = _unwrap_config(cfg)
    validate(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.budget.torch_threads)
    start = time.perf_counter()
    env, norm = make_train_env(cfg)
    tb_dir = run_dir / "tb"
    src = _resume_dir(cfg, run_dir)
    state: dict[str, Any] = {}
    if src is not None:
        model, state = _restore(cfg, src, env, norm, run_dir, tb_dir)
    else:
        model = _new_model(cfg, env, tb_dir)
    evaluator = ClinicalEvaluator(cfg)
    callback = ClinicalEvalCallback(cfg, evaluator, norm, run_dir, state)
    remaining = cfg.budget.total_timesteps - model.num_timesteps
    # SB3 makes and reads every env's info each step (VecMonitor, the rollout's info buffer): thousands of short-lived
    # objects per step at large n_envs, which trigger full collections over the whole heap (torch, the model, the
    # envs). Everything alive now lives for the whole run, so it is moved out of the collector's reach until the
    # training ends (benchmarks/README.md: ~10 ms of a step at 4096 envs without this, ~3 with).
    gc.freeze()
    try:
        if cfg.algo.name == "dagger":
            assert norm is not None  # validate() requires env.normalize_obs for dagger
            run_dagger(cfg, model, norm, callback, str(tb_dir))
        elif remaining > 0:
            # SB3 collects whole rollouts (on-policy: n_steps per env; off-policy: one step per env): ask for the
            # steps that will run, so the progress bar's total is the count it reaches
            chunk = cfg.budget.n_envs * int(getattr(model, "n_steps", 1))
            remaining = -(-remaining // chunk) * chunk
            model.learn(remaining, callback=callback, tb_log_name=cfg.algo.name.upper(),
                        reset_num_timesteps=src is None, progress_bar=cfg.progress)
    finally:
        gc.unfreeze()
    best, best_stats = _best_model(cfg, run_dir, model, env, norm)
    policy_dir = run_dir / "policy"

    def export(evaluation: dict[str, Any] | None = None) -> None:
        export_policy(best, policy_dir, obs_rms=best_stats, clip_obs=norm.clip_obs if norm else 10.0,
                      epsilon=norm.epsilon if norm else 1e-8, feature_names=feature_names(cfg), algorithm=cfg.algo.name,
                      env=env_settings(cfg), config=config_dict(cfg), name=cfg.name,
                      evaluation=evaluation)

    export()
    exported = load_policy(policy_dir)
    val = evaluator.run(exported, name=exported.label, step=callback.best_step)
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    trajectory_figure(val.outcomes, FIGURE_PATIENTS, title="selected policy, val patients").savefig(
        figures / "trajectories.png", dpi=110)
    if callback._reference_obs is not None and callback._pain_monitoring_curve is not None:
        curves = {"agent": response_curve(exported, callback._reference_obs),
                  "pain_monitoring": callback._pain_monitoring_curve}
        response_figure(curves).savefig(figures / "load_response.png", dpi=110)
    result = TrainResult(run_dir=run_dir, tensorboard_dir=tb_dir, policy_dir=policy_dir,
                         timesteps=int(model.num_timesteps), seconds=time.perf_counter() - start,
                         best_step=callback.best_step, val_metrics=val.metrics, history=list(callback.history))
    if cfg.budget.test_patients > 0:
        result.test = compare_on_test(exported, cfg, run_dir, progress=cfg.progress)
        log_test_comparison(model.logger, result.test, int(model.num_timesteps))
    export({"val": val.metrics, "best_step": callback.best_step, "test": result.test.get("numbers", {})})
    write_card(result, cfg, policy_dir)
    env.close()
    return result


def _best_model(cfg: TrainConfig, run_dir: Path, model: BaseAlgorithm, env: VecEnv,
                norm: VecNormalize | None) -> tuple[BaseAlgorithm, RunningMeanStd | None]:
    """The model with the best val return (the last one if none was saved) and its observation statistics."""
    best = checkpoints.find(run_dir / "checkpoints", "best")
    if best is not None:
        return checkpoints.load_into(_new_model(cfg, env, None), best, counters=False), checkpoints.load_stats(best)
    return model, norm.obs_rms if norm is not None else None
