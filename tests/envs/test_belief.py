"""Belief features (adaptrx.envs.belief): the env contract (``belief=True`` adds ``belief_*`` features and
changes nothing else), per-patient determinism independent of the batch, and a filter that learns."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from scipy.stats import spearmanr

import adaptrx  # noqa: F401
from adaptrx.envs import CohortEpisodes, PatientVecEnv
from adaptrx.envs.belief import BELIEF_FEATURES, BeliefFilter, grouped_systematic
from adaptrx.envs.features import FEATURE_NAMES
from adaptrx.patient import make_cohort
from adaptrx.protocols import get


def test_single_env_adds_named_features_and_changes_nothing_else() -> None:
    plain = gym.make("AdaptRx/Progression-v0")
    env = gym.make("AdaptRx/Progression-v0", belief=True)
    assert env.unwrapped.feature_names == FEATURE_NAMES + BELIEF_FEATURES
    assert {"belief_envelope_mean", "belief_envelope_sd"} <= set(env.unwrapped.feature_names)
    assert env.observation_space.shape == (len(FEATURE_NAMES) + len(BELIEF_FEATURES),)
    o1, _ = plain.reset(seed=5)
    o2, _ = env.reset(seed=5)
    np.testing.assert_array_equal(o1, o2[: len(FEATURE_NAMES)])
    rng = np.random.default_rng(0)
    for _ in range(26):
        a = rng.uniform(-1, 1, 3).astype(np.float32)
        s1, s2 = plain.step(a), env.step(a)
        np.testing.assert_array_equal(s1[0], s2[0][: len(FEATURE_NAMES)])
        assert s1[1:4] == s2[1:4]  # reward, terminated, truncated
        assert env.observation_space.contains(s2[0])
        if s1[2] or s1[3]:
            break


def test_vec_env_patient_beliefs_do_not_depend_on_the_batch() -> None:
    vec = PatientVecEnv(4, belief=True)
    vec.seed(11)
    obs = vec.reset()
    single = gym.make("AdaptRx/Progression-v0", belief=True)
    for i in (0, 3):
        o, _ = single.reset(seed=11 + i)
        np.testing.assert_allclose(obs[i], o, rtol=0, atol=1e-6)
    actions = np.zeros((4, 3), dtype=np.float32)
    step_obs, *_ = vec.step(actions)
    o, *_ = single.step(actions[3])
    np.testing.assert_allclose(step_obs[3], o, rtol=0, atol=1e-6)


def test_cohort_episodes_with_beliefs_keep_the_outcomes() -> None:
    cohort = make_cohort("knee_oa", 40, 2, "val")
    plain = CohortEpisodes(cohort, seed=1, weeks=12).run(get("pain_monitoring"))
    belief = CohortEpisodes(cohort, seed=1, weeks=12, belief=True).run(get("pain_monitoring"))
    np.testing.assert_array_equal(plain.returns, belief.returns)
    np.testing.assert_array_equal(plain.pain, belief.pain)


def test_filter_learns_hidden_parameters_from_records() -> None:
    """After 12 weeks of pain_monitoring, posterior means rank the true parameters, and the envelope's
    posterior narrows from intake."""
    cohort = make_cohort("knee_oa", 300, 3, "val")
    episodes = CohortEpisodes(cohort, seed=0, weeks=12, belief=True)
    seen: list[np.ndarray] = []

    class Recorder:
        def __init__(self) -> None:
            self.inner = get("pain_monitoring")

        def reset(self) -> None:
            self.inner.reset()

        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            seen.append(np.array(obs))
            return self.inner.predict(obs, state, episode_start, deterministic)

    episodes.run(Recorder())
    f = episodes.batch.belief
    assert f is not None
    for name, floor in (("fear", 0.5), ("baseline_pain", 0.5), ("sensitization", 0.3)):
        rho = spearmanr(f.posterior_mean(name), cohort[name]).statistic
        assert rho > floor, (name, rho)
    sd = FEATURE_NAMES.__len__() + BELIEF_FEATURES.index("belief_envelope_sd")
    assert seen[-1][:, sd].mean() < 0.8 * seen[0][:, sd].mean()


def test_grouped_systematic_copies_in_proportion_per_row() -> None:
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(50), size=7)
    idx = grouped_systematic(w, rng.uniform(size=7), 64)
    assert idx.shape == (7, 64) and idx.min() >= 0 and idx.max() < 50
    for r in range(7):
        counts = np.bincount(idx[r], minlength=50)
        assert np.all(counts >= np.floor(64 * w[r]) - 1e-9) and np.all(counts <= np.ceil(64 * w[r]) + 1e-9)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="belief_particles"):
        PatientVecEnv(2, belief=True, belief_particles=3)
    with pytest.raises(ValueError, match="belief"):
        gym.make("AdaptRx/Progression-v0", belief="yes")
    with pytest.raises(ValueError, match="belief_particles"):
        BeliefFilter(2, "knee_oa", particles=8)
    env = PatientVecEnv(2, belief=True)
    env.reset()
    with pytest.raises(ValueError, match="belief"):
        env.set_state(env.get_state())
