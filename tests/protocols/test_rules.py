"""The safety shield (DESIGN.md section 4): each rule binds when it should, names itself, and nothing else."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import adaptrx  # noqa: F401  (registers the env ids)
from adaptrx.envs.actions import MOVE_NAMES, decode_continuous, encode_continuous
from adaptrx.envs.features import FEATURE_INDEX, FEATURE_NAMES, SCALES
from adaptrx.envs.shield import SafetyShield
from adaptrx.envs.vec_env import PatientVecEnv
from adaptrx.protocols import SafetyRules, ShieldedPolicy


def observation(**units: float) -> np.ndarray:
    """A scaled observation from clinical-unit values (others 0; one week into the programme)."""
    values = {"progress": 1 / 26, "load": 0.4, "sessions": 3, **units}
    x = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    for name, value in values.items():
        x[FEATURE_INDEX[name]] = value / SCALES[FEATURE_INDEX[name]]
    return x


def shield_one(rules: SafetyRules, obs: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    allowed, names = rules.constrain(obs[None], action[None], False)
    return allowed[0], names[0]


def prescribed(obs: np.ndarray, action: np.ndarray) -> tuple[float, int]:
    last = np.array([obs[FEATURE_INDEX["load"]] * SCALES[FEATURE_INDEX["load"]]])
    load, sessions, _ = decode_continuous(action[None].astype(np.float64), last)
    return float(load[0]), int(sessions[0])


def test_max_load_increase_caps_at_30_percent_and_names_the_rule() -> None:
    obs = observation(load=0.4)
    allowed, names = shield_one(SafetyRules(), obs, encode_continuous(1.5, 3, 0))
    assert names == ("max_load_increase",)
    assert prescribed(obs, allowed)[0] == pytest.approx(0.52, rel=1e-5)
    allowed, names = shield_one(SafetyRules(), obs, encode_continuous(1.2, 3, 0))
    assert names == ()
    assert prescribed(obs, allowed)[0] == pytest.approx(0.48, rel=1e-5)


@pytest.mark.parametrize("units", [{"session_pain_max": 7.0}, {"morning_change": 2.0}])
def test_no_progression_after_a_painful_or_unsettled_week(units: dict[str, float]) -> None:
    obs = observation(**units)
    allowed, names = shield_one(SafetyRules(), obs, encode_continuous(1.2, 3, 0))
    assert names == ("no_progression_after_pain",)
    assert prescribed(obs, allowed)[0] == pytest.approx(0.4, rel=1e-5)
    # a regression is left alone; a settled, tolerable week may progress
    assert shield_one(SafetyRules(), obs, encode_continuous(0.8, 3, 0))[1] == ()
    assert shield_one(SafetyRules(), observation(session_pain_max=5.0, morning_change=1.0),
                      encode_continuous(1.2, 3, 0))[1] == ()


def test_regress_after_flare_and_rest_is_allowed_then() -> None:
    obs = observation(flare_reported=1.0)
    allowed, names = shield_one(SafetyRules(), obs, encode_continuous(1.0, 3, 0))
    assert names == ("regress_after_flare",)
    assert prescribed(obs, allowed)[0] == pytest.approx(0.32, rel=1e-5)
    assert shield_one(SafetyRules(), obs, encode_continuous(0.5, 0, 0))[1] == ()  # a rest week after a flare
    assert shield_one(SafetyRules(rest_after_flare=False), obs, encode_continuous(0.5, 0, 0))[1] == ("min_sessions",)


def test_session_bounds() -> None:
    obs = observation()
    allowed, names = shield_one(SafetyRules(), obs, encode_continuous(1.0, 0, 0))
    assert names == ("min_sessions",) and prescribed(obs, allowed)[1] == 1
    allowed, names = shield_one(SafetyRules(max_sessions=3), obs, encode_continuous(1.0, 5, 2))
    assert names == ("max_sessions",) and prescribed(obs, allowed)[1] == 3
    assert allowed[2] == 1.0  # delivery untouched


def test_disabled_rules_never_bind() -> None:
    off = SafetyRules(max_load_increase=None, pain_threshold=None, morning_threshold=None, flare_regression=None,
                      min_sessions=None, max_sessions=None)
    obs = observation(session_pain_max=9.0, morning_change=4.0, flare_reported=1.0)
    action = encode_continuous(1.5, 0, 0)
    allowed, names = shield_one(off, obs, action)
    assert names == () and np.array_equal(allowed, action)


def test_batch_rows_are_independent() -> None:
    obs = np.stack([observation(), observation(session_pain_max=8.0), observation(flare_reported=1.0)])
    actions = np.stack([encode_continuous(1.2, 3, 0)] * 3)
    allowed, names = SafetyRules().constrain(obs, actions, False)
    assert names == [(), ("no_progression_after_pain",), ("regress_after_flare",)]
    assert np.array_equal(allowed[0], actions[0])


def test_discrete_moves_are_replaced_by_the_closest_allowed_move() -> None:
    move = MOVE_NAMES.index
    obs = np.stack([observation(), observation(session_pain_max=8.0), observation(flare_reported=1.0),
                    observation(), observation(sessions=5)])
    moves = np.array([move("progress_30"), move("progress_20"), move("hold"), move("rest"), move("add_session")])
    allowed, names = SafetyRules(max_load_increase=0.15).constrain(obs, moves, True)
    assert [MOVE_NAMES[m] for m in allowed] == ["progress_10", "hold", "regress_20", "hold", "hold"]
    assert names == [("max_load_increase",), ("max_load_increase", "no_progression_after_pain"),
                     ("regress_after_flare",), ("min_sessions",), ("max_sessions",)]


def test_bad_parameters_name_the_field() -> None:
    with pytest.raises(ValueError, match="max_load_increase"):
        SafetyRules(max_load_increase=2.0)
    with pytest.raises(ValueError, match="min_sessions"):
        SafetyRules(min_sessions=4, max_sessions=2)
    with pytest.raises(ValueError, match="unknown rule parameter"):
        SafetyRules.from_config({"max_load_jump": 0.1})


class _Reckless:
    """Proposes +50 % load and 5 sessions every week."""

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        n = np.atleast_2d(obs).shape[0]
        action = np.tile(encode_continuous(1.5, 5, 0), (n, 1))
        return (action[0] if np.ndim(obs) == 1 else action), state


def test_shield_wrapper_counts_interventions_and_bounds_the_weekly_increase() -> None:
    env = SafetyShield(gym.make("AdaptRx/Progression-v0", weeks=12), SafetyRules())
    obs, _ = env.reset(seed=3)
    loads, last = [], 0.3
    for _ in range(12):
        obs, _, terminated, truncated, info = env.step(_Reckless().predict(obs)[0])
        load = info["prescription"]["load"]
        assert load <= last * 1.3 + 1e-6
        loads.append(load)
        last = load
        if terminated or truncated:
            break
    assert info["shield_interventions"] >= len(loads) - 1  # +50 % is capped every week it is asked for
    assert "max_load_increase" in info["shield_rules"] or info["shield_rules"]


def test_vec_env_shield_and_shielded_policy_agree() -> None:
    """The shield inside PatientVecEnv and around a policy constrain the same actions the same way."""
    vec = PatientVecEnv(4, weeks=6, shield=SafetyRules())
    vec.seed(11)
    obs = vec.reset()
    plain = PatientVecEnv(4, weeks=6)
    plain.seed(11)
    obs2 = plain.reset()
    policy = ShieldedPolicy(_Reckless())
    for _ in range(6):
        a, _ = _Reckless().predict(obs)
        obs, _, _, infos = vec.step(a)
        b, _ = policy.predict(obs2)
        obs2, _, _, infos2 = plain.step(b)
        assert [i["prescription"] for i in infos] == [i["prescription"] for i in infos2]
        assert [tuple(i["shield_rules"]) for i in infos] == policy.last_rules
    assert (policy.interventions > 0).all()


def test_shipped_shield_config_matches_the_defaults() -> None:
    from importlib import resources

    from omegaconf import OmegaConf

    path = resources.files("adaptrx") / "configs" / "policy" / "shield" / "default.yaml"  # as shipped
    config = OmegaConf.to_container(OmegaConf.load(str(path)))
    assert SafetyRules.from_config(config) == SafetyRules()


def test_volume_may_not_rise_more_than_the_load_rule_allows() -> None:
    """Sessions x load is capped like the load: doubling the sessions at the same load (volume x2) keeps last
    week's sessions; +30 % load with 2 -> 4 sessions (volume x2.6) keeps the load and drops the extra sessions."""
    obs = observation(load=0.5, sessions=2)
    allowed, names = shield_one(SafetyRules(), obs, encode_continuous(1.0, 4, 0))
    assert names == ("max_volume_increase",)
    assert prescribed(obs, allowed) == (pytest.approx(0.5, rel=1e-5), 2)
    allowed, names = shield_one(SafetyRules(), obs, encode_continuous(1.3, 4, 0))
    load, sessions = prescribed(obs, allowed)
    assert names == ("max_volume_increase",) and sessions == 2 and load == pytest.approx(0.65, rel=1e-5)
    assert load * sessions <= 0.5 * 2 * 1.3 + 1e-6
    # a volume within the cap passes: 2 -> 3 sessions at a 10 % lower load (x1.35 > 1.3 fails, x0.9 x 1.5 too)
    allowed, names = shield_one(SafetyRules(), observation(load=0.5, sessions=3), encode_continuous(1.2, 3, 0))
    assert names == ()
    assert shield_one(SafetyRules(volume_rule=False), obs, encode_continuous(1.0, 4, 0))[1] == ()


def test_no_progression_blocks_more_sessions_too() -> None:
    obs = observation(load=0.5, sessions=2, session_pain_max=6.0)
    allowed, names = shield_one(SafetyRules(), obs, encode_continuous(1.0, 4, 0))
    assert names == ("no_progression_after_pain",)
    assert prescribed(obs, allowed) == (pytest.approx(0.5, rel=1e-5), 2)


@pytest.mark.parametrize(("morning_change", "flare"), [(2.0, True), (3.0, True), (1.0, False)])
def test_a_flare_is_inferred_from_severe_pain_that_has_not_settled(morning_change: float, flare: bool) -> None:
    """In-session pain 7 with next-morning pain still 2+ above the pre-session level is a flare though none was
    reported: the load regresses 20 % and the sessions may not rise; with the morning settled it is only a
    painful week (no progression)."""
    obs = observation(load=0.5, sessions=2, session_pain_max=7.0, morning_change=morning_change)
    allowed, names = shield_one(SafetyRules(), obs, encode_continuous(1.0, 4, 0))
    load, sessions = prescribed(obs, allowed)
    assert sessions == 2
    if flare:
        assert "regress_after_flare" in names and load == pytest.approx(0.4, rel=1e-5)
    else:
        assert names == ("no_progression_after_pain",) and load == pytest.approx(0.5, rel=1e-5)
    assert not SafetyRules(flare_pain=None).flare({"flare_reported": np.zeros(1), "session_pain_max": np.full(1, 9.0),
                                                   "morning_change": np.full(1, 4.0)})[0]


def test_discrete_session_moves_respect_progression_and_volume() -> None:
    move = MOVE_NAMES.index
    obs = np.stack([observation(sessions=3, session_pain_max=8.0), observation(sessions=3),
                    observation(sessions=4)])
    moves = np.array([move("add_session")] * 3)
    allowed, names = SafetyRules().constrain(obs, moves, True)
    # painful week: no more sessions; 3 -> 4 sessions is +33 % volume (> 30 %); 4 -> 5 is +25 %
    assert [MOVE_NAMES[m] for m in allowed] == ["hold", "hold", "add_session"]
    assert names == [("no_progression_after_pain",), ("max_volume_increase",), ()]
