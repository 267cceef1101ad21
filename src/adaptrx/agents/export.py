"""Safe export and loading of trained stable-baselines3 policies (``DESIGN.md`` section 6).

A shipped policy is a directory with two files:

* ``policy.safetensors``: every tensor of ``model.policy.state_dict()`` (CPU, contiguous), in the
  `safetensors <https://huggingface.co/docs/safetensors>`_ format (a JSON header and raw little-endian
  tensor bytes: nothing in it is code);
* ``manifest.json``: human-readable JSON (indent 2) with the format name and version, the policy's name, the
  algorithm, the SB3 policy class and the constructor arguments that rebuild its torch module
  (``policy_kwargs``, classes stored by name), the observation and action spaces, the feature names, the
  observation normalisation statistics of the training ``VecNormalize`` (or ``null``), the env description,
  the training config and its :func:`config_hash`, the evaluation summary, the library versions, the
  weights file's name, sha256, size and tensor count, and the creation time (UTC).

:func:`export_policy` writes both files (and loads them back to check they rebuild the same module);
:func:`load_policy` returns an :class:`ExportedPolicy`, the SB3-style :class:`~adaptrx.protocols.base.Policy`
of ``DESIGN.md`` section 6: raw observations in (it applies the stored normalisation itself), actions out.

Loading never unpickles or executes anything from the files:

1. ``manifest.json`` (at most :data:`MAX_MANIFEST_BYTES`) is parsed with :func:`json.loads` (no NaN or
   Infinity constants, no duplicate keys) and every field is validated; a ``ValueError`` names the field.
2. ``policy.safetensors`` (at most :data:`MAX_WEIGHTS_BYTES`) is read, its sha256 is checked against the
   manifest *before* the bytes are parsed, and only then are the tensors decoded by
   :func:`safetensors.torch.load`.
3. The policy is rebuilt from fixed whitelists only: the four SB3 policy classes of :data:`POLICY_CLASSES`,
   the activations of :data:`ACTIVATIONS` (``torch.nn``), the ``FlattenExtractor`` features extractor and the
   optimizers of :data:`OPTIMIZERS` (``torch.optim``, needed by the constructors only); every other argument
   is a plain number, boolean, list or dict checked against a per-class schema (sizes bounded, and the
   architecture must not need more parameters than the weights file holds).
4. The tensors are loaded with ``load_state_dict(strict=True)`` after checking names, shapes and dtypes; the
   module stays on the CPU in evaluation mode.

SB3 ``.zip`` checkpoints (which contain pickles) are for training only and are never loaded from outside.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import itertools
import json
import math
import os
import platform
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from adaptrx import __version__
from adaptrx.common import atomic, strict_json, validation
from adaptrx.common.validation import InvalidField
from adaptrx.protocols.base import Policy

if TYPE_CHECKING:
    import torch
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.policies import BasePolicy
    from stable_baselines3.common.running_mean_std import RunningMeanStd

#: Value of the manifest's ``format`` field.
FORMAT = "adaptrx-policy"
#: Version of the directory layout and manifest schema written by :func:`export_policy`.
FORMAT_VERSION = 1
#: File names inside a policy directory (``card.md``, a human-written model card, is optional and not read).
WEIGHTS_FILE = "policy.safetensors"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "card.md"
#: Largest ``manifest.json`` and ``policy.safetensors`` :func:`load_policy` reads (bytes).
MAX_MANIFEST_BYTES = 16 * 2**20
MAX_WEIGHTS_BYTES = 512 * 2**20

#: Algorithm name -> the SB3 policy class it is exported with.
ALGORITHMS: dict[str, str] = {
    "ppo": "ActorCriticPolicy",
    "a2c": "ActorCriticPolicy",
    "sac": "SACPolicy",
    "td3": "TD3Policy",
    "recurrent_ppo": "RecurrentActorCriticPolicy",
    "dagger": "ActorCriticPolicy",  # oracle distillation (adaptrx.agents.dagger): a PPO-style actor
}
#: Algorithm name -> the SB3 / sb3-contrib algorithm class name of the trained model.
_MODEL_CLASSES: dict[str, str] = {"ppo": "PPO", "a2c": "A2C", "sac": "SAC", "td3": "TD3",
                                  "recurrent_ppo": "RecurrentPPO", "dagger": "PPO"}
#: Algorithms that can act in a ``Discrete`` action space (all act in a ``Box``).
_DISCRETE_ALGORITHMS = frozenset({"ppo", "a2c", "recurrent_ppo"})
#: The only policy classes that can be rebuilt: name -> (module, attribute).
POLICY_CLASSES: dict[str, tuple[str, str]] = {
    "ActorCriticPolicy": ("stable_baselines3.common.policies", "ActorCriticPolicy"),
    "RecurrentActorCriticPolicy": ("sb3_contrib.common.recurrent.policies", "RecurrentActorCriticPolicy"),
    "SACPolicy": ("stable_baselines3.sac.policies", "SACPolicy"),
    "TD3Policy": ("stable_baselines3.td3.policies", "TD3Policy"),
}
#: Activation functions (``torch.nn`` class names) a policy may use.
ACTIVATIONS: tuple[str, ...] = ("Tanh", "ReLU", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid")
#: Features extractors a policy may use: name -> (module, attribute).
FEATURES_EXTRACTORS: dict[str, tuple[str, str]] = {
    "FlattenExtractor": ("stable_baselines3.common.torch_layers", "FlattenExtractor"),
}
#: Optimizers (``torch.optim`` class names) the policy constructors may be given.
OPTIMIZERS: tuple[str, ...] = ("Adam", "AdamW", "RMSprop")
#: Optimizer keyword arguments that are kept (numbers, booleans, or a list of two numbers for ``betas``).
_OPTIMIZER_KWARGS = frozenset({"lr", "eps", "alpha", "betas", "weight_decay", "momentum", "centered", "amsgrad",
                               "maximize"})
#: LSTM keyword arguments of the recurrent policy that are kept.
_LSTM_KWARGS = frozenset({"bias", "dropout"})

#: Bounds on the architecture a manifest may ask for (the rebuilt module is allocated before its weights
#: are loaded): hidden layer width, hidden layers per network, LSTM size and layers, critics, space sizes.
MAX_WIDTH = 8192
MAX_LAYERS = 16
MAX_LSTM_LAYERS = 8
MAX_CRITICS = 8
MAX_SPACE_DIM = 65536
MAX_DISCRETE_N = 2**20

_MANIFEST_FIELDS = ("format", "format_version", "name", "algorithm", "policy_class", "policy_kwargs",
                    "observation_space", "action_space", "feature_names", "normalization", "env", "config",
                    "config_hash", "evaluation", "versions", "weights", "created")
_VERSION_PACKAGES = ("adaptrx", "stable_baselines3", "sb3_contrib", "torch", "numpy", "gymnasium", "safetensors")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-]{0,127}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


# ----------------------------------------------------------------------------------------------- JSON helpers
def _to_json(field: str, value: Any, nonfinite_as_null: bool = False) -> Any:
    """``value`` as plain JSON data (dict with str keys, list, str, int, finite float, bool, None), else a
    ``ValueError`` naming ``field`` (the path to the offending value). NaN and infinities are refused, or
    stored as ``None`` with ``nonfinite_as_null``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not math.isfinite(float(value)):
            if nonfinite_as_null:
                return None
            raise ValueError(f"{field}: must be finite to be stored as JSON, got {value!r}")
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{field}: keys must be strings, got {key!r}")
            out[key] = _to_json(f"{field}.{key}", item, nonfinite_as_null)
        return out
    if isinstance(value, list | tuple):
        return [_to_json(f"{field}[{i}]", item, nonfinite_as_null) for i, item in enumerate(value)]
    if isinstance(value, np.ndarray) and value.ndim <= 2:
        return _to_json(field, value.tolist(), nonfinite_as_null)
    raise ValueError(f"{field}: cannot store {type(value).__name__} {value!r} as JSON "
                     "(only numbers, strings, booleans, None, lists and dicts with string keys)")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def policy_id(manifest: Mapping[str, Any], weights: bytes) -> str:
    """The policy id: sha256 (hex) over the canonical JSON of the manifest (keys sorted, no whitespace) and
    then the raw bytes of ``policy.safetensors``. Any edited value of either file changes it (reformatting the
    manifest does not); cards, trial reports and the clinic print it, and ``load_policy(..., expect_id=)`` /
    ``policies=[dir@<prefix>]`` pin it."""
    digest = hashlib.sha256(_canonical(manifest).encode("utf-8"))
    digest.update(weights)
    return digest.hexdigest()


#: Shortest id prefix ``expect_id`` accepts (hex digits): 8 make an accidental match ~1 in 4 billion.
MIN_ID_PREFIX = 8


def check_expected_id(actual: str, expect_id: str, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` unless ``expect_id`` (a hex prefix of >= :data:`MIN_ID_PREFIX`
    digits, or the whole id) starts ``actual``."""
    want = str(expect_id).strip().lower()
    if len(want) < MIN_ID_PREFIX or len(want) > 64 or any(c not in "0123456789abcdef" for c in want):
        raise ValueError(f"{where}: expected policy id {expect_id!r} must be {MIN_ID_PREFIX}-64 hex digits")
    if not actual.startswith(want):
        raise ValueError(f"{where}: policy id {actual[:16]}... does not match the expected {want} (the manifest "
                         "or the weights differ from the pinned policy)")


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of ``config`` (keys sorted, no whitespace): the same for any key order.

    Numpy scalars count as the Python numbers they equal and tuples as lists; anything else that is not JSON
    data (or a non-finite float) is a ``ValueError``.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"config: must be a mapping, got {type(config).__name__}")
    return hashlib.sha256(_canonical(_to_json("config", config)).encode("utf-8")).hexdigest()


def _pretty(value: Any, level: int = 0) -> str:
    """JSON with an indent of 2 that keeps lists of numbers and strings on one line."""
    pad, end = "  " * (level + 1), "\n" + "  " * level
    if isinstance(value, dict) and value:
        items = ",\n".join(f"{pad}{json.dumps(k)}: {_pretty(v, level + 1)}" for k, v in value.items())
        return "{\n" + items + end + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(pad + _pretty(v, level + 1) for v in value) + end + "]"
    return json.dumps(value, allow_nan=False)


# ---------------------------------------------------------------------------------------------- validators
def _field(field: str) -> str:
    """A manifest field as errors name it (``manifest.json: env.weeks``)."""
    return f"{MANIFEST_FILE}: {field}"


def _fail(field: str, message: str) -> InvalidField:
    return InvalidField(_field(field), message)


def _bool(field: str, value: Any) -> bool:
    return validation.flag(_field(field), value)


def _optional_bool(field: str, value: Any) -> bool | None:
    return None if value is None else _bool(field, value)


def _number(field: str, value: Any) -> float:
    return validation.number(_field(field), value)


def _int_in(low: int, high: int) -> Callable[[str, Any], int]:
    def check(field: str, value: Any) -> int:
        return validation.integer(_field(field), value, low, high)

    return check


def _string(field: str, value: Any, max_len: int = 1000) -> str:
    return validation.text(_field(field), value, max_len)


def _dict(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):  # JSON objects only (validation.mapping also takes other mappings)
        raise _fail(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def _keys(field: str, value: Any, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    return validation.mapping(_field(field), _dict(field, value), required, optional)


def _layers(field: str, value: Any) -> list[int]:
    if not isinstance(value, list) or len(value) > MAX_LAYERS:
        raise _fail(field, f"must be a list of at most {MAX_LAYERS} layer widths, got {value!r}")
    return [_int_in(1, MAX_WIDTH)(f"{field}[{i}]", w) for i, w in enumerate(value)]


def _net_arch(networks: tuple[str, ...]) -> Callable[[str, Any], list[int] | dict[str, list[int]] | None]:
    """Checker of ``net_arch``: ``None``, one list of widths, or a dict of lists for the named ``networks``."""

    def check(field: str, value: Any) -> list[int] | dict[str, list[int]] | None:
        if value is None:
            return None
        if isinstance(value, dict):
            _keys(field, value, (), networks)
            return {key: _layers(f"{field}.{key}", layers) for key, layers in value.items()}
        return _layers(field, value)

    return check


def _whitelisted(field: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str):
        raise _fail(field, f"unknown {value!r} (allowed: {', '.join(allowed)})")
    return validation.choice(_field(field), value, allowed)


def _activation(field: str, value: Any) -> str:
    return _whitelisted(field, value, ACTIVATIONS)


def _features_extractor(field: str, value: Any) -> str:
    return _whitelisted(field, value, tuple(FEATURES_EXTRACTORS))


def _optimizer(field: str, value: Any) -> str:
    return _whitelisted(field, value, OPTIMIZERS)


def _resolve_classes(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments with the class names of :data:`_CLASS_ARGS` (checked against the whitelists
    when the manifest was parsed) replaced by the torch / SB3 classes (imports torch)."""
    import torch

    out = dict(kwargs)
    if "activation_fn" in out:
        out["activation_fn"] = getattr(torch.nn, out["activation_fn"])
    if "optimizer_class" in out:
        out["optimizer_class"] = getattr(torch.optim, out["optimizer_class"])
    if "features_extractor_class" in out:
        module, attribute = FEATURES_EXTRACTORS[out["features_extractor_class"]]
        out["features_extractor_class"] = getattr(importlib.import_module(module), attribute)
    return out


def _no_kwargs(field: str, value: Any) -> dict[str, Any]:
    if value is not None and value != {}:
        raise _fail(field, f"must be empty (FlattenExtractor takes no arguments), got {value!r}")
    return {}


def _optimizer_kwargs(field: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    value = _keys(field, value, (), sorted(_OPTIMIZER_KWARGS))
    out: dict[str, Any] = {}
    for key, item in value.items():
        where = f"{field}.{key}"
        if key == "betas":
            if not isinstance(item, list) or len(item) != 2:
                raise _fail(where, f"must be a list of two numbers, got {item!r}")
            out[key] = tuple(_number(f"{where}[{i}]", b) for i, b in enumerate(item))
        elif key in ("centered", "amsgrad", "maximize"):
            out[key] = _bool(where, item)
        else:
            out[key] = _number(where, item)
    return out


def _lstm_kwargs(field: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    value = _keys(field, value, (), sorted(_LSTM_KWARGS))
    out: dict[str, Any] = {}
    if "bias" in value:
        out["bias"] = _bool(f"{field}.bias", value["bias"])
    if "dropout" in value:
        out["dropout"] = _number(f"{field}.dropout", value["dropout"])
    return out


_Check = Callable[[str, Any], Any]
_COMMON: dict[str, _Check] = {
    "normalize_images": _bool,
    "activation_fn": _activation,
    "features_extractor_class": _features_extractor,
    "features_extractor_kwargs": _no_kwargs,
    "optimizer_class": _optimizer,
    "optimizer_kwargs": _optimizer_kwargs,
    "share_features_extractor": _bool,
}
_ACTOR_CRITIC: dict[str, _Check] = {
    **_COMMON,
    "net_arch": _net_arch(("pi", "vf")),
    "use_sde": _bool,
    "log_std_init": _number,
    "squash_output": _optional_bool,
    "full_std": _optional_bool,
    "use_expln": _optional_bool,
    "ortho_init": _bool,
}
#: Per policy class: the constructor arguments a manifest may give and how each is checked.
_POLICY_SCHEMAS: dict[str, dict[str, _Check]] = {
    "ActorCriticPolicy": _ACTOR_CRITIC,
    "RecurrentActorCriticPolicy": {
        **_ACTOR_CRITIC,
        "lstm_hidden_size": _int_in(1, MAX_WIDTH),
        "n_lstm_layers": _int_in(1, MAX_LSTM_LAYERS),
        "shared_lstm": _bool,
        "enable_critic_lstm": _bool,
        "lstm_kwargs": _lstm_kwargs,
    },
    "SACPolicy": {
        **_COMMON,
        "net_arch": _net_arch(("pi", "qf")),
        "use_sde": _bool,
        "log_std_init": _number,
        "use_expln": _bool,
        "clip_mean": _number,
        "n_critics": _int_in(1, MAX_CRITICS),
    },
    "TD3Policy": {**_COMMON, "net_arch": _net_arch(("pi", "qf")), "n_critics": _int_in(1, MAX_CRITICS)},
}
#: Constructor arguments that are classes, stored by name: key -> allowed names.
_CLASS_ARGS: dict[str, tuple[str, ...]] = {
    "activation_fn": ACTIVATIONS,
    "features_extractor_class": tuple(FEATURES_EXTRACTORS),
    "optimizer_class": OPTIMIZERS,
}


def _policy_kwargs(policy_class: str, value: Any) -> dict[str, Any]:
    """The checked constructor arguments of ``policy_class`` (classes as their whitelisted names; torch-free:
    :func:`_resolve_classes` turns them into classes for :func:`_build`)."""
    schema = _POLICY_SCHEMAS[policy_class]
    value = _keys("policy_kwargs", value, (), sorted(schema))
    return {key: schema[key](f"policy_kwargs.{key}", item) for key, item in value.items()}


def _min_parameters(kwargs: Mapping[str, Any]) -> int:
    """A lower bound on the number of parameters the architecture in ``kwargs`` allocates (hidden-to-hidden
    weights and biases, and the recurrent LSTM weights), to refuse architectures larger than the weights."""
    net_arch = kwargs.get("net_arch") or []
    lists = list(net_arch.values()) if isinstance(net_arch, dict) else [net_arch]
    total = sum(sum(a * b for a, b in itertools.pairwise(layers)) + sum(layers) for layers in lists)
    hidden = kwargs.get("lstm_hidden_size", 0)
    return total + 4 * hidden * hidden * kwargs.get("n_lstm_layers", 1 if hidden else 0)


# --------------------------------------------------------------------------------------------- spaces
def _bounds_to_json(values: np.ndarray) -> list[float | str]:
    return [float(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf") for v in values.reshape(-1).tolist()]


def _space_to_json(field: str, space: spaces.Space) -> dict[str, Any]:
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": _bounds_to_json(space.low), "high": _bounds_to_json(space.high)}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    raise ValueError(f"{field}: only 1-D Box and Discrete spaces can be exported, got {space!r}")


def _bounds(field: str, value: Any, size: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != size:
        got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
        raise _fail(field, f"must be a list of {size} numbers, got {got}")
    out = np.empty(size, dtype=np.float64)
    for i, v in enumerate(value):
        if v in ("inf", "-inf"):
            out[i] = float(v)
        elif validation.as_number(v) is not None:
            out[i] = float(v)
        else:
            raise _fail(f"{field}[{i}]", f"must be a finite number, 'inf' or '-inf', got {v!r}")
    return out


def _space(field: str, value: Any, discrete: bool) -> spaces.Space:
    kind = _dict(field, value).get("type")
    if kind == "Discrete" and discrete:
        value = _keys(field, value, ("type", "n", "start"))
        n = _int_in(1, MAX_DISCRETE_N)(f"{field}.n", value["n"])
        return spaces.Discrete(n, start=_int_in(-(2**31), 2**31)(f"{field}.start", value["start"]))
    if kind != "Box":
        raise _fail(f"{field}.type", f"must be {'Box or Discrete' if discrete else 'Box'}, got {kind!r}")
    value = _keys(field, value, ("type", "shape", "dtype", "low", "high"))
    shape = value["shape"]
    if not isinstance(shape, list) or len(shape) != 1:
        raise _fail(f"{field}.shape", f"must be a list of one dimension, got {shape!r}")
    size = _int_in(1, MAX_SPACE_DIM)(f"{field}.shape[0]", shape[0])
    dtype = _whitelisted(f"{field}.dtype", value["dtype"], ("float32", "float64"))
    low, high = _bounds(f"{field}.low", value["low"], size), _bounds(f"{field}.high", value["high"], size)
    if not (low <= high).all():
        raise _fail(field, "low must not exceed high")
    return spaces.Box(low.astype(dtype), high.astype(dtype), shape=(size,), dtype=np.dtype(dtype))


# ------------------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class _Spec:
    """What a validated manifest describes (classes resolved, arrays built)."""

    policy_class: str
    policy_kwargs: dict[str, Any]
    observation_space: spaces.Box
    action_space: spaces.Space
    feature_names: tuple[str, ...]
    mean: np.ndarray | None
    var: np.ndarray | None
    clip_obs: float
    epsilon: float
    weights_sha256: str
    weights_bytes: int
    weights_tensors: int


def _normalization(field: str, value: Any, size: int) -> tuple[np.ndarray | None, np.ndarray | None, float, float]:
    if value is None:
        return None, None, 0.0, 0.0
    value = _keys(field, value, ("mean", "var", "count", "clip_obs", "epsilon"))
    mean, var = _bounds(f"{field}.mean", value["mean"], size), _bounds(f"{field}.var", value["var"], size)
    if not (np.isfinite(mean).all() and np.isfinite(var).all()) or (var < 0).any():
        raise _fail(field, "mean must be finite and var finite and >= 0")
    if _number(f"{field}.count", value["count"]) < 0:
        raise _fail(f"{field}.count", f"must be >= 0, got {value['count']!r}")
    clip_obs, epsilon = _number(f"{field}.clip_obs", value["clip_obs"]), _number(f"{field}.epsilon", value["epsilon"])
    if clip_obs <= 0:
        raise _fail(f"{field}.clip_obs", f"must be > 0, got {clip_obs!r}")
    if epsilon < 0 or not (var + epsilon > 0).all():
        raise _fail(f"{field}.epsilon", f"must be >= 0 with var + epsilon > 0, got {epsilon!r}")
    return mean, var, clip_obs, epsilon


def _parse_manifest(manifest: Any) -> _Spec:
    """Validate every field of a manifest (a ``ValueError`` names the first bad one) and return its spec."""
    m = _keys("manifest", manifest, _MANIFEST_FIELDS)
    if m["format"] != FORMAT:
        raise _fail("format", f"must be {FORMAT!r}, got {m['format']!r}")
    if isinstance(m["format_version"], bool) or m["format_version"] != FORMAT_VERSION:
        raise _fail("format_version", f"this adaptrx reads version {FORMAT_VERSION}, got {m['format_version']!r}")
    if not isinstance(m["name"], str) or not _NAME_RE.fullmatch(m["name"]):
        raise _fail("name", f"must match {_NAME_RE.pattern}, got {m['name']!r}")
    algorithm = _whitelisted("algorithm", m["algorithm"], tuple(ALGORITHMS))
    policy_class = _whitelisted("policy_class", m["policy_class"], tuple(POLICY_CLASSES))
    if ALGORITHMS[algorithm] != policy_class:
        raise _fail("policy_class", f"{algorithm} policies are {ALGORITHMS[algorithm]}, got {policy_class!r}")
    kwargs = _policy_kwargs(policy_class, m["policy_kwargs"])
    obs_space = _space("observation_space", m["observation_space"], discrete=False)
    action_space = _space("action_space", m["action_space"], discrete=algorithm in _DISCRETE_ALGORITHMS)
    n_features = obs_space.shape[0]
    names = m["feature_names"]
    if not isinstance(names, list) or len(names) not in (0, n_features):
        raise _fail("feature_names", f"must be a list of 0 or {n_features} names")
    names = tuple(_string(f"feature_names[{i}]", name, 200) for i, name in enumerate(names))
    if len(set(names)) != len(names):
        raise _fail("feature_names", "names must be unique")
    mean, var, clip_obs, epsilon = _normalization("normalization", m["normalization"], n_features)
    _dict("env", m["env"])
    _dict("config", m["config"])
    if not isinstance(m["config_hash"], str) or m["config_hash"] != config_hash(m["config"]):
        raise _fail("config_hash", "does not match the sha256 of the canonical JSON of config")
    if m["evaluation"] is not None:
        _dict("evaluation", m["evaluation"])
    for package, version in _dict("versions", m["versions"]).items():
        if version is not None:
            _string(f"versions.{package}", version, 200)
    weights = _keys("weights", m["weights"], ("file", "sha256", "bytes", "tensors"))
    if weights["file"] != WEIGHTS_FILE:
        raise _fail("weights.file", f"must be {WEIGHTS_FILE!r}, got {weights['file']!r}")
    if not isinstance(weights["sha256"], str) or not _SHA256_RE.fullmatch(weights["sha256"]):
        raise _fail("weights.sha256", f"must be 64 lowercase hex digits, got {weights['sha256']!r}")
    n_bytes = _int_in(1, MAX_WEIGHTS_BYTES)("weights.bytes", weights["bytes"])
    n_tensors = _int_in(1, 100_000)("weights.tensors", weights["tensors"])
    try:
        datetime.fromisoformat(_string("created", m["created"], 64))
    except ValueError as exc:
        raise _fail("created", f"must be an ISO 8601 timestamp, got {m['created']!r}") from exc
    return _Spec(policy_class, kwargs, obs_space, action_space, names, mean, var, clip_obs, epsilon,
                 weights["sha256"], n_bytes, n_tensors)


def _read_limited(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` (``FileNotFoundError`` naming it when absent), refusing more than ``limit``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path}: larger than the {limit} byte limit")
    return data


# ------------------------------------------------------------------------------------------- the policy
class LoadedPolicy(Policy):
    """What every loaded policy directory offers, however it computes its actions: the manifest's identity
    (``manifest``, ``name``, ``algorithm``, ``sha256`` of the weights, ``policy_id``, ``label``), the
    ``feature_names`` and spaces it was trained with, and :meth:`normalize`, the training ``VecNormalize``
    transform of raw observations. :class:`ExportedPolicy` (torch) and
    :class:`adaptrx.agents.numpy_policy.NumpyPolicy` build on it."""

    recurrent = False

    def __init__(self, manifest: dict[str, Any], spec: _Spec, policy_id: str) -> None:
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.algorithm: str = manifest["algorithm"]
        self.sha256: str = manifest["weights"]["sha256"]
        self.policy_id = policy_id
        self.label = f"{self.name}@{policy_id[:12]}"
        self.feature_names = spec.feature_names
        self.observation_space = spec.observation_space
        self.action_space = spec.action_space
        self._n_features = int(spec.observation_space.shape[0])
        self._mean = spec.mean
        self._scale = None if spec.var is None else np.sqrt(spec.var + spec.epsilon)
        self._clip = spec.clip_obs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r}, algorithm={self.algorithm!r})"

    def _batch(self, obs: Any) -> tuple[np.ndarray, bool]:
        """``obs`` as float64 ``(n, n_features)`` and whether a single observation was given."""
        try:
            x = np.asarray(obs, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"obs: must be a numeric array, got {type(obs).__name__}") from exc
        d = self._n_features
        if x.ndim not in (1, 2) or x.shape[-1] != d or x.size == 0:
            raise ValueError(f"obs: expected shape ({d},) or (n_envs, {d}) with n_envs >= 1, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("obs: must be finite (no NaN or inf)")
        return np.atleast_2d(x), x.ndim == 1

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """``VecNormalize``'s observation transform, float32 of ``obs``'s shape:
        ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` (``obs`` itself when the policy was
        trained without normalisation)."""
        x, single = self._batch(obs)
        if self._mean is not None:
            x = np.clip((x - self._mean) / self._scale, -self._clip, self._clip)
        x = x.astype(np.float32)
        return x[0] if single else x


class ExportedPolicy(LoadedPolicy):
    """A policy loaded by :func:`load_policy`: the rebuilt SB3 torch module behind the raw-observation
    interface of ``DESIGN.md`` section 6.

    :meth:`predict` takes raw observations (one ``(n_features,)`` or a batch ``(n_envs, n_features)``, the
    env's units), applies the training ``VecNormalize`` transform stored in the manifest (:meth:`normalize`),
    and returns what the SB3 policy's ``predict`` returns: Box actions ``(3,)`` / ``(n_envs, 3)`` float32 in
    [-1, 1], or Discrete move indices (a 0-d / ``(n_envs,)`` int64 array), and the state. Like SB3, the
    caller carries the state: for the recurrent policy it is the LSTM ``(hidden, cell)`` pair, each
    ``(n_lstm_layers, n_envs, lstm_hidden_size)``, zero when ``state`` is ``None`` and reset where
    ``episode_start`` is true; for the others it is passed through unchanged. :meth:`reset` therefore has
    nothing to forget.

    Attributes:
        manifest: the validated ``manifest.json`` (a dict, as read).
        name, algorithm: from the manifest.
        sha256: sha256 (hex) of ``policy.safetensors``, checked on load.
        policy_id: :func:`policy_id`, sha256 (hex) over the canonical manifest and the weights.
        label: ``"{name}@{policy_id[:12]}"``, names the exact policy in results.
        feature_names: the observation's feature names (may be empty).
        observation_space, action_space: the spaces the policy was trained in.
        recurrent: whether the policy is the LSTM policy of ``recurrent_ppo``.
        policy: the rebuilt SB3 policy module (CPU, evaluation mode).
    """

    def __init__(self, manifest: dict[str, Any], policy: BasePolicy, spec: _Spec, policy_id: str) -> None:
        super().__init__(manifest, spec, policy_id)
        self.recurrent = spec.policy_class == "RecurrentActorCriticPolicy"
        self.policy = policy

    def _lstm_state(self, state: Any, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        if state is None:
            return None
        shape = self.policy.lstm_hidden_state_shape
        shape = (shape[0], n, shape[2])
        if not isinstance(state, tuple | list) or len(state) != 2:
            raise ValueError("state: must be the (hidden, cell) pair returned by the previous predict, or None")
        out = []
        for part in state:
            a = np.asarray(part, dtype=np.float32)
            if a.shape != shape or not np.isfinite(a).all():
                raise ValueError(f"state: expected two finite arrays of shape {shape}, got {a.shape}")
            out.append(a)
        return out[0], out[1]

    def predict(
        self,
        obs: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """SB3's ``predict`` on raw observations (see the class docstring)."""
        z = self.normalize(obs)
        if self.recurrent:
            n = 1 if z.ndim == 1 else len(z)
            state = self._lstm_state(state, n)
            if episode_start is not None:
                flags = np.asarray(episode_start, dtype=bool).reshape(-1)
                if flags.size not in (1, n):
                    raise ValueError(f"episode_start: expected {n} flag(s), got shape {np.shape(episode_start)}")
                episode_start = np.broadcast_to(flags, (n,)).copy()
        return self.policy.predict(z, state, episode_start, deterministic)


# ------------------------------------------------------------------------------------------- loading
def _policy_class(name: str) -> type:
    module, attribute = POLICY_CLASSES[name]
    return getattr(importlib.import_module(module), attribute)


def _build(spec: _Spec, tensors: dict[str, torch.Tensor]) -> BasePolicy:
    """The SB3 policy of ``spec`` with the weights ``tensors`` (strict), CPU, evaluation mode."""
    need = _min_parameters(spec.policy_kwargs)
    have = sum(t.numel() for t in tensors.values())
    if need > have:
        raise _fail("policy_kwargs", f"the architecture needs at least {need} parameters but {WEIGHTS_FILE} "
                                     f"holds {have}")
    cls = _policy_class(spec.policy_class)
    try:
        policy = cls(spec.observation_space, spec.action_space, lambda _: 0.0, **_resolve_classes(spec.policy_kwargs))
    except (TypeError, ValueError, AssertionError, RuntimeError, KeyError) as exc:
        raise _fail("policy_kwargs", f"cannot build {spec.policy_class}: {exc}") from exc
    expected = policy.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{WEIGHTS_FILE}: tensors do not match the {spec.policy_class} described by "
                         f"{MANIFEST_FILE}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape or tensor.dtype != expected[key].dtype:
            raise ValueError(f"{WEIGHTS_FILE}: {key}: expected {expected[key].dtype} {tuple(expected[key].shape)}, "
                             f"got {tensor.dtype} {tuple(tensor.shape)}")
    policy.load_state_dict(tensors, strict=True)
    policy.set_training_mode(False)
    return policy


#: File suffixes of pickle-based model formats (SB3 ``.zip`` checkpoints hold pickles; ``torch.save`` files,
#: joblib and pickle dumps): refused by :func:`load_policy` with an explanation, never opened.
PICKLE_SUFFIXES: tuple[str, ...] = (".zip", ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".bin")


def _refuse_pickle_based(directory: Path) -> None:
    """Raise ``ValueError`` for a path that is (or a directory that only holds) a pickle-based model file."""
    if directory.is_file():
        kind = "a pickle-based model file" if directory.suffix.lower() in PICKLE_SUFFIXES else "a file"
        raise ValueError(f"{directory}: {kind}, not a policy directory; adaptrx loads only exported policies "
                         f"({MANIFEST_FILE} + {WEIGHTS_FILE}) and never unpickles (export a trained model with "
                         "adaptrx.agents.export.export_policy)")
    if directory.is_dir() and not (directory / MANIFEST_FILE).exists():
        found = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if found:
            raise ValueError(f"{directory}: holds pickle-based model file(s) {found} but no {MANIFEST_FILE}; "
                             "they are never loaded (export the model with adaptrx.agents.export.export_policy)")


def check_spaces(policy: LoadedPolicy, observation_space: spaces.Space | None = None,
                 action_space: spaces.Space | None = None, feature_names: Sequence[str] | None = None) -> None:
    """Raise ``ValueError`` naming ``observation_space``, ``action_space`` or ``feature_names`` when ``policy``
    was exported for other spaces than the env it is about to act in (``None``: not checked).

    Box spaces must agree in shape, dtype and bounds (to float32 precision); Discrete spaces in ``n`` and
    ``start``; feature names (when the manifest records them) in order.
    """
    names = tuple(policy.feature_names)
    policy_beliefs = any(n.startswith("belief_") for n in names)
    if feature_names is not None and policy_beliefs != any(n.startswith("belief_") for n in feature_names):
        raise ValueError("feature_names: the policy " + ("reads" if policy_beliefs else "does not read")
                         + " the belief features (belief_*) and the env " + ("has none: make it with belief=True"
                                                                            if policy_beliefs else "has them"))
    for field, expected, got in (("observation_space", observation_space, policy.observation_space),
                                 ("action_space", action_space, policy.action_space)):
        if expected is not None and not _same_space(expected, got):
            raise ValueError(f"{field}: the policy {policy.name!r} was exported for {_describe(got)}, but the env "
                             f"has {_describe(expected)}{_bounds_difference(expected, got)}")
    if feature_names is not None and names and names != tuple(feature_names):
        diff = next(i for i, (a, b) in enumerate(itertools.zip_longest(names, feature_names)) if a != b)
        raise ValueError(f"feature_names: the policy's observation differs from the env's at position {diff} "
                         f"({names[diff] if diff < len(names) else None!r} vs "
                         f"{feature_names[diff] if diff < len(feature_names) else None!r})")


def _describe(space: spaces.Space) -> str:
    if isinstance(space, spaces.Box):
        return f"Box(shape={space.shape}, dtype={space.dtype})"
    return repr(space)


def _bounds_difference(a: spaces.Space, b: spaces.Space) -> str:
    """Where two Box spaces of one shape first differ in their bounds ("" otherwise)."""
    if not (isinstance(a, spaces.Box) and isinstance(b, spaces.Box) and a.shape == b.shape):
        return ""
    for name, x, y in (("low", a.low, b.low), ("high", a.high, b.high)):
        bad = np.flatnonzero(x.astype(np.float32).ravel() != y.astype(np.float32).ravel())
        if len(bad):
            i = int(bad[0])
            return f" (bounds differ: {name}[{i}] is {x.ravel()[i]:g} in the env, {y.ravel()[i]:g} in the policy)"
    return ""


def _same_space(a: spaces.Space, b: spaces.Space) -> bool:
    if isinstance(a, spaces.Discrete) and isinstance(b, spaces.Discrete):
        return int(a.n) == int(b.n) and int(a.start) == int(b.start)
    if isinstance(a, spaces.Box) and isinstance(b, spaces.Box):
        return (a.shape == b.shape and a.dtype == b.dtype
                and np.array_equal(a.low.astype(np.float32), b.low.astype(np.float32))
                and np.array_equal(a.high.astype(np.float32), b.high.astype(np.float32)))
    return False


def load_policy(path: str | Path, *, observation_space: spaces.Space | None = None,
                action_space: spaces.Space | None = None,
                feature_names: Sequence[str] | None = None, expect_id: str | None = None) -> ExportedPolicy:
    """Load the policy directory ``path`` (or its ``manifest.json``) written by :func:`export_policy`.

    Nothing is unpickled or executed (see the module docstring). Raises ``FileNotFoundError`` naming a
    missing file, and ``ValueError`` naming the file and field for a manifest that is malformed, from another
    format version or describes something outside the whitelists, for weights whose sha256, size or tensors
    do not match the manifest, for files over the size limits, and for pickle-based model files (an SB3
    ``.zip``, ``.pkl``, ``.pt``, ...: see :data:`PICKLE_SUFFIXES`). Given the env's ``observation_space``,
    ``action_space`` or ``feature_names``, a policy exported for other ones is refused (:func:`check_spaces`).
    Given ``expect_id`` (the :func:`policy_id`, or a prefix of at least 8 hex digits), a policy whose id
    differs is refused before its weights are parsed. Non-finite weights are refused.
    """
    directory, manifest, spec, data, identity = read_policy_files(path, expect_id)
    weights_path = directory / WEIGHTS_FILE
    import safetensors.torch

    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError for malformed files
        raise ValueError(f"{weights_path}: not a valid safetensors file: {exc}") from exc
    if len(tensors) != spec.weights_tensors:
        raise ValueError(f"{weights_path}: {len(tensors)} tensors, the manifest says {spec.weights_tensors}")
    import torch

    for name, tensor in tensors.items():  # NaN / inf weights would only fail (or act) later, inside torch
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{weights_path}: tensor {name!r} holds non-finite values (NaN or inf)")
    try:
        policy = _build(spec, tensors)
    except ValueError as exc:
        raise ValueError(f"{directory}{os.sep}{exc}") from exc
    loaded = ExportedPolicy(manifest, policy, spec, identity)
    try:
        check_spaces(loaded, observation_space, action_space, feature_names)
    except ValueError as exc:
        raise ValueError(f"{directory}: {exc}") from exc
    return loaded


def read_policy_files(path: str | Path, expect_id: str | None = None) -> tuple[Path, dict[str, Any], _Spec, bytes,
                                                                              str]:
    """The checks every loader shares, torch-free: ``(directory, manifest, spec, weights bytes, policy id)`` of
    the policy directory ``path`` (or its ``manifest.json``); the errors of :func:`load_policy` (pickle-based
    files, missing files, size limits, a malformed manifest, weights whose sha256 or size differ, an id other
    than ``expect_id``)."""
    directory = Path(path)
    if directory.name == MANIFEST_FILE and directory.is_file():
        directory = directory.parent
    _refuse_pickle_based(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such policy directory")
    manifest_path = directory / MANIFEST_FILE
    raw = _read_limited(manifest_path, MAX_MANIFEST_BYTES)
    try:
        manifest = strict_json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{manifest_path}: not valid JSON: {exc}") from exc
    try:
        spec = _parse_manifest(manifest)
    except ValueError as exc:
        raise ValueError(f"{directory}{os.sep}{exc}") from exc

    weights_path = directory / WEIGHTS_FILE
    data = _read_limited(weights_path, MAX_WEIGHTS_BYTES)
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.weights_sha256:
        raise ValueError(f"{weights_path}: sha256 {digest} does not match the manifest's {spec.weights_sha256} "
                         "(the weights were modified or belong to another manifest)")
    if len(data) != spec.weights_bytes:
        raise ValueError(f"{weights_path}: {len(data)} bytes, the manifest says {spec.weights_bytes}")
    identity = policy_id(manifest, data)
    if expect_id is not None:
        check_expected_id(identity, expect_id, str(directory))
    return directory, manifest, spec, data, identity


# ------------------------------------------------------------------------------------------- export
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for package in _VERSION_PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    if out["adaptrx"] is None:
        out["adaptrx"] = __version__
    out["python"] = platform.python_version()
    return out


def _policy_kwargs_to_json(policy: BasePolicy, policy_class: str) -> dict[str, Any]:
    """The JSON constructor arguments that rebuild ``policy``: ``_get_constructor_parameters()`` without the
    spaces and schedule, plus what SB3 leaves out of it (shared extractor, LSTM sizes); classes by name."""
    params = dict(policy._get_constructor_parameters())
    for key in ("observation_space", "action_space", "lr_schedule"):
        params.pop(key, None)
    if hasattr(policy, "share_features_extractor"):
        params["share_features_extractor"] = bool(policy.share_features_extractor)
    if policy_class == "RecurrentActorCriticPolicy":
        lstm = policy.lstm_actor
        params.update(lstm_hidden_size=int(lstm.hidden_size), n_lstm_layers=int(lstm.num_layers),
                      shared_lstm=bool(policy.shared_lstm), enable_critic_lstm=bool(policy.enable_critic_lstm),
                      lstm_kwargs=dict(policy.lstm_kwargs))
    out: dict[str, Any] = {}
    for key, value in params.items():
        field = f"policy_kwargs.{key}"
        if key in _CLASS_ARGS:
            name = getattr(value, "__name__", None)
            allowed = _CLASS_ARGS[key]
            if name not in allowed or value is not _resolve_classes({key: name})[key]:
                raise ValueError(f"{field}: cannot export {value!r} (allowed: {', '.join(allowed)})")
            out[key] = name
        else:
            out[key] = _to_json(field, value)
    _policy_kwargs(policy_class, out)  # fail now rather than when loading
    return out


def _check_model(model: BaseAlgorithm, algorithm: str) -> str:
    """The policy class name of ``model``, checked against ``algorithm``."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    expected_model = _MODEL_CLASSES[algorithm]
    if not any(c.__name__ == expected_model for c in type(model).__mro__):
        raise ValueError(f"algorithm: {algorithm!r} models are {expected_model}, got {type(model).__name__}")
    policy_class = ALGORITHMS[algorithm]
    if type(model.policy) is not _policy_class(policy_class):
        raise ValueError(f"model.policy: {algorithm} policies must be exactly {policy_class} (MlpPolicy / "
                         f"MlpLstmPolicy), got {type(model.policy).__name__}")
    if isinstance(model.action_space, spaces.Discrete) and algorithm not in _DISCRETE_ALGORITHMS:
        raise ValueError(f"algorithm: {algorithm} cannot act in a Discrete action space")
    return policy_class


def _created() -> str:
    """The manifest's ``created`` timestamp: now, or ``SOURCE_DATE_EPOCH`` (seconds since 1970, UTC) when set,
    the reproducible-builds convention: a re-export of the same weights and evaluation then keeps its policy id
    (``make policy`` sets it to the shipped manifest's time)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        return datetime.now(UTC).isoformat(timespec="seconds")
    if not epoch.isdigit():
        raise ValueError(f"SOURCE_DATE_EPOCH: expected whole seconds since 1970, got {epoch!r}")
    return datetime.fromtimestamp(int(epoch), UTC).isoformat(timespec="seconds")


def export_policy(
    model: BaseAlgorithm,
    out_dir: str | Path,
    *,
    obs_rms: RunningMeanStd | None = None,
    clip_obs: float = 10.0,
    epsilon: float = 1e-8,
    feature_names: Sequence[str] = (),
    algorithm: str,
    env: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    evaluation: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    """Write ``out_dir/policy.safetensors`` and ``out_dir/manifest.json`` (creating ``out_dir``); return ``out_dir``.

    Args:
        model: the trained SB3 model; its policy must be exactly the class of :data:`ALGORITHMS`
            (``MlpPolicy`` / ``MlpLstmPolicy``) with a ``FlattenExtractor``.
        out_dir: the policy directory (existing files of the same names are replaced).
        obs_rms: ``VecNormalize.obs_rms`` of the training env (observation mean and variance), or ``None`` if
            the policy saw raw observations.
        clip_obs, epsilon: that ``VecNormalize``'s clip bound (> 0) and variance offset (>= 0).
        feature_names: the observation's feature names (empty, or one per observation dimension).
        algorithm: ``ppo``, ``a2c``, ``sac``, ``td3``, ``recurrent_ppo`` or ``dagger``.
        env, config, evaluation: JSON data stored in the manifest (env description, training config, whose
            :func:`config_hash` is stored too, and evaluation summary). Numpy scalars and small arrays become
            numbers and lists; NaN or infinite evaluation numbers are stored as ``null`` (elsewhere they are a
            ``ValueError``).
        name: the policy's name (letters, digits, ``._+-``; default: the directory's name).

    The directory is loaded back with :func:`load_policy` before returning, so an export that could not be
    loaded (or would rebuild different weights) fails here with a ``ValueError``.
    """
    import safetensors.torch
    import torch

    out = Path(out_dir)
    policy_class = _check_model(model, algorithm)
    policy = model.policy
    name = out.resolve().name if name is None else name
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"name: must match {_NAME_RE.pattern} (pass name=...), got {name!r}")
    obs_space = _space_to_json("observation_space", policy.observation_space)
    if obs_space["type"] != "Box":
        raise ValueError(f"observation_space: must be a 1-D Box, got {policy.observation_space!r}")
    n_features = obs_space["shape"][0]
    names = list(feature_names)
    if len(names) not in (0, n_features) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"feature_names: must be 0 or {n_features} strings, got {len(names)}")
    normalization = None
    if obs_rms is not None:
        mean, var = np.asarray(obs_rms.mean, dtype=np.float64), np.asarray(obs_rms.var, dtype=np.float64)
        if mean.shape != (n_features,) or var.shape != (n_features,):
            raise ValueError(f"obs_rms: mean and var must have shape ({n_features},), got {mean.shape}, {var.shape}")
        normalization = {"mean": mean.tolist(), "var": var.tolist(), "count": float(obs_rms.count),
                         "clip_obs": float(clip_obs), "epsilon": float(epsilon)}

    tensors = {key: t.detach().to("cpu").contiguous().clone() for key, t in policy.state_dict().items()}
    data = safetensors.torch.save(tensors, metadata={"format": FORMAT})
    if len(data) > MAX_WEIGHTS_BYTES:
        raise ValueError(f"{WEIGHTS_FILE}: {len(data)} bytes exceed the {MAX_WEIGHTS_BYTES} byte limit")
    config_data = _to_json("config", config if config is not None else {})
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "algorithm": algorithm,
        "policy_class": policy_class,
        "policy_kwargs": _policy_kwargs_to_json(policy, policy_class),
        "observation_space": obs_space,
        "action_space": _space_to_json("action_space", policy.action_space),
        "feature_names": names,
        "normalization": normalization,
        "env": _to_json("env", env if env is not None else {}),
        "config": config_data,
        "config_hash": config_hash(config_data),
        "evaluation": None if evaluation is None else _to_json("evaluation", evaluation, nonfinite_as_null=True),
        "versions": _versions(),
        "weights": {"file": WEIGHTS_FILE, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                    "tensors": len(tensors)},
        "created": _created(),
    }
    _parse_manifest(manifest)  # the same checks as load_policy, before anything is written
    text = _pretty(manifest) + "\n"
    if len(text.encode("utf-8")) > MAX_MANIFEST_BYTES:
        raise ValueError(f"{MANIFEST_FILE}: larger than the {MAX_MANIFEST_BYTES} byte limit")

    out.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(out / WEIGHTS_FILE, data)
    atomic.write_bytes(out / MANIFEST_FILE, text.encode("utf-8"))
    loaded = load_policy(out).policy.state_dict()
    if loaded.keys() != tensors.keys() or not all(torch.equal(loaded[k], tensors[k]) for k in tensors):
        raise ValueError(f"{out}: the exported policy does not load back to the same weights")
    return out
