"""RL Zoo3 trains PPO on ``AdaptRx/Progression-v0`` from ``configs/zoo/ppo.yml`` with ``--gym-packages adaptrx``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_rl_zoo_trains_and_saves_a_model(tmp_path: Path) -> None:
    log_folder = tmp_path / "logs"
    cmd = [
        sys.executable, "-m", "rl_zoo3.train",
        "--algo", "ppo",
        "--env", "AdaptRx/Progression-v0",
        "--gym-packages", "adaptrx",
        "--conf-file", "configs/zoo/ppo.yml",
        "-n", "5000",
        "-f", str(log_folder),
        "--seed", "0",
        "--eval-freq", "-1",  # no EvalCallback (and no eval env)
        "--save-freq", "-1",  # no checkpoints, only the final model
        "--device", "cpu",
        "--num-threads", "1",
        "--log-interval", "-2",  # no per-rollout tables in the output
    ]
    # Nothing may come from the network (no Hugging Face Hub, no Weights & Biases); --track is not passed.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, output

    models = list(log_folder.glob("ppo/AdaptRx-Progression-v0_*/AdaptRx-Progression-v0.zip"))
    assert len(models) == 1, f"no saved model under {log_folder}: {sorted(log_folder.rglob('*'))}\n{output}"
    assert models[0].stat().st_size > 0
    config = models[0].parent / "AdaptRx-Progression-v0" / "config.yml"
    assert config.is_file(), "the zoo saves the hyperparameters it used next to the model"
