"""Oracle distillation by DAgger (Ross, Gordon & Bagnell 2011): a policy on observations that imitates a
planner on states the policy itself visits.

Behaviour cloning of the oracle's own trajectories fails here (a small error early in an episode takes the
patient to states the oracle never visits, and errors compound). DAgger fixes that by labelling the states
the *learner* visits:

1. Round 0: the teacher acts; every state it visits is labelled with its action.
2. Round ``r >= 1``: each patient-week, the teacher's action is executed with probability ``beta**r`` and
   the learner's otherwise; every visited state is labelled with the *teacher's* action there.
3. After every round the labelled states of all rounds so far are aggregated and the learner is refitted
   (warm-started) by regression of its deterministic action on the teacher's.

The teacher is any planner built on a :class:`~adaptrx.envs.CohortEpisodes` (``oracle``: the receding-horizon
MPC on the true patient, :class:`~adaptrx.protocols.oracle.OraclePolicy`). Labelling runs batched (all patients
of a chunk stepped together) in joblib worker processes; chunks are independent given the patients and the
seed (each patient has its own noise stream, :func:`adaptrx.patient.noise.stream_keys`), so the labels do
not depend on the number of workers.

The learner is the actor of an SB3 ``ActorCriticPolicy`` (the same module PPO trains and
:mod:`adaptrx.agents.export` ships): :func:`fit_actor` trains ``mlp_extractor.policy_net`` and
``action_net`` by mean squared error on the Box action; the value head is left untouched. Workers receive a
numpy copy of the actor (:class:`ActorSnapshot`), never a pickled model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from adaptrx.envs import CohortEpisodes
from adaptrx.protocols.base import Policy
from adaptrx.protocols.oracle import BeliefPlanner, OraclePolicy

#: Teachers DAgger can distil, built on the CohortEpisodes being labelled: ``oracle`` (MPC on the true patient)
#: and ``belief_planner`` (the same MPC over posterior particles of the belief filter).
TEACHERS: tuple[str, ...] = ("oracle", "belief_planner")

#: numpy activations matching the torch modules a policy net may use.
_NUMPY_ACTIVATIONS: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: np.tanh,
    nn.ReLU: lambda x: np.maximum(x, 0.0),
    nn.ELU: lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    nn.LeakyReLU: lambda x: np.where(x > 0, x, 0.01 * x),
    nn.SiLU: lambda x: x / (1.0 + np.exp(-x)),
    nn.GELU: lambda x: 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x**3))),
}


@dataclass(frozen=True)
class DaggerSettings:
    """DAgger's settings (``algo.kwargs`` of ``algo=dagger``).

    Attributes:
        rounds: labelling rounds (1-100); round 0 is the teacher's own rollouts.
        episodes: train patients labelled per round (one 26-week episode each, fresh patients every round).
        beta: teacher share decay: the teacher acts with probability ``beta**round`` (0-1; 0 after round 0:
            classic DAgger).
        epochs: passes over the aggregated data after each round (1-1000).
        batch_size: regression mini-batch (1-65536 samples).
        learning_rate: Adam step size of the regression (0-1).
        teacher_replicates: noise replicates of the oracle teacher's rollouts (1-64).
        teacher_horizon: the oracle teacher's planning horizon in weeks (1-104), or None for the episode's end.
        n_jobs: labelling worker processes (1-64; 1: in this process).
    """

    rounds: int = 6
    episodes: int = 400
    beta: float = 0.5
    epochs: int = 15
    batch_size: int = 256
    learning_rate: float = 1e-3
    teacher_replicates: int = 2
    teacher_horizon: int | None = None
    n_jobs: int = 2

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], field_prefix: str = "algo.kwargs") -> DaggerSettings:
        """Settings from a mapping; a ``ValueError`` names the first unknown or out-of-range field."""
        known = {f.name for f in fields(cls)}
        for key in kwargs:
            if key not in known:
                raise ValueError(f"{field_prefix}.{key}: unknown DAgger setting; known: {', '.join(sorted(known))}")
        s = cls(**dict(kwargs))
        ints = {"rounds": (1, 100), "episodes": (1, 1_000_000), "epochs": (1, 1000), "batch_size": (1, 65536),
                "teacher_replicates": (1, 64), "n_jobs": (1, 64)}
        for name, (low, high) in ints.items():
            value = getattr(s, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
                raise ValueError(f"{field_prefix}.{name}: must be an integer in {low}-{high}, got {value!r}")
        for name, (low, high) in {"beta": (0.0, 1.0), "learning_rate": (1e-8, 1.0)}.items():
            value = getattr(s, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
                raise ValueError(f"{field_prefix}.{name}: must be a number in [{low}, {high}], got {value!r}")
        h = s.teacher_horizon
        if h is not None and (isinstance(h, bool) or not isinstance(h, int | np.integer) or not 1 <= h <= 104):
            raise ValueError(f"{field_prefix}.teacher_horizon: must be null or an integer in 1-104, got {h!r}")
        return s

    def teacher_share(self, round_index: int) -> float:
        """Probability that the teacher's action is executed in round ``round_index`` (1 in round 0)."""
        return 1.0 if round_index == 0 else float(self.beta) ** round_index


@dataclass(frozen=True)
class ActorSnapshot:
    """A numpy copy of an ``ActorCriticPolicy``'s deterministic actor and its observation normalisation.

    ``predict(obs)`` maps raw observations ``(n, n_features)`` to Box actions ``(n, 3)`` clipped to [-1, 1],
    exactly as ``policy.predict(normalize(obs), deterministic=True)`` (up to float rounding).
    """

    weights: tuple[np.ndarray, ...]  # (out, in) matrices, hidden layers then the action layer
    biases: tuple[np.ndarray, ...]
    activation: Callable[[np.ndarray], np.ndarray]
    mean: np.ndarray
    scale: np.ndarray  # sqrt(var + epsilon)
    clip: float

    @classmethod
    def of(cls, policy: ActorCriticPolicy, mean: np.ndarray, var: np.ndarray, clip: float = 10.0,
           epsilon: float = 1e-8) -> ActorSnapshot:
        """Copy ``policy``'s actor (``mlp_extractor.policy_net`` + ``action_net``) with normalisation
        ``mean``/``var`` (``VecNormalize``'s transform with ``clip`` and ``epsilon``)."""
        linears = [m for m in policy.mlp_extractor.policy_net if isinstance(m, nn.Linear)] + [policy.action_net]
        kinds = {type(m) for m in policy.mlp_extractor.policy_net if not isinstance(m, nn.Linear)}
        if len(kinds) > 1 or not kinds <= set(_NUMPY_ACTIVATIONS):
            raise ValueError(f"policy: the actor's activations {sorted(k.__name__ for k in kinds)} have no numpy twin")
        activation = _NUMPY_ACTIVATIONS[kinds.pop()] if kinds else (lambda x: x)
        return cls(weights=tuple(m.weight.detach().cpu().numpy().astype(np.float64) for m in linears),
                   biases=tuple(m.bias.detach().cpu().numpy().astype(np.float64) for m in linears),
                   activation=activation, mean=np.asarray(mean, dtype=np.float64),
                   scale=np.sqrt(np.asarray(var, dtype=np.float64) + epsilon), clip=float(clip))

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Box actions ``(n, 3)`` float32 in [-1, 1] for raw observations ``(n, n_features)``."""
        x = np.clip((np.asarray(obs, dtype=np.float64) - self.mean) / self.scale, -self.clip, self.clip)
        x = x.astype(np.float32).astype(np.float64)  # the float32 input the torch policy sees
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            x = self.activation(x @ w.T + b)
        return np.clip(x @ self.weights[-1].T + self.biases[-1], -1.0, 1.0).astype(np.float32)


def make_teacher(name: str, episodes: CohortEpisodes, settings: DaggerSettings, seed: int) -> Policy:
    """The teacher ``name`` (one of :data:`TEACHERS`) planning on ``episodes``."""
    if name == "oracle":
        return OraclePolicy(episodes, replicates=settings.teacher_replicates, horizon=settings.teacher_horizon,
                            seed=seed)
    if name == "belief_planner":
        return BeliefPlanner(episodes, replicates=settings.teacher_replicates, horizon=settings.teacher_horizon,
                             seed=seed)
    raise ValueError(f"algo.teacher: unknown {name!r}; known: {', '.join(TEACHERS)}")


class _MixedLabeller(Policy):
    """Executes the teacher's action with probability ``share`` (per patient-week, else the learner's) and
    records every observation with the teacher's label."""

    def __init__(self, teacher: Policy, learner: ActorSnapshot | None, share: float, rng: np.random.Generator) -> None:
        self.teacher, self.learner, self.share, self.rng = teacher, learner, share, rng
        self.obs: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        label, _ = self.teacher.predict(obs, state, episode_start, deterministic=True)
        label = np.asarray(label, dtype=np.float32)
        self.obs.append(np.asarray(obs, dtype=np.float32).copy())
        self.labels.append(label.copy())
        if self.learner is None or self.share >= 1.0:
            return label, state
        own = self.learner.predict(obs)
        use_teacher = self.rng.random(len(label)) < self.share
        return np.where(use_teacher[:, None], label, own), state


@dataclass
class Labels:
    """Labelled states of one round: observations ``(m, n_features)``, teacher actions ``(m, 3)``, and the
    executed policy's episode returns and lengths (weeks in the programme) per patient."""

    obs: np.ndarray
    actions: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray

    @classmethod
    def concat(cls, parts: list[Labels]) -> Labels:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def label_chunk(rows: pd.DataFrame, seed: int, env_kwargs: Mapping[str, Any], teacher: str,
                settings: DaggerSettings, learner: ActorSnapshot | None, share: float, mix_seed: int) -> Labels:
    """Play one episode per patient of ``rows`` (noise ``seed``) under the teacher/learner mixture and label
    every in-programme week with the teacher's action (what :func:`label_round` runs in each worker)."""
    # the belief planner plans on the belief filter's particles: its episodes need one
    episodes = CohortEpisodes(rows, seed=seed, **{**env_kwargs, "belief": env_kwargs.get("belief", False)
                                                  or teacher == "belief_planner"})
    labeller = _MixedLabeller(make_teacher(teacher, episodes, settings, seed), learner, share,
                              np.random.default_rng(mix_seed))
    out = episodes.run(labeller, name="dagger")
    mask = out.in_programme  # (weeks, n): the week was part of the episode (a dropout ends it)
    obs, labels = np.stack(labeller.obs), np.stack(labeller.labels)
    return Labels(obs=obs[mask], actions=labels[mask], returns=out.returns, lengths=mask.sum(axis=0))


def label_round(cohort: pd.DataFrame, seed: int, env_kwargs: Mapping[str, Any], teacher: str,
                settings: DaggerSettings, learner: ActorSnapshot | None, share: float) -> Labels:
    """Label one round's patients, split over ``settings.n_jobs`` worker processes (same result for any
    number of workers: chunks are cut per patient and each chunk's mixing stream is seeded by ``seed`` and its first
    row)."""
    chunk = 25  # patients per work item: small enough to balance the workers, large enough to batch
    work = [(cohort.iloc[s:s + chunk], seed, dict(env_kwargs), teacher, settings, learner, share,
             int(np.random.SeedSequence([seed, s]).generate_state(1)[0])) for s in range(0, len(cohort), chunk)]
    if settings.n_jobs > 1 and len(work) > 1:
        parts = Parallel(n_jobs=min(settings.n_jobs, len(work)))(delayed(label_chunk)(*args) for args in work)
    else:
        parts = [label_chunk(*args) for args in work]
    return Labels.concat(list(parts))


def actor_parameters(policy: ActorCriticPolicy) -> list[nn.Parameter]:
    """The parameters of ``policy``'s deterministic actor (shared features extractor, policy net, action
    layer)."""
    return [*policy.mlp_extractor.policy_net.parameters(), *policy.action_net.parameters()]


def fit_actor(policy: ActorCriticPolicy, optimizer: torch.optim.Optimizer, obs: np.ndarray, actions: np.ndarray,
              epochs: int, batch_size: int, rng: np.random.Generator) -> float:
    """Regress ``policy``'s deterministic action on ``actions`` (teacher Box actions in [-1, 1]) from
    normalised observations ``obs``; returns the mean squared error of the last epoch (action units^2)."""
    x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
    y = torch.as_tensor(np.asarray(actions, dtype=np.float32))
    policy.set_training_mode(True)
    last = float("nan")
    for _ in range(epochs):
        order = torch.as_tensor(rng.permutation(len(x)))
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            features = policy.extract_features(x[idx], policy.pi_features_extractor)
            mean = policy.action_net(policy.mlp_extractor.forward_actor(features))
            loss = nn.functional.mse_loss(mean, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        last = total / len(x)
    policy.set_training_mode(False)
    return last
