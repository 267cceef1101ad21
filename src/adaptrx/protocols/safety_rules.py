"""Named clinical safety rules, usable as a shield around any policy (``DESIGN.md`` section 4).

:class:`SafetyRules` implements the :class:`adaptrx.envs.shield.Shield` hook, so it plugs into
:class:`~adaptrx.envs.shield.SafetyShield` (single env) and ``PatientVecEnv(shield=...)``, which count the
weeks a rule bound in ``info["shield_interventions"]``; :class:`ShieldedPolicy` applies it inside a policy
instead (the clinic reports :attr:`ShieldedPolicy.last_rules`, the rules that bound each decision).

Rules, each disabled by setting its parameter to ``None``; every rule reads only the observation:

================================  ===========================================================================
rule                              constraint on next week's prescription
================================  ===========================================================================
``max_load_increase``             load <= last load x (1 + ``max_load_increase``) (default +30 %; ACSM 2009
                                  and tendon-loading practice progress by 2-10 % per step, 30 % is a ceiling)
``no_progression_after_pain``     after a week with in-session pain > ``pain_threshold`` (5) or next-morning
                                  pain >= ``morning_threshold`` (2) above the pre-session level, no increase
                                  of the load, of the sessions or of the volume (pain-monitoring model,
                                  Silbernagel 2007; Thomeé 1997)
``regress_after_flare``           after a flare, load <= last load x (1 - ``flare_regression``) (default
                                  20 %) and sessions no more than last week's. A flare is a reported one or
                                  one inferred from the pain reports: in-session pain >= ``flare_pain`` (7,
                                  deep in the pain-monitoring model's high-risk zone, Thomeé 1997) with
                                  next-morning pain still >= ``morning_threshold`` above the pre-session
                                  level (symptoms that have not settled by the next morning, Silbernagel 2007)
``min_sessions`` / ``max_sessions``  sessions per week within bounds (default 1-5; 0 after a flare is allowed
                                  when ``rest_after_flare``)
``max_volume_increase``           weekly volume (sessions x load) <= last week's x the load rules' factor
                                  (``volume_rule``): more sessions may not bring in the increase the load
                                  rules forbid (ACSM 2009 progresses one of frequency, intensity or volume at
                                  a time, by small steps); the sessions drop first, then the load
================================  ===========================================================================

Rules apply in that order to the decoded prescription; caps never raise a load or add sessions, so a policy
that already regresses is left alone. Last week's prescribed sessions (the observation's ``sessions``, at least
1) are the base of the volume. For ``ProgressionDiscrete-v0`` a move that breaks a rule is replaced by
the closest allowed move (``hold``, ``regress_20``, the largest allowed ``progress_*``, or ``hold`` for a
``rest``/``drop_session`` below the session minimum).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from adaptrx.common.validation import integer as check_int
from adaptrx.common.validation import number as check_number
from adaptrx.envs.actions import LOAD_MAX, LOAD_MIN, MOVE_LOAD_FACTOR, MOVE_NAMES, MOVE_REST, MOVE_SESSIONS_DELTA
from adaptrx.envs.features import to_units
from adaptrx.protocols.base import Policy, batch_obs, episode_starts

#: Rule names, in the order they are applied.
RULES: tuple[str, ...] = ("max_load_increase", "no_progression_after_pain", "regress_after_flare",
                          "min_sessions", "max_sessions", "max_volume_increase")
_HOLD, _REGRESS_20 = MOVE_NAMES.index("hold"), MOVE_NAMES.index("regress_20")
_PROGRESS_MOVES = np.array([i for i in np.argsort(MOVE_LOAD_FACTOR)[::-1] if MOVE_LOAD_FACTOR[i] > 1.0])
_PROGRESS_FACTORS = MOVE_LOAD_FACTOR[_PROGRESS_MOVES]  # largest first


@dataclass
class SafetyRules:
    """The safety shield (see the module docstring for each rule).

    Attributes:
        max_load_increase: largest weekly load increase, fraction of the last load (0-0.5), or ``None``.
        pain_threshold: in-session pain (NRS) above which the load may not increase, or ``None``.
        morning_threshold: next-morning pain increase (NRS) at or above which the load may not increase.
        flare_regression: load reduction after a flare (fraction, 0-0.5), or ``None``.
        flare_pain: in-session pain (NRS) at or above which, with next-morning pain ``morning_threshold``
            above the pre-session level, a flare is inferred though none was reported; ``None``: only
            reported flares count.
        min_sessions: fewest sessions per week (0-5), or ``None``.
        max_sessions: most sessions per week (0-5), or ``None``.
        rest_after_flare: allow a week without sessions after a flare despite ``min_sessions``.
        volume_rule: cap the weekly volume (sessions x load) by the load rules' factor.
    """

    max_load_increase: float | None = 0.30
    pain_threshold: float | None = 5.0
    morning_threshold: float | None = 2.0
    flare_regression: float | None = 0.20
    flare_pain: float | None = 7.0
    min_sessions: int | None = 1
    max_sessions: int | None = 5
    rest_after_flare: bool = True
    volume_rule: bool = True

    def __post_init__(self) -> None:
        if self.max_load_increase is not None:
            self.max_load_increase = check_number("max_load_increase", self.max_load_increase, 0.0, 0.5)
        if self.pain_threshold is not None:
            self.pain_threshold = check_number("pain_threshold", self.pain_threshold, 0.0, 10.0)
        if self.morning_threshold is not None:
            self.morning_threshold = check_number("morning_threshold", self.morning_threshold, 0.0, 10.0)
        if self.flare_regression is not None:
            self.flare_regression = check_number("flare_regression", self.flare_regression, 0.0, 0.5)
        if self.flare_pain is not None:
            self.flare_pain = check_number("flare_pain", self.flare_pain, 0.0, 10.0)
        if self.min_sessions is not None:
            self.min_sessions = check_int("min_sessions", self.min_sessions, 0, 5)
        if self.max_sessions is not None:
            self.max_sessions = check_int("max_sessions", self.max_sessions, 0, 5)
        if self.min_sessions is not None and self.max_sessions is not None and self.min_sessions > self.max_sessions:
            raise ValueError(f"min_sessions: must not exceed max_sessions ({self.max_sessions}), "
                             f"got {self.min_sessions}")
        for name in ("rest_after_flare", "volume_rule"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SafetyRules:
        """Rules from a config mapping (e.g. ``configs/policy/shield/default.yaml``); unknown keys are errors."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"shield: unknown rule parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(config))

    def params(self) -> dict[str, Any]:
        return asdict(self)

    # ----------------------------------------------------------------- checks
    def flare(self, u: dict[str, np.ndarray]) -> np.ndarray:
        """Whether last week had a flare, reported or inferred (``flare_pain``; see the module docstring), from
        the observation in clinical units (:func:`~adaptrx.envs.features.to_units`)."""
        flare = u["flare_reported"] > 0.5
        if self.flare_pain is not None and self.morning_threshold is not None:  # 1e-6: the features' rounding
            unsettled = u["morning_change"] >= self.morning_threshold - 1e-6
            flare = flare | ((u["session_pain_max"] >= self.flare_pain - 1e-6) & unsettled)
        return flare

    def _limits(self, u: dict[str, np.ndarray]) -> tuple[list[tuple[str, np.ndarray]], np.ndarray]:
        """Per rule, the largest allowed load factor (x last load; inf where the rule is silent), and
        whether last week had a flare (reported or inferred)."""
        n = len(u["load"])
        flare = self.flare(u)
        caps: list[tuple[str, np.ndarray]] = []
        if self.max_load_increase is not None:
            caps.append(("max_load_increase", np.full(n, 1.0 + self.max_load_increase)))
        painful = np.zeros(n, dtype=bool)
        if self.pain_threshold is not None:
            painful |= u["session_pain_max"] > self.pain_threshold
        if self.morning_threshold is not None:
            painful |= u["morning_change"] >= self.morning_threshold
        caps.append(("no_progression_after_pain", np.where(painful, 1.0, np.inf)))
        if self.flare_regression is not None:
            caps.append(("regress_after_flare", np.where(flare, 1.0 - self.flare_regression, np.inf)))
        return caps, flare

    def constrain(self, obs: np.ndarray, actions: np.ndarray,
                  discrete: bool = False) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        """Apply the rules to a batch of actions chosen on ``obs`` (see :class:`adaptrx.envs.shield.Shield`).

        Returns the allowed actions (same shape and kind as ``actions``) and, per row, the names of the rules
        that changed the action (empty when it passed untouched).
        """
        x, _ = batch_obs(obs)
        u = to_units(x)
        n = len(x)
        caps, flare = self._limits(u)
        fired = np.zeros((len(RULES), n), dtype=bool)
        last = np.maximum(u["load"], LOAD_MIN)
        if discrete:
            moves = np.asarray(actions).reshape(-1).astype(np.int64)
            if moves.shape != (n,):
                raise ValueError(f"actions: expected {n} move index(es), got shape {np.shape(actions)}")
            out = moves.copy()
            factor = MOVE_LOAD_FACTOR[out]
            for name, cap in caps:
                bad = factor > cap + 1e-12
                r = RULES.index(name)
                fired[r] = bad
                # replace by the largest progression within the cap, else hold, else regress 20 %
                fits = _PROGRESS_FACTORS[None, :] <= cap[:, None] + 1e-12
                fallback = np.where(cap >= 1.0, _HOLD, _REGRESS_20)
                best = np.where(fits.any(axis=1), _PROGRESS_MOVES[np.argmax(fits, axis=1)], fallback)
                out = np.where(bad, best, out)
                factor = MOVE_LOAD_FACTOR[out]
            # the plan of planned sessions is not observed: last week's prescribed sessions stand in for it
            rest, delta = MOVE_REST[out], MOVE_SESSIONS_DELTA[out]
            last_sessions = np.rint(u["sessions"])  # whole sessions (the scaled feature carries rounding error)
            if self.min_sessions is not None:
                few = (rest & ~(flare & self.rest_after_flare)) | (
                    (delta < 0) & (last_sessions + delta < self.min_sessions))
                fired[RULES.index("min_sessions")] = few
                out[few] = _HOLD
            if self.max_sessions is not None:
                many = (delta > 0) & (last_sessions + delta > self.max_sessions)
                fired[RULES.index("max_sessions")] = many
                out[many] = _HOLD
            for name, cap in caps:  # a rule that forbids progression forbids adding a session
                more = (cap <= 1.0) & (MOVE_SESSIONS_DELTA[out] > 0)
                fired[RULES.index(name)] |= more
                out[more] = np.where(cap[more] < 1.0, _REGRESS_20, _HOLD)
            if self.volume_rule and caps:
                factor = np.min(np.stack([cap for _, cap in caps]), axis=0)
                base = np.maximum(last_sessions, 1.0)
                grows = MOVE_LOAD_FACTOR[out] * np.maximum(base + MOVE_SESSIONS_DELTA[out], 0.0) / base
                over = grows > factor + 1e-12
                fired[RULES.index("max_volume_increase")] = over
                out[over] = np.where(factor[over] < 1.0, _REGRESS_20, _HOLD)
            allowed_actions: np.ndarray = out.reshape(np.shape(actions))
        else:
            a = np.array(actions, dtype=np.float32, copy=True).reshape(-1, 3)
            if a.shape[0] != n:
                raise ValueError(f"actions: expected shape ({n}, 3), got {np.shape(actions)}")
            if not np.isfinite(a).all():
                raise ValueError("actions: must be finite (no NaN or inf)")
            a0 = np.clip(a[:, 0].astype(np.float64), -1.0, 1.0)
            load = np.clip(last * (1.0 + 0.5 * a0), LOAD_MIN, LOAD_MAX)
            for name, cap in caps:
                limit = np.maximum(last * cap, LOAD_MIN)
                bad = load > limit * (1.0 + 1e-6)
                fired[RULES.index(name)] = bad
                load = np.where(bad, limit, load)
            sessions = np.rint(2.5 + 2.5 * np.clip(a[:, 1].astype(np.float64), -1.0, 1.0))
            if self.min_sessions is not None:
                low = (sessions < self.min_sessions) & ~(flare & self.rest_after_flare)
                fired[RULES.index("min_sessions")] = low
                sessions = np.where(low, self.min_sessions, sessions)
            if self.max_sessions is not None:
                high = sessions > self.max_sessions
                fired[RULES.index("max_sessions")] = high
                sessions = np.where(high, self.max_sessions, sessions)
            last_sessions = np.rint(u["sessions"])
            for name, cap in caps:  # a rule that forbids progression forbids more sessions too
                more = (cap <= 1.0) & (sessions > last_sessions)
                fired[RULES.index(name)] |= more
                sessions = np.where(more, last_sessions, sessions)
            if self.volume_rule and caps:
                factor = np.min(np.stack([cap for _, cap in caps]), axis=0)
                limit = last * np.maximum(last_sessions, 1.0) * factor  # inf where no rule caps
                over = load * sessions > limit * (1.0 + 1e-6)
                floor = np.where(flare & self.rest_after_flare, 0.0, float(self.min_sessions or 0))
                fewer = np.maximum(np.floor(limit / load * (1.0 + 1e-6)), floor)
                sessions = np.where(over, np.minimum(sessions, fewer), sessions)
                load = np.where(over & (load * sessions > limit * (1.0 + 1e-6)),
                                np.maximum(limit / np.maximum(sessions, 1.0), LOAD_MIN), load)
                fired[RULES.index("max_volume_increase")] = over
            changed = fired.any(axis=0)
            a[changed, 0] = np.clip(2.0 * (load[changed] / last[changed] - 1.0), -1.0, 1.0)
            a[changed, 1] = (sessions[changed] - 2.5) / 2.5
            allowed_actions = a.reshape(np.shape(actions))
        names = np.array(RULES, dtype=object)
        rules = [tuple(names[fired[:, i]]) for i in range(n)]
        return allowed_actions, rules


class ShieldedPolicy(Policy):
    """Any policy behind :class:`SafetyRules`: the policy proposes, the rules dispose.

    :attr:`last_rules` holds, per env, the rules that bound the last decision; :attr:`interventions` counts
    decisions with a binding rule per env since the episode started.
    """

    def __init__(self, policy: Any, rules: SafetyRules | None = None) -> None:
        if not callable(getattr(policy, "predict", None)):
            raise ValueError("policy: must have a predict(obs, state, episode_start, deterministic) method")
        self.policy = policy
        self.rules = rules if rules is not None else SafetyRules()
        self.last_rules: list[tuple[str, ...]] = []
        self.interventions = np.zeros(0, dtype=np.int64)

    def reset(self) -> None:
        if callable(getattr(self.policy, "reset", None)):
            self.policy.reset()
        self.last_rules, self.interventions = [], np.zeros(0, dtype=np.int64)

    def predict(
        self,
        obs: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        x, _ = batch_obs(obs)
        actions, state = self.policy.predict(obs, state=state, episode_start=episode_start,
                                             deterministic=deterministic)
        batch = np.asarray(actions).reshape(len(x), -1)
        discrete = batch.shape[1] == 1
        allowed, rules = self.rules.constrain(x, batch[:, 0] if discrete else batch, discrete)
        if len(self.interventions) != len(x):
            self.interventions = np.zeros(len(x), dtype=np.int64)
        self.interventions[episode_starts(to_units(x), episode_start)] = 0
        self.interventions += np.array([len(r) > 0 for r in rules])
        self.last_rules = rules
        return np.asarray(allowed).reshape(np.shape(actions)), state
