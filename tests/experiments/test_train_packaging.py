"""adaptrx-train's config tree works from an installed wheel, not only from a clone (``pip install -e .``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose_job(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = ("import adaptrx, sys; print('ADAPTRX', adaptrx.__file__); "
            "from adaptrx.experiments.train.app import main; "
            "main(['--cfg', 'job', 'experiment=quick', 'env=fibromyalgia'])")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


@pytest.mark.slow
def test_configs_from_the_clone(tmp_path: Path) -> None:
    proc = _compose_job(tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the experiment (algo override and budget), the env group and the algo group's file all composed
    assert "rounds: 5" in proc.stdout and "name: dagger" in proc.stdout and "eval_patients: 300" in proc.stdout
    assert "modality: aerobic" in proc.stdout and "teacher: oracle" in proc.stdout


@pytest.mark.slow
def test_configs_from_an_installed_wheel(tmp_path: Path) -> None:
    """Build a wheel from a copy of the sources, install it into a private folder and compose from there."""
    src = tmp_path / "src_copy"
    for name in ("src", "configs", "envs"):
        shutil.copytree(ROOT / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.png", "calibration"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", str(src), "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("adaptrx-*.whl"))
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = _compose_job(tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    assert f"ADAPTRX {site}" in proc.stdout  # the wheel's copy, not the clone's
    assert "rounds: 5" in proc.stdout and "name: dagger" in proc.stdout and "modality: aerobic" in proc.stdout
