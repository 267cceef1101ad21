"""The committed trial tables regenerate: rerunning a committed trial's config on its first patients gives the
committed rows of every policy (shipped agent, oracle and belief planner included).

Cohorts are prefix-stable in ``n`` and every patient meets its own noise streams, so the first ``N`` patients
of the 2000 come out the same in a trial of ``N``. This is the behaviour guard for refactoring the episode
loop, the planners and the comparison path: a change that moves one patient's dropout, flare or session count
fails here. Integer and boolean columns must match exactly; continuous ones within
``cross_machine.PATIENT_ABS`` (a float32 policy network differs in its last bits from one CPU to the next).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cross_machine import PATIENT_ABS

ROOT = Path(__file__).resolve().parents[2]
TRIALS = sorted((ROOT / "experiments").glob("*_trial/test"))
#: Patients regenerated per committed trial.
N = 40
#: Columns relative to the whole cohort (terciles of the 2000 patients), not properties of one patient's run.
COHORT_RELATIVE = ("sensitization_tercile",)


def _rerun(run_dir: Path, out: Path) -> pd.DataFrame:
    config = json.loads((run_dir / "trial.json").read_text())["config"]
    code = "import sys; from adaptrx.experiments.trial.app import main; main(sys.argv[1:])"
    args = ["preset=paper", f"cohort.condition={config['cohort']['condition']}",
            f"cohort.split={config['cohort']['split']}", f"cohort.n={N}", "stats.n_boot=100", "stats.n_perm=1000",
            "n_jobs=1", "output.figures=false", "output.tensorboard=false", "output.report=false", "progress=false",
            f"hydra.run.dir={out}"]
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((out / "trial.json").read_text())["config"]["policies"] == config["policies"]
    return pd.read_parquet(out / "results.parquet")


@pytest.mark.slow
@pytest.mark.parametrize("run_dir", TRIALS, ids=[p.parent.name for p in TRIALS])
def test_committed_trial_rows_regenerate(run_dir: Path, tmp_path: Path) -> None:
    committed = pd.read_parquet(run_dir / "results.parquet")
    fresh = _rerun(run_dir, tmp_path)
    ids = fresh["patient_id"].unique()
    assert len(ids) == N
    old = committed[committed["patient_id"].isin(ids)].reset_index(drop=True)
    assert len(old) == len(fresh), "the committed trial lacks some of the regenerated rows"
    key = ["policy", "patient_id"]
    old, fresh = (f.sort_values(key).reset_index(drop=True) for f in (old, fresh))
    assert list(fresh.columns) == list(old.columns)
    for column in old.columns.drop(list(COHORT_RELATIVE)):
        a, b = old[column], fresh[column]
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=0, atol=PATIENT_ABS, equal_nan=True,
                                       err_msg=f"{run_dir.parent.name}: column {column}")
        else:
            assert (a.astype(str) == b.astype(str)).all(), f"{run_dir.parent.name}: column {column} differs"
