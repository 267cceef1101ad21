"""DAgger (adaptrx.agents.dagger): settings are checked by name, the numpy actor copy acts as the torch policy,
labels are the teacher's on in-programme weeks and do not depend on the number of workers, the regression
learns the teacher, and ``adaptrx-train algo=dagger`` runs, logs, exports and refuses what it cannot do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from stable_baselines3 import PPO

from adaptrx.agents import load_policy
from adaptrx.agents.dagger import (
    ActorSnapshot,
    DaggerSettings,
    actor_parameters,
    fit_actor,
    label_round,
)
from adaptrx.agents.factory import make_model
from adaptrx.envs import CohortEpisodes, PatientVecEnv
from adaptrx.experiments.train.config import ConfigError, register_schema, validate
from adaptrx.experiments.train.training import train
from adaptrx.patient import make_cohort
from adaptrx.protocols.oracle import OraclePolicy

ENV = {"condition": "knee_oa", "split": "train", "weeks": 26}


def _model(activation: str = "tanh") -> PPO:
    env = PatientVecEnv(2, condition="knee_oa")
    return make_model("dagger", env, {"rounds": 3}, {"pi": [32, 32], "vf": [16], "activation": activation})


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"rounds": 0}, "algo.kwargs.rounds"),
    ({"beta": 1.5}, "algo.kwargs.beta"),
    ({"episodes": 2.5}, "algo.kwargs.episodes"),
    ({"teacher_horizon": 0}, "algo.kwargs.teacher_horizon"),
    ({"n_steps": 64}, "algo.kwargs.n_steps"),
])
def test_settings_name_the_bad_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        DaggerSettings.from_kwargs(kwargs)


def test_teacher_share_decays_from_one() -> None:
    s = DaggerSettings(beta=0.5)
    assert [s.teacher_share(r) for r in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert DaggerSettings(beta=0.0).teacher_share(1) == 0.0


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "silu"])
def test_numpy_actor_acts_as_the_torch_policy(activation: str) -> None:
    model = _model(activation)
    rng = np.random.default_rng(0)
    mean, var = rng.uniform(0, 0.5, 37), rng.uniform(0.01, 0.2, 37)
    obs = rng.uniform(0, 1, (64, 37)).astype(np.float32)
    snapshot = ActorSnapshot.of(model.policy, mean, var)
    z = np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)
    expected, _ = model.policy.predict(z, deterministic=True)
    np.testing.assert_allclose(snapshot.predict(obs), expected, atol=1e-5)


@pytest.mark.slow
def test_labels_are_the_teachers_and_do_not_depend_on_workers() -> None:
    cohort = make_cohort("knee_oa", 30, 7, "train")
    settings = DaggerSettings(teacher_replicates=1, n_jobs=1)
    model = _model()
    learner = ActorSnapshot.of(model.policy, np.zeros(37), np.ones(37))
    one = label_round(cohort, 3, ENV, "oracle", settings, learner, share=0.5)
    two = label_round(cohort, 3, ENV, "oracle", DaggerSettings(teacher_replicates=1, n_jobs=2), learner, share=0.5)
    for a, b in ((one.obs, two.obs), (one.actions, two.actions), (one.returns, two.returns)):
        np.testing.assert_array_equal(a, b)
    # one label per in-programme patient-week
    assert len(one.obs) == one.lengths.sum() and one.lengths.max() == 26 and len(one.returns) == 30
    # round 0 (teacher only): the labels are exactly the oracle's own episode
    teacher_only = label_round(cohort.iloc[:10], 3, ENV, "oracle", settings, None, share=1.0)
    episodes = CohortEpisodes(cohort.iloc[:10], seed=3, **ENV)
    oracle = episodes.run(OraclePolicy(episodes, replicates=1, seed=3), record=True)
    t = oracle.transitions
    assert t is not None
    mask = oracle.in_programme
    np.testing.assert_array_equal(teacher_only.actions, t.actions[mask])
    np.testing.assert_allclose(teacher_only.returns, oracle.returns)


@pytest.mark.slow
def test_regression_learns_a_teacher_function() -> None:
    """The actor fits a smooth function of the observation far better than its best constant."""
    model = _model()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 37)).astype(np.float32)
    y = np.tanh(np.stack([x[:, 0] - x[:, 1], 0.5 * x[:, 2], x[:, 3] * x[:, 4] / 2], axis=1)).astype(np.float32)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(actor_parameters(model.policy), lr=3e-3)
    loss = fit_actor(model.policy, optimizer, x[:3000], y[:3000], epochs=40, batch_size=128, rng=rng)
    predicted, _ = model.policy.predict(x[3000:], deterministic=True)
    held_out = float(np.mean((predicted - y[3000:]) ** 2))
    constant = float(np.mean((y[3000:] - y[:3000].mean(axis=0)) ** 2))
    assert loss < 0.2 * constant and held_out < 0.25 * constant


def _cfg(*overrides: str):
    register_schema()
    with initialize_config_module("adaptrx.configs", version_base="1.3"):
        return compose("train", overrides=[
            "algo=dagger", "algo.kwargs.rounds=2", "algo.kwargs.episodes=24", "algo.kwargs.teacher_replicates=1",
            "algo.kwargs.n_jobs=1", "budget.eval_patients=16", "budget.test_patients=0", "policy/net=small",
            "progress=false", *overrides])


@pytest.mark.slow
def test_train_app_distils_logs_and_exports(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(_cfg("budget.test_patients=20", "budget.n_jobs=1"), tmp_path)
    rows = (tmp_path / "evaluations.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + one evaluation per round
    manifest = json.loads((result.policy_dir / "manifest.json").read_text())
    assert manifest["algorithm"] == "dagger" and manifest["config"]["algo"]["teacher"] == "oracle"
    policy = load_policy(result.policy_dir)
    actions, _ = policy.predict(np.full((3, 37), 0.3, dtype=np.float32))
    assert actions.shape == (3, 3) and np.isfinite(actions).all()
    assert 24 * 2 * 10 < result.timesteps <= 24 * 2 * 26  # labelled in-programme patient-weeks
    events = [p for p in (tmp_path / "tb").rglob("events.out.tfevents.*")]
    tags: set[str] = set()
    texts: set[str] = set()
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        texts |= set(acc.Tags()["tensors"])
    for tag in ("rollout/ep_rew_mean", "rollout/ep_len_mean", "train/loss", "eval/mean_reward",
                "dagger/teacher_share", "clinical/return", "test/return_vs_population_best", "test/gap_closed",
                "test/agent_return", "test/load_envelope_spearman"):
        assert tag in tags, tag
    # the test comparison's tables as TensorBoard text
    assert {"test/standing/text_summary", "test/differences/text_summary"} <= texts, texts
    # the test comparison includes the oracle, and its return is the agent's reference ceiling
    summary = result.test["summary"].set_index("policy")
    assert "oracle" in summary.index and "gap_closed" in result.test["numbers"]


@pytest.mark.parametrize(("overrides", "field"), [
    (["algo.teacher=clairvoyant"], "algo.teacher"),
    (["env.discrete=true"], "env.discrete"),
    (["resume=true"], "resume"),
    (["env.normalize_obs=false"], "env.normalize_obs"),
    (["algo.kwargs.epochs=0"], "algo.kwargs.epochs"),
])
def test_config_refuses_what_dagger_cannot_do(overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        validate(_cfg(*overrides))


@pytest.mark.slow
def test_belief_agent_runs_in_trials_and_the_clinic_and_is_refused_without_beliefs(tmp_path: Path) -> None:
    """A DAgger student with belief features (teacher: the belief planner) exports its feature names; trials
    run it on belief episodes next to the belief planner; the clinic feeds it the same filter's features from a
    session log; an env without beliefs refuses it."""
    from adaptrx.agents.export import check_spaces
    from adaptrx.clinic import recommend
    from adaptrx.clinic.history import parse_history
    from adaptrx.envs.belief import BELIEF_FEATURES
    from adaptrx.envs.features import FEATURE_NAMES
    from adaptrx.envs.progression import env_spaces
    from adaptrx.experiments.trial.app import run

    result = train(_cfg("env.belief=true", "algo.teacher=belief_planner", "algo.kwargs.rounds=1",
                        "algo.kwargs.episodes=8", "algo.kwargs.teacher_horizon=2"), tmp_path / "run")
    policy = load_policy(result.policy_dir)
    assert policy.feature_names == FEATURE_NAMES + BELIEF_FEATURES
    with pytest.raises(ValueError, match="feature_names: the policy reads the belief features"):
        check_spaces(policy, *env_spaces(False), feature_names=FEATURE_NAMES)
    with initialize_config_module("adaptrx.configs", version_base="1.3"):
        cfg = compose("trial", overrides=["cohort.n=12", "stats.n_boot=100", "progress=false", "weeks=12",
                                          f"policies=[population_best,belief_planner,{result.policy_dir}]",
                                          "belief_planner.replicates=2", "belief_planner.horizon=2"])
    out = run(cfg, tmp_path / "trial")
    assert set(out.results["policy"]) == {"population_best", "belief_planner", "dagger-knee_oa-s0"}
    assert np.isfinite(out.results["return"]).all()
    document = json.loads((Path(__file__).resolve().parents[2] / "experiments" / "clinic_examples"
                           / "after_flare.json").read_text())
    rec = recommend(parse_history(document), policy=result.policy_dir, n_particles=500, horizon=4).to_dict()
    assert rec["policy"]["kind"] == "trained" and 1 <= rec["prescription"]["sessions"] <= 5
