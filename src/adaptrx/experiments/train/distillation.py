"""``adaptrx-train algo=dagger``: the DAgger loop (:mod:`adaptrx.agents.dagger`) inside a training run.

The student is the actor of an SB3 ``ActorCriticPolicy`` held by a PPO container, so the run gets the same
run directory, TensorBoard logs, val evaluations, checkpoints, model selection (val return under the default
reward), safe export and card as the RL algorithms. One DAgger round is one "evaluation period":

1. label ``episodes`` fresh train patients (the teacher acts in round 0; afterwards the learner, with the
   teacher's action executed with probability ``beta**round``), every visited week labelled by the teacher;
2. aggregate the labelled states of all rounds, refit the observation statistics, refit the actor;
3. evaluate on val (``clinical/*``, ``eval/*``), keep the best round, checkpoint.

Env steps (``time/total_timesteps``, the card's count) are the labelled patient-weeks. TensorBoard carries
SB3's ``rollout/ep_rew_mean`` and ``rollout/ep_len_mean`` (the executed mixture's episodes of the round, under
the training reward), ``train/loss`` (the regression's mean squared error, action units squared) and
``dagger/teacher_share``, ``dagger/samples``.
"""

from __future__ import annotations

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.utils import configure_logger
from stable_baselines3.common.vec_env import VecNormalize
from tqdm.auto import tqdm

from adaptrx.agents.dagger import ActorSnapshot, DaggerSettings, Labels, actor_parameters, fit_actor, label_round
from adaptrx.experiments.train.callbacks import ClinicalEvalCallback
from adaptrx.experiments.train.config import TrainConfig
from adaptrx.patient import make_cohort


def run_dagger(cfg: TrainConfig, model: BaseAlgorithm, norm: VecNormalize, callback: ClinicalEvalCallback,
               tb_dir: str) -> None:
    """Distil ``cfg.algo.teacher`` into ``model.policy``'s actor by DAgger (``cfg.algo.kwargs``:
    :class:`~adaptrx.agents.dagger.DaggerSettings`); ``norm.obs_rms`` receives the observation statistics
    of the aggregated data. Evaluations, checkpoints and logs go through ``callback``."""
    settings = DaggerSettings.from_kwargs(cfg.algo.kwargs)
    e = cfg.env
    env_kwargs = e.env_kwargs()
    model.set_logger(configure_logger(0, tb_dir, "DAGGER", True))
    callback.init_callback(model)
    callback.on_training_start({}, {})
    policy = model.policy
    optimizer = torch.optim.Adam(actor_parameters(policy), lr=settings.learning_rate)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    # fresh patients every round: one cohort, cut into rounds
    cohort = make_cohort(e.condition, settings.rounds * settings.episodes, cfg.seed, e.split)
    data: list[Labels] = []
    learner: ActorSnapshot | None = None
    with tqdm(total=settings.rounds * settings.episodes, desc="DAgger (train patients labelled)",
              disable=not cfg.progress) as bar:
        for r in range(settings.rounds):
            share = settings.teacher_share(r)
            rows = cohort.iloc[r * settings.episodes:(r + 1) * settings.episodes]
            labels = label_round(rows, cfg.seed, env_kwargs, cfg.algo.teacher, settings, learner, share)
            bar.update(len(rows))
            data.append(labels)
            obs = np.concatenate([d.obs for d in data]).astype(np.float64)
            actions = np.concatenate([d.actions for d in data])
            rms = RunningMeanStd(shape=obs.shape[1:])
            rms.mean, rms.var, rms.count = obs.mean(axis=0), obs.var(axis=0), float(len(obs))
            norm.obs_rms = rms
            z = np.clip((obs - rms.mean) / np.sqrt(rms.var + norm.epsilon), -norm.clip_obs, norm.clip_obs)
            loss = fit_actor(policy, optimizer, z, actions, settings.epochs, settings.batch_size, rng)
            learner = ActorSnapshot.of(policy, rms.mean, rms.var, norm.clip_obs, norm.epsilon)
            model.num_timesteps += int(labels.lengths.sum())
            model._n_updates += settings.epochs
            callback.num_timesteps = model.num_timesteps
            model.logger.record("rollout/ep_rew_mean", float(labels.returns.mean()))
            model.logger.record("rollout/ep_len_mean", float(labels.lengths.mean()))
            model.logger.record("train/loss", loss)
            model.logger.record("train/n_updates", model._n_updates)
            model.logger.record("dagger/teacher_share", share)
            model.logger.record("dagger/samples", len(obs))
            model.logger.record("time/total_timesteps", model.num_timesteps)
            callback.evaluate()  # logs clinical/* and eval/*, dumps, keeps the best round
            callback.checkpoint("last")
    callback.on_training_end()
