"""adaptrx-train: every algorithm trains and exports, TensorBoard carries the clinical tags, resume continues,
bad config values exit with code 2 naming the field."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module

from adaptrx.agents import load_policy
from adaptrx.experiments.clinical_metrics import METRICS
from adaptrx.experiments.train.app import check_overrides
from adaptrx.experiments.train.callbacks import HPARAM_METRICS
from adaptrx.experiments.train.config import ConfigError
from adaptrx.experiments.train.training import SB3Policy, train

#: A run small enough for a test: 16 val patients, no test comparison, two evaluations.
TINY = ["budget.n_envs=4", "budget.eval_patients=16", "budget.test_patients=0", "budget.checkpoint_freq=256",
        "policy/net=small", "progress=false"]
OFF_POLICY_TINY = ["algo.kwargs.learning_starts=64", "algo.kwargs.buffer_size=2000", "algo.kwargs.batch_size=32"]


def _cfg(*overrides: str):
    with initialize_config_module("adaptrx.configs", version_base="1.3"):
        return compose("train", overrides=[*TINY, *overrides])


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "extra"), [
    ("ppo", ["algo.kwargs.n_steps=32", "algo.kwargs.batch_size=64"]),
    ("a2c", []),
    ("sac", OFF_POLICY_TINY),
    ("td3", OFF_POLICY_TINY),
    ("recurrent_ppo", ["algo.kwargs.n_steps=32", "algo.kwargs.batch_size=64"]),
])
def test_every_algorithm_trains_evaluates_and_exports(tmp_path: Path, algo: str, extra: list[str]) -> None:
    cfg = _cfg(f"algo={algo}", "budget.total_timesteps=512", "budget.eval_freq=256", *extra)
    result = train(cfg, tmp_path)
    assert result.timesteps >= 512
    rows = (tmp_path / "evaluations.csv").read_text().strip().splitlines()
    assert rows[0].split(",") == ["step", *METRICS] and len(rows) == 3  # header + evaluations at 256 and 512
    for name in ("policy.safetensors", "manifest.json", "card.md"):
        assert (result.policy_dir / name).stat().st_size > 0, name
    manifest = json.loads((result.policy_dir / "manifest.json").read_text())
    assert manifest["algorithm"] == algo and manifest["env"]["condition"] == "knee_oa"
    assert manifest["evaluation"]["val"]["return"] == pytest.approx(result.val_metrics["return"])
    # the exported policy acts as the best checkpoint does (no pickle on this path)
    policy = load_policy(result.policy_dir)
    cls = {"ppo": "PPO", "a2c": "A2C", "sac": "SAC", "td3": "TD3", "recurrent_ppo": "RecurrentPPO"}[algo]
    module = "sb3_contrib" if algo == "recurrent_ppo" else "stable_baselines3"
    # (SB3's own loader, which unpickles, as the reference: this is the test's own checkpoint)
    model = getattr(__import__(module), cls).load(tmp_path / "checkpoints" / "best" / "model.zip", device="cpu")
    with np.load(tmp_path / "checkpoints" / "best" / "obs_rms.npz") as stats:
        mean, var = stats["mean"], stats["var"]
    obs = np.random.default_rng(0).uniform(0, 1, (32, len(policy.feature_names))).astype(np.float32)
    norm = np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)
    expected, _ = model.predict(norm, deterministic=True)
    actual, _ = policy.predict(obs)
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    assert "## Training" in (result.policy_dir / "card.md").read_text()


def test_discrete_moves_and_shield(tmp_path: Path) -> None:
    cfg = _cfg("env.discrete=true", "env.shield=true", "budget.total_timesteps=256", "budget.eval_freq=256",
               "algo.kwargs.n_steps=32", "algo.kwargs.batch_size=64")
    result = train(cfg, tmp_path)
    actions, _ = load_policy(result.policy_dir).predict(np.full((5, 37), 0.2, dtype=np.float32))
    assert actions.shape == (5,) and actions.dtype.kind in "iu"
    assert np.isfinite(result.val_metrics["shield_interventions"])


def test_tensorboard_has_clinical_metrics_figures_hparams_and_layout(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = _cfg("budget.total_timesteps=512", "budget.eval_freq=256", "algo.kwargs.n_steps=32",
               "algo.kwargs.batch_size=64")
    train(cfg, tmp_path)
    event_dirs = sorted({p.parent for p in (tmp_path / "tb").rglob("events.out.tfevents.*")})
    assert event_dirs
    acc = EventAccumulator(str(event_dirs[0]), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for metric in METRICS:
        events = acc.Scalars(f"clinical/{metric}")
        assert len(events) == 2, metric  # one per evaluation
        assert all(math.isfinite(e.value) for e in events), metric
    assert "train/value_loss" in tags["scalars"]  # SB3's own losses are there too
    # SB3's standard tags, so an SB3 user's dashboards are not empty
    assert {"rollout/ep_rew_mean", "rollout/ep_len_mean", "eval/mean_reward", "eval/mean_ep_length"} <= set(
        tags["scalars"])
    returns = [e.value for e in acc.Scalars("clinical/return")]
    assert [e.value for e in acc.Scalars("eval/mean_reward")] == pytest.approx(returns)
    assert all(1 <= e.value <= 26 for e in acc.Scalars("eval/mean_ep_length"))
    assert {"figures/trajectories", "figures/load_response"} <= set(tags["images"])
    assert "custom_scalars" in acc.PluginTagToContent("custom_scalars") or acc.PluginTagToContent("custom_scalars")
    assert acc.PluginTagToContent("hparams")
    # the HParams metrics are the selected (exported) checkpoint's, written once under selected/*
    from tensorboard.plugins.hparams import plugin_data_pb2

    experiment = plugin_data_pb2.HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/experiment"])
    assert {m.name.tag for m in experiment.experiment.metric_infos} == {f"selected/{m}" for m in HPARAM_METRICS}
    best_step = int(acc.Scalars("selected/step")[-1].value)
    best = next(e.value for e in acc.Scalars("clinical/return") if e.step == best_step)
    assert [e.value for e in acc.Scalars("selected/return")] == pytest.approx([best])
    assert best == pytest.approx(max(returns))
    # pain at week 12 of untrained-ish policies is a plausible NRS value
    assert 0.0 < acc.Scalars("clinical/pain_w12")[-1].value < 10.0


@pytest.mark.slow
def test_resume_continues_the_latest_run(tmp_path: Path) -> None:
    base = tmp_path / "runs"
    first, second = base / "2026-01-01_00-00-00", base / "2026-01-01_00-10-00"
    common = ["budget.eval_freq=256", "algo.kwargs.n_steps=32", "algo.kwargs.batch_size=64"]
    train(_cfg("budget.total_timesteps=512", *common), first)
    result = train(_cfg("budget.total_timesteps=1024", "resume=true", *common), second)
    assert result.timesteps == 1024
    steps = [int(line.split(",")[0]) for line in (second / "evaluations.csv").read_text().splitlines()[1:]]
    assert steps == [256, 512, 768, 1024]  # the first run's evaluations are carried over
    with pytest.raises(ValueError, match="resume"):
        train(_cfg("budget.total_timesteps=512", "resume=true", *common), tmp_path / "empty" / "run")


def test_live_policy_wrapper_normalises_like_vecnormalize(tmp_path: Path) -> None:
    from adaptrx.experiments.train.training import _unwrap_config as unwrap
    from adaptrx.experiments.train.training import make_model, make_train_env

    cfg = unwrap(_cfg())
    env, norm = make_train_env(cfg)
    model = make_model("ppo", env, {"n_steps": 32, "batch_size": 64}, {"pi": [8], "vf": [8]})
    model.learn(128)
    obs = np.random.default_rng(1).uniform(0, 1, (8, 37)).astype(np.float32)
    a, _ = SB3Policy(model, norm).predict(obs)
    b, _ = model.predict(norm.normalize_obs(obs), deterministic=True)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("override", "field"), [
    ("env.weeks=5", "env.weeks"),
    ("algo=foo", "algo/foo"),
    ("budget.n_envs=abc", "budget.n_envs"),
    ("budget.n_envs=0", "budget.n_envs"),
    ("env.condition=mars", "condition"),
    ("policy.net.activation=exec", "policy.net.activation"),
    ("algo=sac env.discrete=true", "env.discrete"),
])
def test_bad_config_names_the_field(override: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        check_overrides(override.split())


@pytest.mark.slow
def test_cli_bad_value_exits_2_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "adaptrx.experiments.train.app", "budget.eval_patients=-1"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "budget.eval_patients" in proc.stderr and "Traceback" not in proc.stderr


def test_reward_config_defaults_are_the_env_defaults() -> None:
    from adaptrx.envs.reward import RewardWeights
    from adaptrx.experiments.train.config import RewardConfig

    assert RewardConfig().weights() == RewardWeights().as_dict()
    with pytest.raises(ConfigError, match=r"reward\.flare"):
        check_overrides(["env.reward.flare=-1"])


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "extra"), [("ppo", ["algo.kwargs.n_steps=32", "algo.kwargs.batch_size=64"]),
                                             ("sac", OFF_POLICY_TINY)])
def test_a_run_killed_mid_training_resumes_and_finishes(tmp_path: Path, algo: str, extra: list[str]) -> None:
    """SIGKILL the training process once it has checkpointed; ``resume_from`` continues from the last complete
    checkpoint (tensors, counters, replay buffer; nothing unpickled) and finishes with a valid policy."""
    import signal
    import time

    from adaptrx.experiments.train import checkpoints

    run_dir = tmp_path / "killed"
    overrides = [*TINY, f"algo={algo}", *extra, "budget.total_timesteps=100000", "budget.eval_freq=512",
                 "budget.checkpoint_freq=128"]
    code = "import sys; from adaptrx.experiments.train.app import main; main(sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, *overrides, f"hydra.run.dir={run_dir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            found = checkpoints.find(run_dir / "checkpoints", "last")
            if found is not None and checkpoints.read_state(found)["num_timesteps"] >= 1024:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint at 1024 steps within 240 s")
        proc.send_signal(signal.SIGKILL)  # no clean-up: possibly in the middle of writing a checkpoint
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "policy").exists()
    src = checkpoints.find(run_dir / "checkpoints", "last")
    assert src is not None  # the kill left a complete checkpoint (last, or the .last.old a swap left)
    done = checkpoints.read_state(src)["num_timesteps"]
    total = done + 1024
    result = train(_cfg(f"algo={algo}", *extra, f"budget.total_timesteps={total}", "budget.eval_freq=512",
                        f"resume_from={run_dir}"), tmp_path / "resumed")
    assert result.timesteps == total
    policy = load_policy(result.policy_dir)
    obs = np.random.default_rng(0).uniform(0, 1, (8, len(policy.feature_names))).astype(np.float32)
    actions, _ = policy.predict(obs)
    assert actions.shape == (8, 3) and np.isfinite(actions).all()
    rows = (tmp_path / "resumed" / "evaluations.csv").read_text().splitlines()[1:]
    steps = [int(line.split(",")[0]) for line in rows]
    assert steps[0] == 512 and steps[-1] == total and steps == sorted(steps)  # the killed run's evaluations carried


def test_a_checkpoint_swap_interrupted_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    """A kill between the two renames of a checkpoint swap leaves only ``.last.old``; a half-written or
    tampered checkpoint is never taken for a complete one."""
    import torch
    from stable_baselines3 import PPO

    from adaptrx.envs import PatientVecEnv
    from adaptrx.experiments.train import checkpoints

    model = PPO("MlpPolicy", PatientVecEnv(2, weeks=4), n_steps=8, batch_size=16, device="cpu", seed=0)
    ckpt = tmp_path / "checkpoints"
    folder = checkpoints.save(model, None, ckpt, "last", {"history": []})
    assert checkpoints.find(ckpt, "last") == folder and checkpoints.complete(folder)
    folder.rename(ckpt / ".last.old")  # killed after "last -> .last.old", before "new -> last"
    assert checkpoints.find(ckpt, "last") == ckpt / ".last.old"
    (ckpt / ".last.old" / "model.zip").write_bytes(b"PK\x03\x04 truncated")
    assert checkpoints.find(ckpt, "last") is None
    fresh = PPO("MlpPolicy", PatientVecEnv(2, weeks=4), n_steps=8, batch_size=16, device="cpu", seed=1)
    saved = checkpoints.save(model, None, ckpt, "last", {"history": []})
    loaded = checkpoints.load_into(fresh, saved)
    for key, value in model.policy.state_dict().items():
        assert torch.equal(value, loaded.policy.state_dict()[key]), key


def test_summary_says_when_the_selected_policy_is_not_the_last(tmp_path: Path) -> None:
    from adaptrx.experiments.train.training import TrainResult

    def row(step: int, ret: float, dropout: float) -> dict[str, float]:
        return {"step": step, "return": ret, "dropout_rate": dropout}

    history = [row(100, 3.0, 0.4), row(200, 4.1, 0.31), row(300, 2.5, 0.56), row(400, 2.9, 0.5)]
    metrics = {"return": 4.1, "pain_w12": 4.0, "flares_per_patient": 2.0, "dropout_rate": 0.31}
    result = TrainResult(tmp_path, tmp_path, tmp_path, 400, 60.0, 200, metrics, history=history)
    note = result.decline()
    assert "step 200" in note and "2.90" in note and "lowest 2.50" in note and "4.10" in note and "31 % -> 50 %" in note
    assert "NOTE:" in result.summary_line()
    last = TrainResult(tmp_path, tmp_path, tmp_path, 400, 60.0, 400, metrics, history=history)
    assert last.decline() == "" and "NOTE:" not in last.summary_line()


def test_programme_end_is_terminal_for_sb3() -> None:
    """The programme's last week reaches SB3 without TimeLimit.truncated (no bootstrapped value past it); a
    dropout is terminal anyway."""
    from adaptrx.envs import PatientVecEnv
    from adaptrx.envs.programme_end import ProgrammeEnd

    env = ProgrammeEnd(PatientVecEnv(3, weeks=12))
    env.seed(0)
    env.reset()
    ended = 0
    for _ in range(12):
        _, _, dones, infos = env.step(np.zeros((3, 3), dtype=np.float32))
        assert not any("TimeLimit.truncated" in info for info in infos)
        ended += int(dones.sum())
    assert env.programme_ends >= 1 and ended >= 3  # every env's first episode ended by week 12
    raw = PatientVecEnv(3, weeks=12)
    raw.seed(0)
    raw.reset()
    flags = []
    for _ in range(12):
        _, _, dones, infos = raw.step(np.zeros((3, 3), dtype=np.float32))
        flags += [info["TimeLimit.truncated"] for info in infos if "TimeLimit.truncated" in info]
    assert sum(flags) == env.programme_ends  # exactly the time-limit ends were made terminal
