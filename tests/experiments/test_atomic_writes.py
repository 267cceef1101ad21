"""Atomic writes (adaptrx.common.atomic): an interrupted write never leaves a truncated table, report or policy that
reads as a complete one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from adaptrx.agents.export import MANIFEST_FILE, WEIGHTS_FILE, load_policy
from adaptrx.common import atomic

ROOT = Path(__file__).resolve().parents[2]


class Crash(Exception):
    """Stands for the process dying in the middle of a write."""


def test_replacing_keeps_the_old_file_until_the_new_one_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    atomic.write_text(path, "a,b\n1,2\n")
    with pytest.raises(Crash), atomic.replacing(path) as tmp:
        tmp.write_text("a,b\n3,")  # half a table
        raise Crash
    assert path.read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]  # no temporary file left behind
    with atomic.replacing(path) as tmp:
        assert tmp.suffix == ".csv" and tmp.parent == tmp_path  # same folder (rename is atomic), same suffix
        tmp.write_text("a,b\n3,4\n")
        assert path.read_text() == "a,b\n1,2\n"  # not visible before the block ends
    assert path.read_text() == "a,b\n3,4\n" and oct(path.stat().st_mode & 0o777) == "0o644"


def test_an_interrupted_trial_leaves_no_partial_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adaptrx.experiments.trial.app import write_tables

    table = pd.DataFrame({"policy": ["none"] * 1000, "pain_w12": range(1000)})
    write_tables(tmp_path, table.head(3))
    original = pd.DataFrame.to_parquet

    def dies_halfway(self: pd.DataFrame, path: Path, *args: object, **kwargs: object) -> None:
        original(self, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])  # truncated on disk ...
        raise Crash  # ... and the process dies

    monkeypatch.setattr(pd.DataFrame, "to_parquet", dies_halfway)
    with pytest.raises(Crash):
        write_tables(tmp_path, table)
    monkeypatch.undo()
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 3  # the previous complete table
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_interrupted_export_never_looks_like_a_valid_policy(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """export_policy writes the weights, then the manifest that vouches for them (sha256). Killed in between,
    the folder holds new weights and the old manifest: load_policy refuses it."""
    from adaptrx.agents import export

    shipped = ROOT / "agents" / "dagger-knee_oa-v0"
    out = Path(shutil.copytree(shipped, tmp_path / "policy"))
    policy = load_policy(out)
    real = atomic.write_bytes

    def crash_on_manifest(path: Path, data: bytes) -> None:
        if Path(path).name == MANIFEST_FILE:
            raise Crash
        real(path, data)

    model = _other_model()
    monkeypatch.setattr(export.atomic, "write_bytes", crash_on_manifest)
    with pytest.raises(Crash):
        export.export_policy(model, out, feature_names=list(policy.feature_names), algorithm="ppo", name="other")
    monkeypatch.undo()
    assert (out / WEIGHTS_FILE).read_bytes() != (shipped / WEIGHTS_FILE).read_bytes()
    with pytest.raises(ValueError, match="sha256"):
        load_policy(out)


def _other_model() -> object:
    """A small, freshly initialised PPO model (other weights than the shipped policy's)."""
    from stable_baselines3 import PPO

    from adaptrx.envs import PatientVecEnv

    return PPO("MlpPolicy", PatientVecEnv(2, weeks=4), n_steps=8, batch_size=16, device="cpu", seed=5,
               policy_kwargs={"net_arch": {"pi": [8], "vf": [8]}})
