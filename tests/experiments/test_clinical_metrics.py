"""Clinical metrics, trajectory and load-response figures on a small paired val cohort."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from adaptrx.envs.episodes import CohortEpisodes, EpisodeOutcomes
from adaptrx.envs.features import FEATURE_INDEX, FEATURE_NAMES, to_units
from adaptrx.experiments.clinical_metrics import (
    METRICS,
    clinical_metrics,
    reference_observation,
    response_curve,
    response_figure,
    trajectory_figure,
)
from adaptrx.experiments.trial.comparison import results_table
from adaptrx.patient import make_cohort
from adaptrx.protocols import get

WEEKS = 26
REF_WEEK = 4  # the reference observation: what the clinic sees after four weeks of pain monitoring


class Recorder:
    """Wraps a policy and keeps every observation it was shown, ``(weeks, n, n_features)``."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.name = policy.name
        self.obs: list[np.ndarray] = []

    def reset(self) -> None:
        self.policy.reset()
        self.obs = []

    def predict(self, obs: np.ndarray, **kwargs: Any) -> tuple[np.ndarray, Any]:
        self.obs.append(np.array(obs, copy=True))
        return self.policy.predict(obs, **kwargs)


class ConstantBox:
    """A stateless Box policy: always the same action."""

    def __init__(self, a0: float) -> None:
        self.a0 = a0

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        n = np.atleast_2d(obs).shape[0]
        return np.tile(np.array([self.a0, 0.2, -1.0], dtype=np.float32), (n, 1)), state


class DiscreteMoves:
    """A ProgressionDiscrete-v0-like policy: one move index per env."""

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        return np.zeros(np.atleast_2d(obs).shape[0], dtype=np.int64), state


@pytest.fixture(scope="module")
def trial() -> dict[str, Any]:
    cohort = make_cohort("knee_oa", 200, 0, "val")
    episodes = CohortEpisodes(cohort, seed=0, condition="knee_oa", split="val", weeks=WEEKS)
    recorder = Recorder(get("pain_monitoring"))
    results = {
        "none": episodes.run(get("none"), name="none"),
        "aggressive": episodes.run(get("aggressive"), name="aggressive"),
        "attention_control": episodes.run(get("attention_control"), name="attention_control"),
        "pain_monitoring": episodes.run(recorder, name="pain_monitoring"),
    }
    return {"results": results, "obs": np.stack(recorder.obs)}


def test_metrics_keys_order_and_finite(trial) -> None:
    for out in trial["results"].values():
        m = clinical_metrics(out)
        assert tuple(m) == METRICS
        assert all(type(v) is float and np.isfinite(v) for v in m.values())
        assert 0.0 <= m["responder_rate_w12"] <= 1.0
        assert 0.0 <= m["dropout_rate"] <= 1.0
        assert 0.0 <= m["pain_w12"] <= 10.0 and 0.0 <= m["pain_mean"] <= 10.0
        assert m["shield_interventions"] == 0.0  # no shield in these runs


def test_aggressive_harms_more_than_pain_monitoring(trial) -> None:
    agg = clinical_metrics(trial["results"]["aggressive"])
    pm = clinical_metrics(trial["results"]["pain_monitoring"])
    assert agg["flares_per_patient"] > 1.3 * pm["flares_per_patient"]
    assert agg["dropout_rate"] > pm["dropout_rate"] + 0.2
    assert agg["composite"] > pm["composite"] + 1.0
    # pain monitoring relieves pain at week 12 more than no treatment
    assert pm["pain_change_w12"] < clinical_metrics(trial["results"]["none"])["pain_change_w12"] - 0.3


def test_supervised_sessions_count_only_attended_supervised_delivery(trial) -> None:
    none = clinical_metrics(trial["results"]["none"])
    assert none["supervised_sessions"] == 0.0
    assert none["dropout_rate"] == 0.0 and none["capacity_change"] <= 0.05
    assert clinical_metrics(trial["results"]["pain_monitoring"])["supervised_sessions"] == 0.0  # home programme
    # attention control: 2 supervised contacts a week for 12 weeks, fewer when missed
    sup = clinical_metrics(trial["results"]["attention_control"])["supervised_sessions"]
    assert 5.0 < sup <= 24.0


def test_composite_is_the_documented_formula(trial) -> None:
    out: EpisodeOutcomes = trial["results"]["aggressive"]
    expected = np.array([
        out.pain[:, i].sum() / out.weeks + out.flares[:, i].sum() + (2.0 if out.dropout_week[i] > 0 else 0.0)
        for i in range(out.n)
    ])
    # one formula (clinical_metrics.composite_score) behind the results table's column and the metric
    np.testing.assert_allclose(results_table([out], "knee_oa")["composite"], expected, rtol=1e-12)
    assert clinical_metrics(out)["composite"] == pytest.approx(expected.mean())


def test_week_argument(trial) -> None:
    out = trial["results"]["pain_monitoring"]
    w5, w12 = clinical_metrics(out, week=5), clinical_metrics(out, week=12)
    assert w5["pain_w12"] == pytest.approx(out.pain[4].mean())
    assert w12["pain_w12"] == pytest.approx(out.pain[11].mean())
    assert w5["pain_w12"] != w12["pain_w12"]
    assert w5["responder_rate_w12"] != w12["responder_rate_w12"]
    assert w5["pain_mean"] == w12["pain_mean"]  # whole-episode metrics do not depend on the week
    assert clinical_metrics(out, week=WEEKS)["pain_w12"] == pytest.approx(out.pain[-1].mean())
    for bad in (0, WEEKS + 1, -1):
        with pytest.raises(ValueError, match="week"):
            clinical_metrics(out, week=bad)


@pytest.fixture(scope="module")
def reference(trial) -> tuple[np.ndarray, np.ndarray]:
    """The median observation after four weeks of pain monitoring, and the median weeks before it."""
    weekly = reference_observation(trial["obs"])
    assert weekly.shape == (WEEKS, len(FEATURE_NAMES)) and weekly.dtype == np.float32
    return weekly[REF_WEEK], weekly[:REF_WEEK]


def test_reference_is_a_typical_attended_settled_week(reference) -> None:
    ref, _ = reference
    u = to_units(ref)
    assert u["sessions_attended"] >= 1.0  # reports exist
    assert u["morning_change"] <= 0.0  # settled by the next morning
    assert u["flare_reported"] == 0.0
    assert 0.05 < u["load"] < 1.5 / 1.1  # room to progress by 10 %
    assert reference_observation(np.zeros((3, len(FEATURE_NAMES)))).shape == (len(FEATURE_NAMES),)


def test_pain_monitoring_response_progresses_when_painless_and_regresses_when_painful(reference) -> None:
    ref, history = reference
    policy = get("pain_monitoring")
    values, factor = response_curve(policy, ref, history=history)
    np.testing.assert_allclose(values, np.linspace(0.0, 10.0, 21))
    assert factor.shape == values.shape
    assert factor[0] > 1.0 and factor[0] == pytest.approx(1.10, abs=1e-5)  # progress +10 % at NRS 0
    assert factor[values == 9.0][0] < 1.0 and factor[values == 9.0][0] == pytest.approx(0.80, abs=1e-5)
    assert factor[values == 4.0][0] == pytest.approx(1.0, abs=1e-5)  # hold between 2 and 5
    assert np.all(np.diff(factor) <= 1e-9)  # monotone non-increasing in pain
    assert np.all((factor >= 0.5) & (factor <= 1.5))
    # without the history the protocol answers as in week 1: the start load, whatever the reports
    _, fresh = response_curve(policy, ref)
    assert np.ptp(fresh) < 1e-6
    # an unsettled morning stops progression
    unsettled = ref.copy()
    unsettled[FEATURE_INDEX["morning_change"]] = 2.0 / 10.0
    _, f2 = response_curve(policy, unsettled, history=history)
    assert f2.max() < 1.0


def test_response_curve_other_features_and_stateless_policies(reference) -> None:
    ref, _ = reference
    values, factor = response_curve(ConstantBox(0.4), ref, feature="rpe", values=np.array([1.0, 5.0, 8.0]))
    np.testing.assert_allclose(values, [1.0, 5.0, 8.0])
    np.testing.assert_allclose(factor, 1.2, rtol=1e-6)
    _, clipped = response_curve(ConstantBox(3.0), ref)
    np.testing.assert_allclose(clipped, 1.5)  # actions are clipped to [-1, 1] as by the env
    values, _ = response_curve(ConstantBox(0.0), ref, feature="morning_change")
    assert values[0] == -10.0 and values[-1] == 10.0  # default: the feature's whole range in clinical units


def test_response_curve_errors(reference) -> None:
    ref, _ = reference
    with pytest.raises(ValueError, match="pain_at_night"):
        response_curve(get("pain_monitoring"), ref, feature="pain_at_night")
    with pytest.raises(ValueError, match="discrete"):
        response_curve(DiscreteMoves(), ref)
    with pytest.raises(ValueError, match="reference_obs"):
        response_curve(ConstantBox(0.0), ref[:5])


def test_trajectory_figure_panels_and_png(trial, tmp_path) -> None:
    out = trial["results"]["aggressive"]
    stayed = [int(i) for i in np.flatnonzero(out.dropout_week == 0)[:1]]
    dropped = [int(i) for i in np.flatnonzero(out.dropout_week > 0)[:4]]
    patients = stayed + dropped  # 5 panels: a 2 x 4 grid with 3 empty cells removed
    fig = trajectory_figure(out, patients=patients, title="aggressive")
    assert len(fig.axes) == 2 * len(patients)  # pain axis + load twin per patient
    path = tmp_path / "trajectories.png"
    fig.savefig(path)
    assert path.stat().st_size > 10_000
    assert len(trajectory_figure(out, patients=range(8)).axes) == 16
    assert len(trajectory_figure(out, patients=[1]).axes) == 2
    with pytest.raises(ValueError, match="patients"):
        trajectory_figure(out, patients=range(9))
    with pytest.raises(ValueError, match="patients"):
        trajectory_figure(out, patients=[out.n])


def test_response_figure_axes_and_png(reference, tmp_path) -> None:
    ref, history = reference
    curves = {
        "constant x1.1": response_curve(ConstantBox(0.2), ref),
        "pain_monitoring": response_curve(get("pain_monitoring"), ref, history=history),
    }
    fig = response_figure(curves)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 4  # two curves, the hold line, the pain threshold
    path = tmp_path / "response.png"
    fig.savefig(path)
    assert path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="curves"):
        response_figure({})


def test_load_follows_patient_ranks_loads_against_the_envelope(trial) -> None:
    from scipy.stats import spearmanr

    from adaptrx.experiments.clinical_metrics import load_follows_patient

    out = trial["results"]["pain_monitoring"]
    envelope = make_cohort("knee_oa", 200, 0, "val")["envelope"].to_numpy()
    inside = out.in_programme[4:16]
    keep = inside.any(axis=0)
    mean = (out.load[4:16] * inside).sum(axis=0)[keep] / inside.sum(axis=0)[keep]
    rho = load_follows_patient(out, envelope)
    assert rho == pytest.approx(spearmanr(mean, envelope[keep]).statistic)
    # a load that is the envelope itself ranks perfectly; reversed, perfectly wrong
    exact = copy.deepcopy(out)
    exact.load = np.tile(envelope, (out.weeks, 1))
    exact.in_programme = np.ones_like(out.in_programme)
    assert load_follows_patient(exact, envelope) == pytest.approx(1.0)
    assert load_follows_patient(exact, -envelope) == pytest.approx(-1.0)
    # a fixed protocol (the same load for everyone) does not follow anyone
    exact.load = np.ones_like(exact.load)
    assert load_follows_patient(exact, envelope) == 0.0
    with pytest.raises(ValueError, match="envelope"):
        load_follows_patient(out, envelope[:5])
    with pytest.raises(ValueError, match="weeks"):
        load_follows_patient(out, envelope, weeks=(10, 99))
