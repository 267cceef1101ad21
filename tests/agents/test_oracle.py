"""The oracle (true-parameter MPC planner) and the batch copies it plans on (EpisodeBatch/PatientSimulator.take)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecMonitor

import adaptrx  # noqa: F401
from adaptrx.envs import PatientVecEnv
from adaptrx.envs import compiled_step as engine
from adaptrx.envs.episode_engine import EpisodeBatch
from adaptrx.envs.progression import ProgressionEnv
from adaptrx.patient import PatientSimulator, make_cohort
from adaptrx.protocols.base import Policy
from adaptrx.protocols.oracle import HOLD_ACTION, OpenLoopPlans, OraclePolicy, planning_keys, ramp_load

CONSTANT = np.array([0.0, 0.2, -1.0], dtype=np.float32)  # hold the load, 3 sessions/week at home


def _assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Recursive exact equality of snapshots (dicts, lists, arrays, scalars; NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == np.asarray(b).dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b or (a != a and b != b), where


def _episode_return(env: ProgressionEnv, seed: int, act: Any) -> float:
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total += reward
        done = terminated or truncated
    return total


# ------------------------------------------------------------------------------------------ take()
def test_take_with_the_original_keys_replays_the_batch_bitwise() -> None:
    vec = PatientVecEnv(6, weeks=26)
    vec.seed(3)
    vec.reset()
    rng = np.random.default_rng(0)
    for _ in range(4):
        vec.step(rng.uniform(-1, 1, (6, 3)).astype(np.float32))
    b = vec.batch
    index = np.array([2, 5, 5, 0, 2])
    copies = [b.take(index), EpisodeBatch.from_state(vec.get_state()["batch"], b.config, b.constants).take(index)]
    before = b.get_state()
    for t in range(8):
        actions = rng.uniform(-1, 1, (6, 3))
        original = b.step_actions(actions, discrete=False)
        for copy in copies:
            step = copy.step_actions(actions[index], discrete=False)
            np.testing.assert_array_equal(step.work, original.work[:, index], err_msg=f"week {t}")
            np.testing.assert_array_equal(step.obs, original.obs[index])
            np.testing.assert_array_equal(copy.E, b.E[:, index])
        if b.done.any():
            break
    # the copies are independent: stepping them did not touch the original's past snapshot's arrays
    assert EpisodeBatch.from_state(before, b.config, b.constants).week[0] == 4
    assert [p["patient_id"] for p in copies[0].patients] == [b.patients[i]["patient_id"] for i in index]
    assert copies[0].patients[1] is copies[0].patients[2]  # one copied row per distinct patient
    assert copies[0].patients[1] is not b.patients[5]


def test_take_with_other_keys_meets_other_noise_and_validates() -> None:
    env = ProgressionEnv(weeks=12)
    env.reset(seed=4)
    b = env.batch
    same, other = b.take([0, 0]), b.take([0, 0], keys=np.array([1, 2], dtype=np.uint64))
    np.testing.assert_array_equal(other.keys, [1, 2])
    a = np.tile([0.2, 0.6, -1.0], (2, 1))
    s1, s2 = same.step_actions(a, False), other.step_actions(a, False)
    np.testing.assert_array_equal(s1.work[:, 0], s1.work[:, 1])
    assert not np.array_equal(s2.work[:, 0], s2.work[:, 1], equal_nan=True)
    for bad in ([], [1], [[0]], [-1]):
        with pytest.raises(ValueError, match="index"):
            b.take(np.array(bad, dtype=np.int64))
    with pytest.raises(ValueError, match="keys"):
        b.take([0, 0], keys=np.array([1], dtype=np.uint64))
    with pytest.raises(ValueError, match="state"):
        EpisodeBatch.from_state({"patients": []}, b.config)


def test_simulator_take_copies_state_and_cohort_rows_after_replace() -> None:
    cohort = make_cohort("knee_oa", 5, seed=1)
    sim = PatientSimulator(cohort, seed=2)
    sim.step_week(0.4, 3, 0)
    new = make_cohort("knee_oa", 1, seed=9)
    sim.replace(np.array([3]), new, np.array([77], dtype=np.uint64))
    copy = sim.take(np.array([3, 0, 3]))
    assert copy.n == 3 and list(copy.cohort["patient_id"]) == [new["patient_id"][0], cohort["patient_id"][0],
                                                                 new["patient_id"][0]]
    np.testing.assert_array_equal(copy.noise.keys, sim.noise.keys[[3, 0, 3]])
    for name, value in copy.get_state().items():
        np.testing.assert_array_equal(value, sim.get_state()[name][[3, 0, 3]], err_msg=name)
    out_copy = copy.step_week(0.5, 2, 1)
    out_sim = sim.step_week(0.5, 2, 1)
    np.testing.assert_array_equal(out_copy.pain, out_sim.pain[[3, 0, 3]])
    assert list(sim.cohort["patient_id"])[3] == new["patient_id"][0]  # the original's table is still right
    with pytest.raises(ValueError, match="index"):
        sim.take(np.array([5]))


# --------------------------------------------------------------------------------------- the oracle
def test_predict_leaves_the_env_state_unchanged_and_the_env_steps_identically() -> None:
    env = gym.make("AdaptRx/Progression-v0", weeks=12)  # gym-wrapped: the oracle reads env.unwrapped
    twin = ProgressionEnv(weeks=12)
    obs, _ = env.reset(seed=7)
    for _ in range(3):
        obs, *_ = env.step(CONSTANT)
    policy = OraclePolicy(env)
    assert isinstance(policy, Policy) and policy.n_candidates == 106
    before = env.unwrapped.get_state()
    action, state = policy.predict(obs)
    assert action.shape == (3,) and action.dtype == np.float32 and state is None
    _assert_same(env.unwrapped.get_state(), before)
    twin.reset()
    twin.set_state(before)
    for _ in range(9):
        a = env.step(action)
        b = twin.step(action)
        _assert_same(list(a), list(b), "step")
        if a[2] or a[3]:
            break


def test_oracle_is_deterministic_and_plans_on_fresh_common_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    vec = PatientVecEnv(3, weeks=12)
    vec.seed(11)
    obs = vec.reset()
    vec.step(np.tile(CONSTANT, (3, 1)))
    obs, *_ = vec.step(np.tile(CONSTANT, (3, 1)))
    true_keys = vec.batch.keys.copy()
    seen: list[np.ndarray] = []
    take = EpisodeBatch.take

    def spy(self: EpisodeBatch, index: np.ndarray, keys: np.ndarray | None = None) -> EpisodeBatch:
        seen.append(np.asarray(keys).copy())
        return take(self, index, keys)

    monkeypatch.setattr(EpisodeBatch, "take", spy)
    policy = OraclePolicy(vec, replicates=3)
    a1, _ = policy.predict(obs)
    values = policy.last_values.copy()
    a2, _ = OraclePolicy(vec, replicates=3).predict(obs)
    np.testing.assert_array_equal(a1, a2)
    keys = seen[0].reshape(3, policy.n_candidates, 3)  # rows in (patient, candidate, replicate) order
    assert not np.isin(keys, true_keys).any()  # never the patients' true noise
    assert (keys == keys[:, :1]).all()  # common random numbers across candidates
    assert len(np.unique(keys[:, 0])) == 9  # distinct replicates and patients
    np.testing.assert_array_equal(_last_values(vec, obs, replicates=3), values)
    assert not np.array_equal(_last_values(vec, obs, replicates=3, seed=1), values)


def _last_values(env: Any, obs: np.ndarray, **params: Any) -> np.ndarray:
    policy = OraclePolicy(env, **params)
    policy.predict(obs)
    assert policy.last_values is not None
    return policy.last_values


def test_planning_keys_depend_on_seed_week_and_replicate() -> None:
    true = np.array([5, 2**63 + 7], dtype=np.uint64)
    k = planning_keys(0, true, np.array([0, 0]), 4)
    assert k.shape == (2, 4) and k.dtype == np.uint64 and len(np.unique(k)) == 8
    assert not np.isin(k, true).any()
    np.testing.assert_array_equal(k, planning_keys(0, true, np.array([0, 0]), 4))
    assert not np.isin(planning_keys(1, true, np.array([0, 0]), 4), k).any()
    assert not np.isin(planning_keys(0, true, np.array([1, 1]), 4), k).any()


def test_planned_value_is_the_env_return_when_given_the_true_noise() -> None:
    """The clairvoyant diagnostic plans on the patients' true keys: the value of the plan 'hold 0.3, 3 home
    sessions' at week 0 is then exactly the env's return of the constant action (same reward, dropout term
    included)."""
    env = ProgressionEnv(weeks=12)
    dropouts = 0
    for seed in range(12):
        obs, _ = env.reset(seed=seed)
        policy = OraclePolicy(env, loads=(0.3,), sessions=(3,), deliveries=("home",), include_rest=False,
                              replicates=2, clairvoyant=True)
        action, _ = policy.predict(obs)
        np.testing.assert_array_equal(action, CONSTANT)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(CONSTANT)
            total += reward
            done = terminated or truncated
        dropouts += terminated
        assert policy.last_values[0, 0] == pytest.approx(total, rel=0, abs=1e-12)
    assert dropouts > 0  # the dropout term was exercised


def test_finite_horizon_covering_the_episode_gives_the_same_values_and_chunking_is_invisible() -> None:
    vec = PatientVecEnv(8, weeks=10)
    vec.seed(5)
    obs = vec.reset()
    for _ in range(3):
        obs, *_ = vec.step(np.tile([0.3, 0.6, -1.0], (8, 1)).astype(np.float32))
    full = OraclePolicy(vec)
    a_full, _ = full.predict(obs)
    long = OraclePolicy(vec, horizon=104)  # dropout tails by stepping instead of the env's terminal term
    a_long, _ = long.predict(obs)
    np.testing.assert_allclose(long.last_values, full.last_values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a_long, a_full)
    chunked = OraclePolicy(vec, max_batch=37)
    np.testing.assert_array_equal(chunked.predict(obs)[0], a_full)
    np.testing.assert_array_equal(chunked.last_values, full.last_values)
    short = OraclePolicy(vec, horizon=2)
    assert short.predict(obs)[0].shape == (8, 3)
    assert np.isfinite(short.last_values).all() and not np.allclose(short.last_values, full.last_values)


def test_done_and_dropped_out_patients_get_the_hold_action() -> None:
    vec = PatientVecEnv(4, weeks=12)
    vec.seed(0)
    obs = vec.reset()
    vec.batch.sim.state.dropped_out[1] = 1.0  # what a paired-trial runner keeps stepping
    vec.batch.E[engine.E_DONE, 2] = 1.0
    policy = OraclePolicy(vec)
    actions, _ = policy.predict(obs)
    np.testing.assert_array_equal(actions[1], HOLD_ACTION)
    np.testing.assert_array_equal(actions[2], HOLD_ACTION)
    assert np.isnan(policy.last_values[[1, 2]]).all() and np.isfinite(policy.last_values[[0, 3]]).all()
    unreset = ProgressionEnv()
    np.testing.assert_array_equal(OraclePolicy(unreset).predict(np.zeros(len(obs[0]), np.float32))[0], HOLD_ACTION)


def test_oracle_beats_a_constant_protocol_and_random_actions_on_the_same_patients() -> None:
    """30 train patients, 12-week episodes, common random numbers (same seeds). Measured: the oracle's mean
    return is ~1.4 higher than constant (SE ~0.13) and ~1.3 higher than random, on every patient."""
    env = ProgressionEnv(weeks=12)
    policy = OraclePolicy(env)
    rng = np.random.default_rng(123)
    seeds = range(30)
    oracle = np.array([_episode_return(env, s, lambda o: policy.predict(o)[0]) for s in seeds])
    constant = np.array([_episode_return(env, s, lambda o: CONSTANT) for s in seeds])
    random = np.array([_episode_return(env, s, lambda o: rng.uniform(-1, 1, 3).astype(np.float32)) for s in seeds])
    for other in (constant, random):
        gain = oracle - other
        assert gain.mean() > 0.5  # ~0.04 reward/week/patient; several SEs above 0
        assert (gain > 0).mean() >= 0.9


def test_oracle_runs_under_sb3_evaluate_policy_on_the_vec_env() -> None:
    def evaluate(policy_of: Any) -> float:
        vec = VecMonitor(PatientVecEnv(4, weeks=8))
        vec.seed(21)
        mean, _ = evaluate_policy(policy_of(vec), vec, n_eval_episodes=8, deterministic=True)
        return mean

    class Constant(Policy):
        def predict(self, obs: np.ndarray, state: Any = None, episode_start: Any = None,
                    deterministic: bool = True) -> tuple[np.ndarray, Any]:
            return np.tile(CONSTANT, (len(obs), 1)), state

    oracle = evaluate(OraclePolicy)
    assert np.isfinite(oracle)
    assert oracle > evaluate(lambda vec: Constant())


def test_rejects_discrete_envs_bad_envs_and_bad_parameters() -> None:
    with pytest.raises(ValueError, match="Discrete"):
        OraclePolicy(gym.make("AdaptRx/ProgressionDiscrete-v0"))
    with pytest.raises(ValueError, match="Discrete"):
        OraclePolicy(PatientVecEnv(2, discrete=True))
    with pytest.raises(ValueError, match="env"):
        OraclePolicy(object())
    env = ProgressionEnv(weeks=4)
    bad = [("loads", ()), ("loads", (0.01,)), ("loads", (0.5, 0.5)), ("loads", "0.5"), ("sessions", (0,)),
           ("sessions", (2.5,)), ("deliveries", ("clinic",)), ("include_rest", 1), ("ramp", 0.0), ("ramp", 0.6),
           ("replicates", 0), ("replicates", True), ("horizon", 0), ("seed", -1), ("max_batch", 0)]
    for name, value in bad:
        with pytest.raises(ValueError, match=name):
            OraclePolicy(env, **{name: value})
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="obs"):
        OraclePolicy(env).predict(np.stack([obs, obs]))
    assert OraclePolicy(env, replicates=2).params()["replicates"] == 2


def test_belief_planner_plans_on_particles_not_on_the_truth() -> None:
    """The belief planner's actions do not change when the true patients' hidden parameters and latent state
    are replaced (it reads the belief filter, never the truth), and it needs an env with beliefs."""
    from adaptrx.envs import CohortEpisodes
    from adaptrx.patient.simulator import PARAM_COLUMNS
    from adaptrx.protocols import get
    from adaptrx.protocols.oracle import BeliefPlanner

    cohort = make_cohort("knee_oa", 6, 4, "val")
    with pytest.raises(ValueError, match="belief"):
        BeliefPlanner(CohortEpisodes(cohort, seed=0, weeks=8))
    episodes = CohortEpisodes(cohort, seed=0, weeks=8, belief=True)
    obs = episodes.reset()
    protocol = get("pain_monitoring")
    for _ in range(3):  # a few weeks of records for the filter
        a, _ = protocol.predict(obs)
        obs = episodes.batch.step_actions(a, discrete=False).obs
    planner = BeliefPlanner(episodes, replicates=2, horizon=3)
    first, _ = planner.predict(obs)
    again, _ = planner.predict(obs)
    np.testing.assert_array_equal(first, again)
    P, S, _, _ = episodes.batch.sim.kernel_arrays()
    for name in ("envelope", "sensitization", "adaptation_gain", "flare_hazard"):
        P[int(PARAM_COLUMNS[name])] *= 1.7
    S[:] = S[:, ::-1]  # the patients' latent states swapped around
    S[:, :] = np.where(np.isfinite(S), S, 0.0)
    episodes.batch.sim.state.dropped_out[:] = 0.0
    swapped, _ = planner.predict(obs)
    np.testing.assert_array_equal(first, swapped)
    assert first.shape == (6, 3) and np.isfinite(first).all()


def test_open_loop_plans_ramp_toward_their_targets() -> None:
    """Each row's load climbs by at most the ramp, falls by at most half, holds at NaN; sessions and delivery are
    kept. With a batch the exact last load is read from it; from the observation the same plan to float32
    precision."""
    last = np.array([0.3, 0.3, 1.0, 0.4])
    target = np.array([1.0, 0.32, 0.2, np.nan])
    np.testing.assert_allclose(ramp_load(last, target, 0.2), [0.36, 0.32, 0.5, 0.4])
    vec = PatientVecEnv(4, weeks=8)
    vec.seed(1)
    obs = vec.reset()
    b = vec.batch
    plans = OpenLoopPlans(target, np.array([1, 2, 3, 5]), np.array([0, 1, 2, 0]), ramp=0.2, batch=b)
    from_batch, _ = plans.predict(obs)
    from_obs, _ = OpenLoopPlans(target, np.array([1, 2, 3, 5]), np.array([0, 1, 2, 0]), ramp=0.2).predict(obs)
    np.testing.assert_allclose(from_batch, from_obs, atol=1e-5)
    step = b.step_actions(from_batch, discrete=False)
    np.testing.assert_allclose(step.load, ramp_load(np.full(4, 0.3), target, 0.2), rtol=1e-6)
    np.testing.assert_array_equal(step.sessions, [1, 2, 3, 5])
    np.testing.assert_array_equal(step.delivery, [0, 1, 2, 0])
    single, _ = OpenLoopPlans(1.0, 3, 2).predict(obs[0])
    assert single.shape == (3,)
