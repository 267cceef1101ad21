"""Shipped policies in numpy: the same actions as torch for every MLP algorithm, the same checks, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adaptrx.agents import load_policy
from adaptrx.agents.numpy_policy import load_numpy_policy

from .test_export import CASES, _export, _trained

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("case", [c for c in CASES if c != "recurrent_ppo"])
def test_actions_equal_torchs(case: str, tmp_path: Path) -> None:
    """Deterministic actions of the numpy actor equal SB3/torch's within 1e-6 on raw observations (single and
    batched, inside and far outside the training distribution, where the normalisation clips)."""
    directory = _export(_trained(case), tmp_path / case)
    torch_policy, numpy_policy = load_policy(directory), load_numpy_policy(directory)
    assert numpy_policy.policy_id == torch_policy.policy_id and numpy_policy.label == torch_policy.label
    rng = np.random.default_rng(0)
    low, high = torch_policy.observation_space.low, torch_policy.observation_space.high
    obs = np.vstack([rng.uniform(low, high, size=(64, len(low))), rng.normal(0, 50, size=(8, len(low)))])
    expected, _ = torch_policy.predict(obs, deterministic=True)
    got, _ = numpy_policy.predict(obs)
    assert got.dtype == np.asarray(expected).dtype and got.shape == np.shape(expected)
    if np.issubdtype(got.dtype, np.integer):
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    single, _ = numpy_policy.predict(obs[0])
    np.testing.assert_allclose(single, np.asarray(expected)[0], atol=1e-6, rtol=0)


def test_the_shipped_agents_act_the_same_in_numpy() -> None:
    rng = np.random.default_rng(1)
    for directory in sorted(ROOT.glob("agents/dagger-*-v0")):
        a, b = load_policy(directory), load_numpy_policy(directory)
        obs = rng.uniform(a.observation_space.low, a.observation_space.high, size=(256, a.observation_space.shape[0]))
        np.testing.assert_allclose(b.predict(obs)[0], a.predict(obs, deterministic=True)[0], atol=1e-6, rtol=0)


def test_same_checks_as_the_torch_loader(tmp_path: Path) -> None:
    directory = _export(_trained("ppo"), tmp_path / "ppo")
    with pytest.raises(ValueError, match="expect"):
        load_numpy_policy(directory, expect_id="0" * 16)
    data = bytearray((directory / "policy.safetensors").read_bytes())
    data[-1] ^= 1
    (directory / "policy.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_numpy_policy(directory)
    recurrent = _export(_trained("recurrent_ppo"), tmp_path / "lstm")
    with pytest.raises(ValueError, match=r"RecurrentActorCriticPolicy.*load_policy"):
        load_numpy_policy(recurrent)
    manifest = json.loads((recurrent / "manifest.json").read_text())
    assert manifest["algorithm"] == "recurrent_ppo"


def test_loading_and_acting_import_neither_torch_nor_sb3() -> None:
    code = ("import sys, numpy as np; from adaptrx.agents.numpy_policy import load_numpy_policy; "
            "p = load_numpy_policy('agents/dagger-knee_oa-v0'); p.predict(np.full(37, 0.5)); "
            "print(sorted(m for m in ('torch', 'stable_baselines3', 'sb3_contrib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
