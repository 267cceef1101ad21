"""Patient fitting: the particle filter recovers virtual patients better than the prior does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from adaptrx import protocols
from adaptrx.clinic.fitting import fit_patient, systematic_resample, weighted_quantiles
from adaptrx.clinic.history import parse_history
from adaptrx.clinic.synthetic import simulate_history
from adaptrx.patient import make_cohort

PARAMS = ("sensitization", "fear", "capacity")


@pytest.fixture(scope="module")
def recovery() -> dict[str, np.ndarray]:
    """40 test-split patients, 8 weeks of ACSM progression each, fitted with 2000 particles."""
    cohort = make_cohort("knee_oa", 40, seed=11, split="test")
    post, prior, truth, pain, pain_truth = [], [], [], [], []
    for i, row in cohort.iterrows():
        doc, batch = simulate_history(row.to_dict(), protocols.get("acsm"), 8, seed=i)
        fit = fit_patient(parse_history(doc), n_particles=2000, seed=1)
        table = fit.posterior(PARAMS)
        post.append(table["mean"].to_numpy())
        prior.append(table["prior_mean"].to_numpy())
        truth.append(row[list(PARAMS)].to_numpy(dtype=float))
        pain.append(float(np.sum(fit.weights * fit.particles.state.pain_recent)))
        pain_truth.append(float(batch.sim.state.pain_recent[0]))
    return {"post": np.array(post), "prior": np.array(prior), "truth": np.array(truth), "pain": np.array(pain),
            "pain_truth": np.array(pain_truth)}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "max_ratio", "min_r"), [("sensitization", 0.8, 0.6), ("fear", 0.8, 0.7),
                                                           ("capacity", 0.97, 0.3)])
def test_posterior_beats_prior(recovery: dict[str, np.ndarray], name: str, max_ratio: float, min_r: float) -> None:
    j = PARAMS.index(name)
    truth = recovery["truth"][:, j]
    rmse = np.sqrt(np.mean((recovery["post"][:, j] - truth) ** 2))
    rmse_prior = np.sqrt(np.mean((recovery["prior"][:, j] - truth) ** 2))
    r = np.corrcoef(recovery["post"][:, j], truth)[0, 1]
    assert rmse < max_ratio * rmse_prior, (name, rmse, rmse_prior)
    assert r > min_r, (name, r)


def test_current_pain_level_is_recovered(recovery: dict[str, np.ndarray]) -> None:
    truth = recovery["pain_truth"]
    rmse = np.sqrt(np.mean((recovery["pain"] - truth) ** 2))
    assert rmse < 0.4 * truth.std()  # the population mean would give rmse = sd
    assert np.corrcoef(recovery["pain"], truth)[0, 1] > 0.9


def test_fit_is_deterministic_and_reports_diagnostics(document: dict[str, Any]) -> None:
    h = parse_history(document)
    a, b = fit_patient(h, n_particles=500, seed=3), fit_patient(h, n_particles=500, seed=3)
    assert np.array_equal(a.weights, b.weights)
    assert a.posterior().equals(b.posterior())
    c = fit_patient(h, n_particles=500, seed=4)
    assert not np.array_equal(a.particles.cohort["sensitization"], c.particles.cohort["sensitization"])
    assert len(a.ess) == h.n_weeks + 1 and all(0 < e <= 500 * 10 for e in a.ess)
    assert np.isclose(a.weights.sum(), 1.0) and a.unique_particles >= 5
    assert list(a.imputed["week"]) == list(range(h.n_weeks))
    assert a.imputed["function"].between(0, 100).all() and a.imputed["diary_pain"].dropna().between(0, 10).all()
    state = a.state()
    assert (state["q10"] <= state["q90"]).all() and state.loc["pain", "mean"] <= 10


def test_fit_arguments_are_checked(document: dict[str, Any]) -> None:
    h = parse_history(document)
    for kwargs, field in (({"n_particles": 10}, "n_particles"), ({"pool": 0}, "pool"), ({"shrink": 0.2}, "shrink"),
                          ({"resample_threshold": 0.0}, "resample_threshold")):
        with pytest.raises(ValueError, match=field):
            fit_patient(h, **kwargs)


def test_resampling_helpers() -> None:
    rng = np.random.default_rng(0)
    w = np.array([0.5, 0.25, 0.25, 0.0])
    index = systematic_resample(w, 400, rng)
    counts = np.bincount(index, minlength=4)
    assert counts.tolist() == [200, 100, 100, 0]  # systematic: floor or ceil of m w
    x = np.arange(10.0)
    assert weighted_quantiles(x, np.full(10, 0.1), (0.1, 0.5, 0.9)) == (0.0, 4.0, 8.0)
