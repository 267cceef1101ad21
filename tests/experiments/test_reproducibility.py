"""Reproducibility: one config + seed gives bit-identical trial tables in two separate processes, and with the
oracle's patients run in 1 or 2 joblib worker processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agents" / "dagger-knee_oa-v0"
TABLES = ("results.csv", "weekly.parquet", "dataset.parquet", "summary.csv", "differences.csv", "subgroups.csv")


def _trial(out: Path, n_jobs: int) -> None:
    code = "import sys; from adaptrx.experiments.trial.app import main; main(sys.argv[1:])"
    args = [f"policies=[none,pain_monitoring,population_best,{AGENT},oracle]", "cohort.n=24", "n_seeds=2",
            "seed=5", "cohort.split=ood", "oracle.horizon=4", "oracle.replicates=1", "stats.n_boot=200",
            f"n_jobs={n_jobs}", "output.dataset=true", "output.figures=false", "output.tensorboard=false",
            "output.report=false", "progress=false", f"hydra.run.dir={out}"]
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.slow
def test_trial_tables_are_bit_identical_across_processes_and_workers(tmp_path: Path) -> None:
    runs = {"first": (tmp_path / "a", 1), "second process": (tmp_path / "b", 1), "2 workers": (tmp_path / "c", 2)}
    for out, n_jobs in runs.values():
        _trial(out, n_jobs)
    reference = runs["first"][0]
    results = pd.read_parquet(reference / "results.parquet")
    assert set(results["policy"]) == {"none", "pain_monitoring", "population_best", "dagger-knee_oa-v0", "oracle"}
    assert len(results) == 5 * 24 * 2 and results["seed"].nunique() == 2
    for label, (out, _) in runs.items():
        for name in TABLES:
            assert (out / name).read_bytes() == (reference / name).read_bytes(), f"{label}: {name} differs"
        pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), results, check_exact=True)
