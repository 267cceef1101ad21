"""The SB3 algorithm factory: ``ppo``, ``a2c``, ``sac``, ``td3`` (stable-baselines3) and ``recurrent_ppo``
(sb3-contrib) built from plain settings (no code in configs: activations are looked up by name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

#: Algorithm name -> (SB3 class, SB3 policy name).
ALGORITHMS: dict[str, tuple[type[BaseAlgorithm], str]] = {
    "ppo": (PPO, "MlpPolicy"),
    "a2c": (A2C, "MlpPolicy"),
    "sac": (SAC, "MlpPolicy"),
    "td3": (TD3, "MlpPolicy"),
    "recurrent_ppo": (RecurrentPPO, "MlpLstmPolicy"),
    # oracle distillation (adaptrx.agents.dagger): the student actor lives in a PPO container, so that it is
    # checkpointed, exported and loaded like a PPO policy; its algo.kwargs are DAgger's, not PPO's
    "dagger": (PPO, "MlpPolicy"),
}
#: Activation name -> torch.nn module class.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU,
}
#: Off-policy algorithms (they keep a replay buffer).
OFF_POLICY: frozenset[str] = frozenset({"sac", "td3"})


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """The SB3 class of algorithm ``name`` (``ValueError`` naming ``algo.name`` if unknown)."""
    if name not in ALGORITHMS:
        raise ValueError(f"algo.name: unknown {name!r}; known: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name][0]


def policy_kwargs(name: str, pi: Sequence[int], vf: Sequence[int], activation: str = "tanh",
                  lstm_hidden_size: int = 64) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` for algorithm ``name``: actor layers ``pi``, critic layers ``vf`` (the value net of
    ppo/a2c/recurrent_ppo, the Q nets of sac/td3), activation by name, and the LSTM size of recurrent_ppo."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"policy.net.activation: unknown {activation!r}; known: {', '.join(ACTIVATIONS)}")
    critic = "qf" if name in OFF_POLICY else "vf"
    kwargs: dict[str, Any] = {"net_arch": {"pi": [int(s) for s in pi], critic: [int(s) for s in vf]},
                              "activation_fn": ACTIVATIONS[activation]}
    if name == "recurrent_ppo":
        kwargs["lstm_hidden_size"] = int(lstm_hidden_size)
    return kwargs


def make_model(name: str, env: VecEnv, kwargs: Mapping[str, Any] | None = None,
               net: Mapping[str, Any] | None = None, seed: int = 0, tensorboard_log: str | Path | None = None,
               action_noise_std: float | None = None, device: str = "cpu") -> BaseAlgorithm:
    """A fresh model of algorithm ``name`` on ``env``.

    Args:
        name: one of :data:`ALGORITHMS`.
        env: the (vectorised, possibly normalised) training env.
        kwargs: constructor arguments of the SB3 class (``learning_rate``, ``n_steps``, ``gamma``, ...).
        net: ``pi``, ``vf``, ``activation``, ``lstm_hidden_size`` (see :func:`policy_kwargs`).
        seed: seed of the model's own random generators (torch, action sampling).
        tensorboard_log: folder for SB3's TensorBoard logs (None: no TensorBoard).
        action_noise_std: sac/td3 Gaussian exploration noise std in action units (-1..1); None for none.
        device: torch device (``cpu``: the networks are small).
    """
    cls = algorithm_class(name)
    settings = dict(kwargs or {}) if name != "dagger" else {}
    if "policy_kwargs" in settings:
        raise ValueError("algo.kwargs.policy_kwargs: set the network in policy.net instead")
    net = dict(net or {})
    extra: dict[str, Any] = {}
    if action_noise_std:
        if name not in OFF_POLICY:
            raise ValueError(f"algo.action_noise_std: only sac and td3 take action noise, not {name}")
        dim = int(np.prod(env.action_space.shape))
        extra["action_noise"] = NormalActionNoise(np.zeros(dim), np.full(dim, float(action_noise_std)))
    try:
        return cls(ALGORITHMS[name][1], env, policy_kwargs=policy_kwargs(name, **net), seed=seed,
                   tensorboard_log=None if tensorboard_log is None else str(tensorboard_log), device=device,
                   verbose=0, **settings, **extra)
    except TypeError as exc:  # an argument the class does not take
        raise ValueError(f"algo.kwargs: {exc}") from exc
