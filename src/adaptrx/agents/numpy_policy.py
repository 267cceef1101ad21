"""Shipped MLP policies run in numpy, without torch or stable-baselines3 (the clinic's fast path).

:func:`load_numpy_policy` reads a policy directory with the same checks as
:func:`adaptrx.agents.export.load_policy` (:func:`~adaptrx.agents.export.read_policy_files`: no pickle, sizes,
sha256 of the weights, manifest schema, optional expected id), loads the tensors with ``safetensors.numpy`` and
evaluates the deterministic actor:

* ``ActorCriticPolicy`` (``ppo``, ``a2c``, ``dagger``): ``mlp_extractor.policy_net`` (linear layers, the
  manifest's activation after each) then ``action_net``; a Box action is the mean clipped to the action space
  (what SB3's ``predict(deterministic=True)`` returns), a Discrete action the arg-max logit;
* ``SACPolicy``: ``actor.latent_pi`` then ``actor.mu``, squashed by tanh and rescaled to the action space;
* ``TD3Policy``: ``actor.mu`` (its last layer is followed by tanh), rescaled to the action space.

The recurrent policy (``recurrent_ppo``) is refused (``ValueError``): load it with ``load_policy``. Float32
arithmetic like torch's; actions agree with torch's within 1e-6 (tests/agents/test_numpy_policy.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from safetensors.numpy import load as load_tensors
from scipy.special import erf

from adaptrx.agents.export import WEIGHTS_FILE, LoadedPolicy, check_spaces, read_policy_files

#: Activations of :data:`adaptrx.agents.export.ACTIVATIONS` in numpy (float32 in, float32 out).
ACTIVATIONS = {
    "Tanh": np.tanh,
    "ReLU": lambda x: np.maximum(x, 0.0),
    "ELU": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "LeakyReLU": lambda x: np.where(x > 0, x, 0.01 * x),
    "GELU": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
    "SiLU": lambda x: x / (1.0 + np.exp(-x)),
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
}
#: Default activation of each policy class when the manifest gives none (SB3's defaults).
_DEFAULT_ACTIVATION = {"ActorCriticPolicy": "Tanh", "SACPolicy": "ReLU", "TD3Policy": "ReLU"}


class NoNumpyImplementation(ValueError):
    """The policy's class (the recurrent one, or a gSDE actor) has no numpy implementation."""


def _erf(x: np.ndarray) -> np.ndarray:
    return erf(x).astype(x.dtype)


def _layers(tensors: dict[str, np.ndarray], prefix: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(weight, bias)`` of the linear layers ``prefix.<i>`` in order of ``i``."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.weight$")
    index = sorted(int(m.group(1)) for k in tensors if (m := pattern.match(k)))
    return [(tensors[f"{prefix}.{i}.weight"], tensors[f"{prefix}.{i}.bias"]) for i in index]


class NumpyPolicy(LoadedPolicy):
    """A shipped MLP policy evaluated in numpy, with the interface of
    :class:`~adaptrx.agents.export.ExportedPolicy` (the identity, spaces and :meth:`normalize` of
    :class:`~adaptrx.agents.export.LoadedPolicy`, and :meth:`predict`; deterministic actions only)."""

    def __init__(self, manifest: dict[str, Any], spec: Any, tensors: dict[str, np.ndarray], policy_id: str) -> None:
        super().__init__(manifest, spec, policy_id)
        self._class = spec.policy_class
        self._act = ACTIVATIONS[spec.policy_kwargs.get("activation_fn", _DEFAULT_ACTIVATION[spec.policy_class])]
        if spec.policy_class == "ActorCriticPolicy":
            self._hidden = _layers(tensors, "mlp_extractor.policy_net")
            self._head = (tensors["action_net.weight"], tensors["action_net.bias"])
        elif spec.policy_class == "SACPolicy":
            self._hidden = _layers(tensors, "actor.latent_pi")
            self._head = (tensors["actor.mu.weight"], tensors["actor.mu.bias"])
        else:  # TD3Policy: actor.mu is the whole MLP, tanh after its last layer
            layers = _layers(tensors, "actor.mu")
            self._hidden, self._head = layers[:-1], layers[-1]

    def _forward(self, z: np.ndarray) -> np.ndarray:
        h = z
        for weight, bias in self._hidden:
            h = self._act(h @ weight.T + bias).astype(np.float32)
        weight, bias = self._head
        return (h @ weight.T + bias).astype(np.float32)

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The deterministic action for raw observations ``(n_features,)`` or ``(n_envs, n_features)``: Box
        actions float32 in the action space, Discrete move indices int64; ``state`` passes through."""
        if not deterministic:
            raise ValueError("deterministic: the numpy policy only gives deterministic actions")
        single = np.ndim(obs) == 1
        out = self._forward(np.atleast_2d(self.normalize(obs)))
        if isinstance(self.action_space, spaces.Discrete):
            actions: np.ndarray = np.argmax(out, axis=1).astype(np.int64)
        else:
            low, high = self.action_space.low, self.action_space.high
            if self._class == "ActorCriticPolicy":
                actions = np.clip(out, low, high)
            else:  # SAC / TD3: a tanh-squashed action in [-1, 1], rescaled to the space
                actions = low + 0.5 * (np.tanh(out) + 1.0) * (high - low)
            actions = actions.astype(np.float32)
        return (actions[0] if single else actions), state


def load_numpy_policy(path: str | Path, *, observation_space: spaces.Space | None = None,
                      action_space: spaces.Space | None = None, feature_names: Any = None,
                      expect_id: str | None = None) -> NumpyPolicy:
    """Load the policy directory ``path`` to run in numpy (see the module docstring); the checks and errors of
    :func:`adaptrx.agents.export.load_policy`, and :class:`NoNumpyImplementation` (a ``ValueError``) for a
    recurrent or gSDE policy."""
    directory, manifest, spec, data, identity = read_policy_files(path, expect_id)
    if spec.policy_class not in _DEFAULT_ACTIVATION:
        raise NoNumpyImplementation(f"{directory}: {spec.policy_class} (algorithm {manifest['algorithm']}) has no "
                                    "numpy implementation; load it with adaptrx.agents.load_policy")
    if spec.policy_kwargs.get("use_sde"):
        raise NoNumpyImplementation(f"{directory}: a gSDE policy has no numpy implementation; use "
                                    "adaptrx.agents.load_policy")
    weights_path = directory / WEIGHTS_FILE
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # safetensors raises its own SafetensorError for malformed files
        raise ValueError(f"{weights_path}: not a valid safetensors file: {exc}") from exc
    if len(tensors) != spec.weights_tensors:
        raise ValueError(f"{weights_path}: {len(tensors)} tensors, the manifest says {spec.weights_tensors}")
    for name, tensor in tensors.items():
        if tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
            raise ValueError(f"{weights_path}: tensor {name!r} holds non-finite values (NaN or inf)")
    try:
        policy = NumpyPolicy(manifest, spec, {k: v.astype(np.float32) for k, v in tensors.items()}, identity)
    except KeyError as exc:
        raise ValueError(f"{weights_path}: tensor {exc} of the {spec.policy_class} actor is missing") from exc
    try:
        check_spaces(policy, observation_space, action_space, feature_names)
    except ValueError as exc:
        raise ValueError(f"{directory}: {exc}") from exc
    return policy
