"""Typed config schema of ``adaptrx-train`` (Hydra structured configs, ``configs/train.yaml``).

The groups of ``configs/`` fill these dataclasses: ``algo/<name>.yaml`` -> :class:`AlgoConfig`,
``env/<condition>.yaml`` -> :class:`EnvSection`, ``policy/net/<size>.yaml`` -> :class:`NetConfig`,
``experiment/<preset>.yaml`` overrides anything (``quick``: minutes on 2 cores; ``paper``: the committed
runs). Hydra checks types when it merges; :func:`validate` checks ranges and combinations and raises
:class:`ConfigError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from adaptrx.agents.dagger import TEACHERS, DaggerSettings
from adaptrx.agents.factory import ACTIVATIONS, ALGORITHMS, OFF_POLICY
from adaptrx.envs.episode_engine import EnvConfig, env_config
from adaptrx.experiments.hydra_cli import ConfigError, check_field, check_known_keys

__all__ = ["ConfigError", "TrainConfig", "register_schema", "validate"]


@dataclass
class AlgoConfig:
    """The algorithm: ``name`` (one of :data:`adaptrx.agents.factory.ALGORITHMS`) and constructor arguments
    of the SB3 class, or, for ``dagger``, :class:`adaptrx.agents.dagger.DaggerSettings` and the teacher."""

    name: str = "ppo"
    kwargs: dict[str, Any] = field(default_factory=dict)
    action_noise_std: float | None = None  # td3/sac: Gaussian exploration noise, action units (0-1)
    teacher: str = "oracle"  # dagger: the planner distilled (adaptrx.agents.dagger.TEACHERS)


@dataclass
class RewardConfig:
    """Reward weights (:class:`adaptrx.envs.reward.RewardWeights`; same defaults, checked by a test)."""

    pain: float = 1.0  # per NRS point of weekly mean pain / 10
    function: float = 2.0  # per function point / 100
    flare: float = 0.1  # per flare week
    supervision: float = 0.01  # per attended supervised session
    remote: float = 0.005  # per remote-monitoring week with sessions
    dropout: float = 5.0  # per dropout, beyond the untreated tail's pain, function and flare terms

    def weights(self) -> dict[str, float]:
        """The weights as the env's ``reward=`` mapping."""
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass
class EnvSection:
    """The ``env`` section of the train config: the env's settings (a subset of the env's own
    :class:`~adaptrx.envs.episode_engine.EnvConfig`, which :meth:`env_config` builds and validates; the reward as
    typed weights) and how training wraps the env (action space, shield, normalisation, programme end)."""

    condition: str = "knee_oa"
    split: str = "train"
    weeks: int = 26  # episode length, 1-104 weeks
    modality: str = "resistance"
    reward: RewardConfig = field(default_factory=RewardConfig)
    discrete: bool = False  # named clinical moves (ProgressionDiscrete-v0)
    shield: bool = False  # default safety rules bind every action (training and evaluation)
    normalize_obs: bool = True
    normalize_reward: bool = False
    programme_end: bool = True  # the last week ends the objective: no bootstrapped value past it (ProgrammeEnd)
    belief: bool = False  # add the belief_* features of an online particle filter (adaptrx.envs.belief)
    belief_particles: int = 64  # particles per patient of that filter (16-4096)

    def env_kwargs(self, split: str | None = None, default_reward: bool = False) -> dict[str, Any]:
        """Keyword arguments of the env (``PatientVecEnv`` / ``CohortEpisodes``) for this config, on ``split``
        (default: the training split), under the configured reward or, with ``default_reward``, the env's
        default one (the headline objective: evaluations compare runs whatever reward they trained on)."""
        kwargs = {"condition": self.condition, "split": self.split if split is None else split, "weeks": self.weeks,
                  "modality": self.modality, "belief": self.belief, "belief_particles": self.belief_particles}
        return kwargs if default_reward else {**kwargs, "reward": self.reward.weights()}

    def env_config(self, split: str | None = None, default_reward: bool = False) -> EnvConfig:
        """The env's own :class:`~adaptrx.envs.episode_engine.EnvConfig` of :meth:`env_kwargs` (validated: a
        ``ValueError`` names the field)."""
        return env_config(**self.env_kwargs(split, default_reward))


@dataclass
class NetConfig:
    """Hidden layer sizes of the actor (``pi``) and critic (``vf``: value or Q nets), the activation, and the
    LSTM size of ``recurrent_ppo``."""

    pi: list[int] = field(default_factory=lambda: [64, 64])
    vf: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    lstm_hidden_size: int = 64


@dataclass
class PolicyConfig:
    net: NetConfig = field(default_factory=NetConfig)


@dataclass
class BudgetConfig:
    """How long to train and how much to evaluate (env steps are patient-weeks)."""

    total_timesteps: int = 300_000
    n_envs: int = 16
    eval_freq: int = 25_000
    eval_patients: int = 500
    checkpoint_freq: int = 50_000
    test_patients: int = 1000
    test_oracle: bool = True  # add the oracle (the trial's planner settings) to the test comparison
    n_jobs: int = 2  # worker processes of the oracle's test episodes (split over patients)
    torch_threads: int = 1


@dataclass
class TrainConfig:
    """Everything one training run depends on (its hash is stored in the exported manifest)."""

    algo: AlgoConfig = field(default_factory=AlgoConfig)
    env: EnvSection = field(default_factory=EnvSection)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    seed: int = 0
    name: str = "run"
    eval_seed: int = 0  # noise seed of the val evaluations and of the test comparison
    resume: bool = False  # continue from the last checkpoint of the latest earlier run with this name
    resume_from: str | None = None  # ... or of this run directory
    progress: bool = True


def register_schema() -> None:
    """Register :class:`TrainConfig` as ``train_schema`` in Hydra's config store (idempotent)."""
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)


def validate(cfg: TrainConfig | DictConfig) -> None:
    """Check ranges and combinations of a composed config; raises :class:`ConfigError` naming the field."""
    if not isinstance(cfg, TrainConfig):
        check_known_keys(cfg, TrainConfig)
    c = cfg if isinstance(cfg, TrainConfig) else OmegaConf.to_object(cfg)
    assert isinstance(c, TrainConfig)
    check_field(c.algo.name in ALGORITHMS, "algo.name", f"unknown {c.algo.name!r}; known: {', '.join(ALGORITHMS)}")
    check_field(not (c.env.discrete and c.algo.name in OFF_POLICY), "env.discrete",
           f"{c.algo.name} needs the Box action; use ppo, a2c or recurrent_ppo for the discrete moves")
    if c.algo.name == "dagger":
        check_field(c.algo.teacher in TEACHERS, "algo.teacher",
                    f"unknown {c.algo.teacher!r}; known: {', '.join(TEACHERS)}")
        try:
            DaggerSettings.from_kwargs(c.algo.kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc)) from exc
        check_field(not c.env.discrete, "env.discrete",
                    "dagger distils a planner of the Box action; use env.discrete=false")
        check_field(c.env.normalize_obs, "env.normalize_obs", "dagger normalises observations with the statistics "
                    "of its labelled data; set env.normalize_obs=true")
        check_field(not c.env.normalize_reward, "env.normalize_reward", "dagger has no reward to normalise")
        check_field(not (c.resume or c.resume_from), "resume",
                    "dagger runs are not resumable (the labelled data is not checkpointed); start a new run")
    std = c.algo.action_noise_std
    check_field(std is None or 0.0 <= std <= 1.0, "algo.action_noise_std", f"must be in [0, 1], got {std}")
    check_field(12 <= c.env.weeks <= 104, "env.weeks",
                f"the clinical metrics read week 12; need 12-104, got {c.env.weeks}")
    for part in ("pi", "vf"):
        sizes = getattr(c.policy.net, part)
        check_field(len(sizes) >= 1 and all(1 <= s <= 4096 for s in sizes), f"policy.net.{part}",
               f"need 1 or more layer sizes in 1-4096, got {sizes}")
    check_field(c.policy.net.activation in ACTIVATIONS, "policy.net.activation",
           f"unknown {c.policy.net.activation!r}; known: {', '.join(ACTIVATIONS)}")
    check_field(1 <= c.policy.net.lstm_hidden_size <= 4096, "policy.net.lstm_hidden_size", "must be 1-4096")
    b = c.budget
    check_field(b.n_envs >= 1, "budget.n_envs", f"must be >= 1, got {b.n_envs}")
    check_field(b.total_timesteps >= b.n_envs, "budget.total_timesteps",
           f"must be >= budget.n_envs, got {b.total_timesteps}")
    check_field(b.eval_freq >= 1, "budget.eval_freq", f"must be >= 1, got {b.eval_freq}")
    check_field(b.eval_patients >= 1, "budget.eval_patients", f"must be >= 1, got {b.eval_patients}")
    check_field(b.checkpoint_freq >= 1, "budget.checkpoint_freq", f"must be >= 1, got {b.checkpoint_freq}")
    check_field(b.test_patients >= 0, "budget.test_patients", f"must be >= 0, got {b.test_patients}")
    check_field(1 <= b.n_jobs <= 256, "budget.n_jobs", f"must be 1-256, got {b.n_jobs}")
    check_field(b.torch_threads >= 1, "budget.torch_threads", f"must be >= 1, got {b.torch_threads}")
    check_field(c.seed >= 0, "seed", f"must be >= 0, got {c.seed}")
    check_field(c.eval_seed >= 0, "eval_seed", f"must be >= 0, got {c.eval_seed}")
    try:
        c.env.env_config()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"env.{exc}") from exc
