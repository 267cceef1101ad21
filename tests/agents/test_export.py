"""Safe policy export (safetensors + manifest.json) and loading: the loaded policy acts exactly like the trained
SB3 model behind its VecNormalize, the manifest records what rebuilds and identifies it, tampered or foreign
files are refused with errors naming the field, and nothing is ever unpickled."""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

import adaptrx
from adaptrx.agents import export
from adaptrx.agents.export import (
    ALGORITHMS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    ExportedPolicy,
    config_hash,
    export_policy,
    load_policy,
)
from adaptrx.envs import FEATURE_NAMES, PatientVecEnv
from adaptrx.protocols.base import Policy

N_ENVS, WEEKS, STEPS = 4, 8, 16  # 16 steps x 4 envs = 64 observations
#: case -> (algorithm, SB3 class, its kwargs, discrete actions)
CASES: dict[str, tuple[str, type[BaseAlgorithm], dict[str, Any], bool]] = {
    "ppo": ("ppo", PPO, {"n_steps": 32, "batch_size": 64, "n_epochs": 2}, False),
    "a2c": ("a2c", A2C, {"n_steps": 8}, False),
    "sac": ("sac", SAC, {"learning_starts": 50, "batch_size": 32}, False),
    "td3": ("td3", TD3, {"learning_starts": 50, "batch_size": 32}, False),
    "recurrent_ppo": ("recurrent_ppo", RecurrentPPO, {"n_steps": 32, "batch_size": 64, "n_epochs": 2}, False),
    "ppo_discrete": ("ppo", PPO, {"n_steps": 32, "batch_size": 64, "n_epochs": 2}, True),
}
MANIFEST_FIELDS = {"format", "format_version", "name", "algorithm", "policy_class", "policy_kwargs",
                   "observation_space", "action_space", "feature_names", "normalization", "env", "config",
                   "config_hash", "evaluation", "versions", "weights", "created"}


@dataclass
class Trained:
    algorithm: str
    model: BaseAlgorithm
    vecnorm: VecNormalize
    discrete: bool
    raw: np.ndarray  # (STEPS, N_ENVS, 37) raw observations of a rollout with random actions
    starts: np.ndarray  # (STEPS, N_ENVS) episode_start flag of each of those observations

    @property
    def batch(self) -> np.ndarray:
        return self.raw.reshape(-1, self.raw.shape[-1])


@functools.cache
def _trained(case: str) -> Trained:
    """A model trained a few hundred steps on VecNormalize(PatientVecEnv) and raw observations to test it on."""
    algorithm, cls, kwargs, discrete = CASES[case]
    vecnorm = VecNormalize(PatientVecEnv(N_ENVS, weeks=WEEKS, discrete=discrete), norm_reward=False)
    vecnorm.seed(0)
    policy_kwargs: dict[str, Any] = {"net_arch": [16, 16]}
    if cls is RecurrentPPO:
        policy_kwargs["lstm_hidden_size"] = 16
    model = cls("MlpLstmPolicy" if cls is RecurrentPPO else "MlpPolicy", vecnorm, policy_kwargs=policy_kwargs,
                seed=0, device="cpu", **kwargs)
    initial = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(256)
    changed = [k for k, v in model.policy.state_dict().items() if not torch.equal(v, initial[k])]
    assert changed, "training must move the weights away from their initial values"
    assert vecnorm.obs_rms.count > 256 and not np.allclose(vecnorm.obs_rms.var, 1.0)

    vecnorm.training = False  # freeze the statistics while collecting test observations
    vecnorm.reset()
    rng = np.random.default_rng(0)
    raw, starts, start = [], [], np.ones(N_ENVS, dtype=bool)
    for _ in range(STEPS):
        action = (rng.integers(0, vecnorm.action_space.n, N_ENVS) if discrete
                  else rng.uniform(-1, 1, (N_ENVS, 3)).astype(np.float32))
        raw.append(vecnorm.get_original_obs().copy())
        starts.append(start)
        _, _, done, _ = vecnorm.step(action)
        start = done.copy()
    return Trained(algorithm, model, vecnorm, discrete, np.array(raw), np.array(starts))


def _export(t: Trained, out: Path, **kwargs: Any) -> Path:
    args: dict[str, Any] = {"obs_rms": t.vecnorm.obs_rms, "clip_obs": t.vecnorm.clip_obs,
                            "epsilon": t.vecnorm.epsilon, "feature_names": FEATURE_NAMES, "algorithm": t.algorithm}
    args.update(kwargs)
    return export_policy(t.model, out, **args)


@pytest.fixture(scope="module")
def ppo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(_trained("ppo"), tmp_path_factory.mktemp("export") / "ppo")


def _copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "copy"))


def _edit_manifest(path: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    edit(manifest)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))


def _rewrite_weights(path: Path, edit: Callable[[dict[str, torch.Tensor]], Any]) -> None:
    """Change the tensors and make the manifest's sha256, size and count agree (a consistent forgery)."""
    tensors = safetensors.torch.load((path / WEIGHTS_FILE).read_bytes())
    edit(tensors)
    data = safetensors.torch.save(tensors)
    (path / WEIGHTS_FILE).write_bytes(data)
    _edit_manifest(path, lambda m: m["weights"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                                                        tensors=len(tensors)))


# ---------------------------------------------------------------------------------- equivalence with SB3
@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_loaded_policy_acts_exactly_like_the_trained_model(case: str, tmp_path: Path) -> None:
    t = _trained(case)
    policy = load_policy(_export(t, tmp_path / case))
    assert isinstance(policy, Policy) and isinstance(policy, ExportedPolicy)
    assert policy.algorithm == t.algorithm and policy.manifest["policy_class"] == ALGORITHMS[t.algorithm]
    assert policy.recurrent == (case == "recurrent_ppo")
    assert policy.observation_space == t.vecnorm.observation_space and policy.action_space == t.vecnorm.action_space

    # the rebuilt module holds exactly the trained tensors, under exactly the same names
    trained, loaded = t.model.policy.state_dict(), policy.policy.state_dict()
    assert list(loaded) == list(trained)
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)
    assert not policy.policy.training

    # raw observations in: the stored VecNormalize transform is applied bit for bit
    norm = t.vecnorm.normalize_obs(t.batch)
    np.testing.assert_array_equal(policy.normalize(t.batch), norm)
    assert policy.normalize(t.batch).dtype == np.float32
    assert np.abs(norm).max() > 1.0  # the statistics are not the identity

    expected, _ = t.model.predict(norm, deterministic=True)
    actions, state = policy.predict(t.batch)
    single, _ = policy.predict(t.batch[5])
    expected_single, _ = t.model.predict(norm[5], deterministic=True)
    if t.discrete:
        assert actions.shape == (len(t.batch),) and actions.dtype.kind == "i"
        np.testing.assert_array_equal(actions, expected)
        assert np.ndim(single) == 0 and int(single) == int(expected_single)
        assert len(np.unique(actions)) > 1
    else:
        assert actions.shape == (len(t.batch), 3) and single.shape == (3,)
        np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(single, expected_single, rtol=0, atol=1e-6)
        assert np.abs(actions).max() <= 1.0 and actions.std(axis=0).max() > 1e-4
    if not policy.recurrent:
        assert state is None


def test_recurrent_policy_carries_the_lstm_state_like_sb3(tmp_path: Path) -> None:
    t = _trained("recurrent_ppo")
    policy = load_policy(_export(t, tmp_path / "rppo"))
    starts = t.starts[:5].copy()
    starts[3, 1] = True  # a reset in the middle of the sequence for one env
    state = expected_state = None
    firsts = []
    for week in range(5):
        actions, state = policy.predict(t.raw[week], state, starts[week])
        expected, expected_state = t.model.predict(t.vecnorm.normalize_obs(t.raw[week]), expected_state,
                                                   starts[week], deterministic=True)
        np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-6)
        for mine, theirs in zip(state, expected_state, strict=True):
            assert mine.shape == (1, N_ENVS, 16)
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
        firsts.append(actions)
    # the state matters: the same last observation without the carried state gives other actions
    fresh, _ = policy.predict(t.raw[4], None, np.ones(N_ENVS, dtype=bool))
    assert not np.allclose(fresh, firsts[-1], atol=1e-6)
    # one observation with its (1, 1, 16) state
    one, one_state = policy.predict(t.raw[0, 0], None, True)
    assert one.shape == (3,) and one_state[0].shape == (1, 1, 16)
    with pytest.raises(ValueError, match="state"):
        policy.predict(t.raw[1], (np.zeros((1, 3, 16)), np.zeros((1, 3, 16))))
    with pytest.raises(ValueError, match="episode_start"):
        policy.predict(t.raw[1], None, np.ones(3, dtype=bool))


@pytest.mark.parametrize("case", ["ppo", "recurrent_ppo"])
def test_evaluate_policy_on_the_raw_env_matches_the_model_on_its_vecnormalize(case: str, tmp_path: Path) -> None:
    t = _trained(case)
    policy = load_policy(_export(t, tmp_path / case))
    raw_env = VecMonitor(PatientVecEnv(N_ENVS, weeks=WEEKS))
    raw_env.seed(7)
    norm_env = VecNormalize(VecMonitor(PatientVecEnv(N_ENVS, weeks=WEEKS)), training=False, norm_reward=False)
    norm_env.obs_rms = t.vecnorm.obs_rms.copy()
    norm_env.seed(7)
    mine, _ = evaluate_policy(policy, raw_env, n_eval_episodes=N_ENVS, return_episode_rewards=True)
    theirs, _ = evaluate_policy(t.model, norm_env, n_eval_episodes=N_ENVS, return_episode_rewards=True)
    np.testing.assert_allclose(mine, theirs, rtol=1e-6)


def test_export_without_normalization_feeds_raw_observations(tmp_path: Path) -> None:
    t = _trained("sac")
    path = _export(t, tmp_path / "raw", obs_rms=None)
    assert json.loads((path / MANIFEST_FILE).read_text())["normalization"] is None
    policy = load_policy(path)
    np.testing.assert_array_equal(policy.normalize(t.batch), t.batch.astype(np.float32))
    np.testing.assert_allclose(policy.predict(t.batch)[0], t.model.predict(t.batch, deterministic=True)[0], atol=1e-6)


# ------------------------------------------------------------------------------------------------ manifest
def test_manifest_records_what_rebuilds_and_identifies_the_policy(tmp_path: Path) -> None:
    t = _trained("ppo")
    config = {"algo": {"name": "ppo", "kwargs": {"n_steps": 32, "learning_rate": 3e-4}}, "seed": 0,
              "policy": {"net": [16, 16]}}
    before = datetime.now().astimezone() - timedelta(seconds=1)
    path = _export(t, tmp_path / "out", env={"id": "AdaptRx/Progression-v0", "weeks": WEEKS}, config=config,
                   evaluation={"mean_return": 1.25, "episodes": 8}, name="ppo-knee_oa.v1")
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST_FILE, WEIGHTS_FILE]
    text = (path / MANIFEST_FILE).read_text()
    m = json.loads(text)
    assert set(m) == MANIFEST_FIELDS
    assert "\n  " in text  # human-readable, indented
    assert (m["format"], m["format_version"], m["name"], m["algorithm"]) == (FORMAT, FORMAT_VERSION, "ppo-knee_oa.v1",
                                                                             "ppo")
    assert m["policy_class"] == "ActorCriticPolicy"
    kw = m["policy_kwargs"]
    assert kw["net_arch"] == [16, 16] and kw["activation_fn"] == "Tanh" and kw["ortho_init"] is True
    assert kw["features_extractor_class"] == "FlattenExtractor" and kw["optimizer_class"] == "Adam"
    assert not {"observation_space", "action_space", "lr_schedule"} & set(kw)
    box = t.vecnorm.observation_space
    assert m["observation_space"] == {"type": "Box", "shape": [37], "dtype": "float32", "low": box.low.tolist(),
                                      "high": box.high.tolist()}
    assert m["action_space"] == {"type": "Box", "shape": [3], "dtype": "float32", "low": [-1.0] * 3, "high": [1.0] * 3}
    assert m["feature_names"] == list(FEATURE_NAMES)
    rms = t.vecnorm.obs_rms
    norm = m["normalization"]
    np.testing.assert_array_equal(np.array(norm["mean"]), rms.mean)  # JSON floats round-trip float64 exactly
    np.testing.assert_array_equal(np.array(norm["var"]), rms.var)
    assert (norm["count"], norm["clip_obs"], norm["epsilon"]) == (rms.count, t.vecnorm.clip_obs, t.vecnorm.epsilon)
    assert m["env"] == {"id": "AdaptRx/Progression-v0", "weeks": WEEKS}
    assert m["config"] == config and m["config_hash"] == config_hash(config)
    assert m["evaluation"] == {"mean_return": 1.25, "episodes": 8}
    versions = m["versions"]
    assert set(versions) == {"adaptrx", "stable_baselines3", "sb3_contrib", "torch", "numpy", "gymnasium",
                             "safetensors", "python"}
    assert versions["torch"] == torch.__version__ and versions["numpy"] == np.__version__
    assert versions["adaptrx"] == adaptrx.__version__
    data = (path / WEIGHTS_FILE).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert m["weights"] == {"file": WEIGHTS_FILE, "sha256": sha, "bytes": len(data),
                            "tensors": len(t.model.policy.state_dict())}
    created = datetime.fromisoformat(m["created"])
    assert created.utcoffset() == timedelta(0) and before <= created <= datetime.now().astimezone()

    policy = load_policy(path)
    assert (policy.name, policy.sha256) == ("ppo-knee_oa.v1", sha)
    assert policy.policy_id == export.policy_id(m, data)
    assert len(policy.policy_id) == 64 and policy.label == f"ppo-knee_oa.v1@{policy.policy_id[:12]}"
    assert policy.feature_names == FEATURE_NAMES and policy.manifest == m
    assert load_policy(path / MANIFEST_FILE).sha256 == sha  # the manifest's path works too
    # evaluation numbers JSON cannot hold are stored as null; numpy values as plain numbers and lists
    path = _export(t, tmp_path / "nan", evaluation={"ci": np.array([np.nan, 2.0]), "n": np.int64(3), "x": np.inf})
    assert json.loads((path / MANIFEST_FILE).read_text())["evaluation"] == {"ci": [None, 2.0], "n": 3, "x": None}
    # the default name is the directory's
    assert load_policy(_export(t, tmp_path / "my_policy")).name == "my_policy"


@pytest.mark.parametrize(("case", "policy_class", "extra"), [
    ("recurrent_ppo", "RecurrentActorCriticPolicy", {"lstm_hidden_size": 16, "n_lstm_layers": 1, "shared_lstm": False,
                                                     "enable_critic_lstm": True, "lstm_kwargs": {}}),
    ("sac", "SACPolicy", {"n_critics": 2, "use_sde": False, "activation_fn": "ReLU"}),
    ("td3", "TD3Policy", {"n_critics": 2, "share_features_extractor": False}),
    ("a2c", "ActorCriticPolicy", {"optimizer_class": "RMSprop"}),
    ("ppo_discrete", "ActorCriticPolicy", {"net_arch": [16, 16]}),
])
def test_manifest_policy_kwargs_of_each_algorithm(case: str, policy_class: str, extra: dict[str, Any],
                                                  tmp_path: Path) -> None:
    m = json.loads((_export(_trained(case), tmp_path / case) / MANIFEST_FILE).read_text())
    assert m["policy_class"] == policy_class
    assert {k: m["policy_kwargs"][k] for k in extra} == extra
    if case == "ppo_discrete":
        assert m["action_space"] == {"type": "Discrete", "n": 12, "start": 0}


def test_config_hash_is_the_sha256_of_canonical_json_whatever_the_key_order() -> None:
    a = {"seed": 0, "algo": {"lr": 3e-4, "net": [64, 64], "name": "ppo"}, "env": {"weeks": 26}}
    b = {"env": {"weeks": 26}, "algo": {"name": "ppo", "net": (64, 64), "lr": 3e-4}, "seed": np.int64(0)}
    assert config_hash(a) == config_hash(b)
    canonical = '{"algo":{"lr":0.0003,"name":"ppo","net":[64,64]},"env":{"weeks":26},"seed":0}'
    assert config_hash(a) == hashlib.sha256(canonical.encode()).hexdigest()
    assert config_hash({**a, "seed": 1}) != config_hash(a)
    assert len(config_hash({})) == 64
    for bad in ({"x": object()}, {"x": float("nan")}, {1: 2}):
        with pytest.raises(ValueError, match="config"):
            config_hash(bad)


# ------------------------------------------------------------------------------------------------ tampering
def test_a_flipped_weight_byte_fails_the_sha256_check(ppo_dir: Path, tmp_path: Path) -> None:
    path = _copy(ppo_dir, tmp_path)
    data = bytearray((path / WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"policy\.safetensors: sha256"):
        load_policy(path)


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        for key in keys[:-1]:
            m = m[key]
        m[keys[-1]] = value

    return edit


MANIFEST_EDITS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "policy_class os.system": (_set("policy_class", value="os.system"), r"policy_class: unknown 'os\.system'"),
    "activation Exec": (_set("policy_kwargs", "activation_fn", value="Exec"), r"policy_kwargs\.activation_fn"),
    "dotted activation": (_set("policy_kwargs", "activation_fn", value="torch.nn.Tanh"), "activation_fn"),
    "features extractor": (_set("policy_kwargs", "features_extractor_class", value="NatureCNN"),
                           "features_extractor_class"),
    "optimizer": (_set("policy_kwargs", "optimizer_class", value="SGD"), "optimizer_class"),
    "unknown kwarg": (_set("policy_kwargs", "__reduce__", value="os.system"), r"policy_kwargs: unknown field"),
    "huge net": (_set("policy_kwargs", "net_arch", value=[10**6]), r"policy_kwargs\.net_arch\[0\]"),
    "net larger than weights": (_set("policy_kwargs", "net_arch", value=[4096, 4096]), "needs at least"),
    "bool as int": (_set("policy_kwargs", "ortho_init", value=1), "ortho_init"),
    "format_version 2": (_set("format_version", value=2), "format_version"),
    "format": (_set("format", value="sb3-zip"), "format"),
    "algorithm": (_set("algorithm", value="dqn"), "algorithm"),
    "algorithm vs class": (_set("algorithm", value="sac"), "policy_class"),
    "weights path": (_set("weights", "file", value="../policy.safetensors"), r"weights\.file"),
    "sha256 shape": (_set("weights", "sha256", value="abc"), r"weights\.sha256"),
    "weights size": (_set("weights", "bytes", value=1), r"policy\.safetensors: \d+ bytes"),
    "config hash": (_set("config_hash", value="0" * 64), "config_hash"),
    "observation shape": (_set("observation_space", "shape", value=[36]), r"observation_space\.low"),
    "observation Discrete": (_set("observation_space", "type", value="Discrete"), r"observation_space\.type"),
    "negative var": (lambda m: m["normalization"]["var"].__setitem__(0, -1.0), "normalization"),
    "feature names": (_set("feature_names", value=["a", "b"]), "feature_names"),
    "name": (_set("name", value="../../etc"), "name"),
    "unknown field": (_set("pickle", value="gASV"), r"unknown field\(s\) \['pickle'\]"),
    "missing field": (lambda m: m.pop("weights"), r"missing field\(s\) \['weights'\]"),
    "created": (_set("created", value="yesterday"), "created"),
}


@pytest.mark.parametrize("edit", list(MANIFEST_EDITS))
def test_a_manifest_outside_the_schema_is_refused_naming_the_field(edit: str, ppo_dir: Path, tmp_path: Path) -> None:
    path = _copy(ppo_dir, tmp_path)
    mutate, match = MANIFEST_EDITS[edit]
    _edit_manifest(path, mutate)
    with pytest.raises(ValueError, match=match):
        load_policy(path)


@pytest.mark.parametrize("text", ['{"format": "adaptrx-policy"', '{"format_version": NaN}',
                                  '{"format": 1, "format": 2}', "[" * 100_000, "\xff"])
def test_a_manifest_that_is_not_strict_json_is_refused(text: str, ppo_dir: Path, tmp_path: Path) -> None:
    path = _copy(ppo_dir, tmp_path)
    (path / MANIFEST_FILE).write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=r"manifest\.json: not valid JSON"):
        load_policy(path)


def test_the_policy_id_covers_every_byte_of_meaning_and_can_be_pinned(ppo_dir: Path, tmp_path: Path) -> None:
    """An edited manifest value (here the activation, which changes the actions) changes the id, so a pinned
    load refuses it; reformatting the manifest does not; a short or non-hex pin is an error."""
    original = load_policy(ppo_dir)
    assert load_policy(ppo_dir, expect_id=original.policy_id).policy_id == original.policy_id
    assert load_policy(ppo_dir, expect_id=original.policy_id[:8].upper()).policy_id == original.policy_id
    reformatted = _copy(ppo_dir, tmp_path / "reformatted")
    manifest = json.loads((reformatted / MANIFEST_FILE).read_text())
    (reformatted / MANIFEST_FILE).write_text(json.dumps(manifest, indent=4, sort_keys=True))
    assert load_policy(reformatted).policy_id == original.policy_id
    edited = _copy(ppo_dir, tmp_path / "edited")
    _edit_manifest(edited, lambda m: m["policy_kwargs"].update(activation_fn="GELU"))
    assert load_policy(edited).policy_id != original.policy_id
    with pytest.raises(ValueError, match=r"does not match the expected"):
        load_policy(edited, expect_id=original.policy_id[:12])
    for bad in ("abc", "xyz12345", original.policy_id + "0"):
        with pytest.raises(ValueError, match=r"must be 8-64 hex digits"):
            load_policy(ppo_dir, expect_id=bad)


def test_consistently_forged_weights_still_have_to_fit_the_architecture(ppo_dir: Path, tmp_path: Path) -> None:
    path = _copy(ppo_dir, tmp_path / "a")
    _rewrite_weights(path, lambda t: t.pop("value_net.bias"))
    with pytest.raises(ValueError, match=r"missing \['value_net\.bias'\]"):
        load_policy(path)
    path = _copy(ppo_dir, tmp_path / "b")
    _rewrite_weights(path, lambda t: t.update(extra=torch.zeros(2)))
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        load_policy(path)
    path = _copy(ppo_dir, tmp_path / "c")
    _rewrite_weights(path, lambda t: t.update({"action_net.weight": torch.zeros(3, 17)}))
    with pytest.raises(ValueError, match=r"action_net\.weight: expected torch\.float32 \(3, 16\)"):
        load_policy(path)
    path = _copy(ppo_dir, tmp_path / "d")
    _rewrite_weights(path, lambda t: t.update({"action_net.bias": t["action_net.bias"].double()}))
    with pytest.raises(ValueError, match=r"action_net\.bias: expected torch\.float32"):
        load_policy(path)
    for value, label in ((float("nan"), "nan"), (float("inf"), "inf")):  # a matching sha does not make them sane
        path = _copy(ppo_dir, tmp_path / label)
        _rewrite_weights(path, lambda t, v=value: t["action_net.bias"].__setitem__(0, v))
        with pytest.raises(ValueError, match=r"tensor 'action_net\.bias' holds non-finite values"):
            load_policy(path)
    path = _copy(ppo_dir, tmp_path / "e")
    (path / WEIGHTS_FILE).write_bytes(b"not safetensors")
    _edit_manifest(path, lambda m: m["weights"].update(sha256=hashlib.sha256(b"not safetensors").hexdigest(),
                                                       bytes=15))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load_policy(path)


def test_missing_files_and_size_limits(ppo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        load_policy(tmp_path / "no_such_dir")
    for name in (WEIGHTS_FILE, MANIFEST_FILE):
        path = _copy(ppo_dir, tmp_path / name)
        (path / name).unlink()
        with pytest.raises(FileNotFoundError, match=str(path / name).replace(".", r"\.")):
            load_policy(path)
    path = _copy(ppo_dir, tmp_path / "limits")
    monkeypatch.setattr(export, "MAX_MANIFEST_BYTES", 1000)
    with pytest.raises(ValueError, match=r"manifest\.json: larger than the 1000 byte limit"):
        load_policy(path)
    monkeypatch.undo()
    monkeypatch.setattr(export, "MAX_WEIGHTS_BYTES", 1000)
    with pytest.raises(ValueError, match=r"weights\.bytes"):
        load_policy(path)


# ------------------------------------------------------------------------------------------------ no pickle
@pytest.mark.parametrize("case", ["ppo", "recurrent_ppo", "sac"])
def test_export_load_and_predict_never_unpickle(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = _trained(case)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle / torch.load must not be used")

    class Refused(pickle.Unpickler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            refuse()

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load"), (torch.serialization, "load")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", Refused)
    with pytest.raises(AssertionError):
        pickle.loads(pickle.dumps(1))

    policy = load_policy(_export(t, tmp_path / case))
    actions, _ = policy.predict(t.batch)
    expected, _ = t.model.predict(t.vecnorm.normalize_obs(t.batch), deterministic=True)
    np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------ pickle-based files
class _Payload:
    """Unpickling this would run ``Path.touch`` on the marker file: proof that nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _refuse_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pickle / torch.load must not be used")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load"), (torch.serialization, "load")):
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("suffix", [".zip", ".pkl", ".pt", ".pth", ".joblib"])
def test_pickle_based_model_files_are_refused_unopened(suffix: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / f"model{suffix}"
    if suffix == ".zip":  # a real SB3 checkpoint (its "data" entry holds cloudpickled objects)
        _trained("ppo").model.save(path)
    elif suffix in (".pt", ".pth"):
        torch.save({"payload": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(marker)))
    _refuse_unpickling(monkeypatch)
    with pytest.raises(ValueError, match=r"pickle-based model file, not a policy directory.*never unpickles"):
        load_policy(path)
    # a directory holding only pickle-based files (e.g. an SB3 run folder) is refused the same way
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(path, folder / path.name)
    with pytest.raises(ValueError, match=rf"pickle-based model file\(s\) \['model\{suffix}'\] but no manifest\.json"):
        load_policy(folder)
    assert not marker.exists()


def test_a_policy_for_other_spaces_is_refused_naming_the_space(ppo_dir: Path) -> None:
    from gymnasium import spaces

    from adaptrx.envs.progression import env_spaces

    observation, action = env_spaces()
    policy = load_policy(ppo_dir, observation_space=observation, action_space=action, feature_names=FEATURE_NAMES)
    assert policy.name == "ppo"
    wider = spaces.Box(observation.low, observation.high * 2, dtype=np.float32)
    cases = {
        "observation_space": {"observation_space": wider},
        "action_space": {"action_space": env_spaces(discrete=True)[1]},
        "feature_names": {"feature_names": FEATURE_NAMES[::-1]},
    }
    for field, kwargs in cases.items():
        with pytest.raises(ValueError, match=rf"^{re.escape(str(ppo_dir))}: {field}: "):
            load_policy(ppo_dir, **kwargs)
    shorter = spaces.Box(observation.low[:-1], observation.high[:-1], dtype=np.float32)
    with pytest.raises(ValueError, match=r"observation_space: the policy 'ppo' was exported for Box\(shape=\(37,\), "
                                         r"dtype=float32\), but the env has Box\(shape=\(36,\), dtype=float32\)$"):
        load_policy(ppo_dir, observation_space=shorter)
    with pytest.raises(ValueError, match=r"bounds differ: high\[0\] is 2 in the env, 1 in the policy"):
        load_policy(ppo_dir, observation_space=wider)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("obs", [np.zeros(36), np.zeros((4, 36)), np.zeros((2, 2, 37)), np.zeros((0, 37)),
                                 np.full(37, np.nan), np.r_[np.zeros(36), np.inf], np.array(["a"] * 37), 3.0])
def test_bad_observations_are_refused_naming_obs(obs: Any, ppo_dir: Path) -> None:
    policy = load_policy(ppo_dir)
    with pytest.raises(ValueError, match="obs"):
        policy.predict(obs)
    with pytest.raises(ValueError, match="obs"):
        policy.normalize(obs)


def test_export_refuses_what_it_cannot_store_safely(tmp_path: Path) -> None:
    t = _trained("ppo")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="algorithm"):
        _export(t, out, algorithm="dqn")
    with pytest.raises(ValueError, match="algorithm"):
        _export(t, out, algorithm="sac")
    with pytest.raises(ValueError, match="obs_rms"):
        _export(t, out, obs_rms=type(t.vecnorm.obs_rms)(shape=(5,)))
    with pytest.raises(ValueError, match="feature_names"):
        _export(t, out, feature_names=("a", "b"))
    with pytest.raises(ValueError, match=r"config\.bad"):
        _export(t, out, config={"bad": object()})
    with pytest.raises(ValueError, match=r"env\.weeks"):
        _export(t, out, env={"weeks": float("inf")})
    with pytest.raises(ValueError, match="name"):
        _export(t, out, name="has space")
    model = PPO("MlpPolicy", t.vecnorm, policy_kwargs={"net_arch": [8], "activation_fn": torch.nn.Hardtanh},
                n_steps=8, batch_size=8, device="cpu")
    with pytest.raises(ValueError, match=r"policy_kwargs\.activation_fn: cannot export"):
        export_policy(model, out, algorithm="ppo")
    assert not out.exists()  # nothing is written when the export is refused


def test_source_date_epoch_makes_a_re_export_keep_its_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reproducible-builds convention: with SOURCE_DATE_EPOCH set, ``created`` is that time, so exporting the
    same weights and evaluation twice gives the same policy id; without it the time is now."""
    t = _trained("ppo")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796601600")
    first, second = _export(t, tmp_path / "a" / "p"), _export(t, tmp_path / "b" / "p")  # same name
    assert json.loads((first / MANIFEST_FILE).read_text())["created"] == "2026-12-07T00:00:00+00:00"
    assert load_policy(first).policy_id == load_policy(second).policy_id
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH"):
        _export(t, tmp_path / "c")
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert load_policy(_export(t, tmp_path / "d")).policy_id != load_policy(first).policy_id
