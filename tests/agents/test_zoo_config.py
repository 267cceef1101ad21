"""Reading RL Zoo3 hyperparameter files: the shipped config, schedules, and nothing executed."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from adaptrx.agents.zoo import zoo_hyperparams

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "zoo" / "ppo.yml"


@pytest.mark.parametrize("env_id", ["AdaptRx/Progression-v0", "AdaptRx/ProgressionDiscrete-v0"])
def test_shipped_config_translates_to_ppo_arguments(env_id: str) -> None:
    entry = zoo_hyperparams(CONFIG, env_id)
    assert entry.policy == "MlpPolicy" and entry.n_envs == 16 and entry.n_timesteps >= 100_000
    assert not {"n_envs", "n_timesteps", "policy", "normalize"} & set(entry.kwargs)
    assert entry.kwargs["policy_kwargs"] == {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": nn.Tanh}
    assert 0.9 < entry.kwargs["gamma"] < 1.0


def test_linear_schedules_and_rejected_expressions(tmp_path: Path) -> None:
    path = tmp_path / "ppo.yml"
    path.write_text("E-v0:\n  n_timesteps: !!float 1e4\n  learning_rate: lin_0.001\n"
                    "  policy_kwargs: \"dict(net_arch=[32], activation_fn=nn.ReLU)\"\n")
    entry = zoo_hyperparams(path, "E-v0")
    assert entry.kwargs["learning_rate"](1.0) == pytest.approx(1e-3)
    assert entry.kwargs["learning_rate"](0.25) == pytest.approx(2.5e-4)
    assert entry.kwargs["policy_kwargs"]["activation_fn"] is nn.ReLU
    for bad in ("__import__('os').system('true')", "dict(a=nn.NotAModule)", "[1, 2]", "dict(**x)"):
        path.write_text(f"E-v0:\n  n_timesteps: 10\n  policy_kwargs: \"{bad}\"\n")
        with pytest.raises(ValueError, match="policy_kwargs"):
            zoo_hyperparams(path, "E-v0")
    with pytest.raises(ValueError, match="Other-v0"):
        zoo_hyperparams(path, "Other-v0")
