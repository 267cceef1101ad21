"""Next week's prescription for a real patient, with what the model expects to happen and why.

:func:`recommend` takes a validated :class:`~adaptrx.clinic.history.History` and a policy and:

1. fits the patient (:func:`adaptrx.clinic.fitting.fit_patient`: particle filter over the condition prior);
2. builds the policy's observation from the log exactly as the env would have (``DESIGN.md`` 3; the
   records a session log lacks, such as diary pain or the weekly function score, are the fit's posterior
   means, see :attr:`PatientFit.imputed`);
3. asks the policy for next week's action and passes it through the safety rules
   (:class:`~adaptrx.protocols.safety_rules.SafetyRules`, always on: no recommendation breaks a rule), recording
   which rules bound it;
4. forecasts weekly pain over the next ``horizon`` weeks (4-12) under three plans, each followed in closed
   loop on copies of the posterior particles with common noise: the recommended policy (behind the
   shield), *hold* (last week's prescription unchanged) and the *pain-monitoring model* continued from the
   current load. The forecast is the true mean daily pain (NRS) per week, its median and 10-90 % band (an
   80 % interval that covers both the parameter uncertainty and day-to-day noise), the chance of a flare
   and of dropping out within the horizon. A patient who drops out is followed without exercise
   (intention to treat).

Policies: a shipped policy directory (safetensors + manifest, :func:`adaptrx.agents.load_policy`; its policy id
is reported) or a protocol name (``pain_monitoring``, ``acsm``, ...: continued from the patient's current load;
``population_best``: the condition's best fixed programme). Default (``policy=None``): per condition, the
best-evidenced policy of the shipped trials (:mod:`adaptrx.clinic.evidence`), and the output shows that
evidence; where there is none, the pain-monitoring model, with a warning.

Warnings (in every output format): a poor fit (low effective sample size), a recommendation whose own forecast
is worse than holding on flare or dropout risk by more than :data:`RISK_MARGIN`, weeks of the log without any
session (named with their dates), a condition without a shipped agent, and a default policy that does not beat
the trial's reference.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adaptrx import __version__
from adaptrx.agents.export import MANIFEST_FILE, WEIGHTS_FILE, check_spaces, load_policy
from adaptrx.agents.numpy_policy import NoNumpyImplementation, load_numpy_policy
from adaptrx.clinic import evidence
from adaptrx.clinic.fitting import PatientFit, belief_features, fit_patient, summary
from adaptrx.clinic.history import DELIVERIES, History
from adaptrx.envs.actions import LOAD_MAX, LOAD_MIN, decode_continuous
from adaptrx.envs.belief import reads_beliefs
from adaptrx.envs.episode_engine import EnvConfig, EpisodeBatch, episode_state
from adaptrx.envs.episodes import rollout
from adaptrx.envs.features import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    HIGH,
    HISTORY_FEATURES,
    HISTORY_LAGS,
    LOW,
    SCALES,
    to_units,
)
from adaptrx.envs.progression import env_spaces
from adaptrx.patient.noise import mix64
from adaptrx.protocols import NAMES as PROTOCOL_NAMES
from adaptrx.protocols import get as get_protocol
from adaptrx.protocols.base import Policy, batch_obs, encode_prescription
from adaptrx.protocols.oracle import OpenLoopPlans, plan_for_posterior
from adaptrx.protocols.safety_rules import SafetyRules

#: The shipped agent of each condition is ``agents/<AGENT_PATTERN.format(condition=...)>``.
AGENT_PATTERN = "dagger-{condition}-v0"
#: What the load number means, for the reports.
LOAD_UNIT = ("load unit: a multiple of the patient's baseline capacity, the heaviest session they could tolerate "
             "at intake (1.0); 0.5 is half of that effort")
#: What the forecast is, for the reports.
FORECAST_MEANING = ("the patient's weekly mean daily pain (NRS 0-10) if each plan is followed, not the in-session "
                    "pain of the log")
#: What a flare is, for the reports.
FLARE_MEANING = ("flare: a pain exacerbation lasting days (from overloaded tissue, or a background flare), "
                 "reported or inferred")
#: A fit whose effective sample size is below this share of its particles is flagged as poor.
POOR_FIT_ESS = 0.05
#: The recommendation is flagged when its forecast flare or dropout risk exceeds holding's by more than this.
RISK_MARGIN = 0.05
#: Episode length the shipped policies were trained on (weeks); the observation's ``progress`` uses it.
EPISODE_WEEKS = 26
#: Particles forecast under each plan.
FORECAST_PARTICLES = 1000
#: Protocols that cannot be continued from a real patient's log (the oracle needs the true patient).
_NOT_CLINICAL = ("oracle", "none")
#: The policy name that plans from the fitted posterior (the belief planner; no trained weights).
PLANNER = "belief_planner"
#: Posterior particles the belief planner rolls every candidate plan out from.
PLANNER_PARTICLES = 128


def default_policy_dir(condition: str = "knee_oa") -> Path | None:
    """The shipped agent directory of ``condition``, if found: ``$ADAPTRX_POLICY`` (any condition),
    ``./agents/dagger-<condition>-v0``, or the source checkout's."""
    name = AGENT_PATTERN.format(condition=condition)
    candidates = []
    if os.environ.get("ADAPTRX_POLICY"):
        candidates.append(Path(os.environ["ADAPTRX_POLICY"]))
    candidates.append(Path.cwd() / "agents" / name)
    candidates.append(Path(__file__).resolve().parents[3] / "agents" / name)
    return next((c for c in candidates if (c / "manifest.json").is_file()), None)


def _rule_explanations(rules: SafetyRules) -> dict[str, str]:
    return {
        "max_load_increase": f"the load may rise by at most {rules.max_load_increase or 0:.0%} a week (ACSM 2009 "
                             "progression, tendon-loading practice)",
        "no_progression_after_pain": f"last week's in-session pain exceeded {rules.pain_threshold or 0:g}/10 or "
                                     f"next-morning pain rose by {rules.morning_threshold or 0:g}+ points: no "
                                     "increase of load, sessions or weekly volume this week (pain-monitoring "
                                     "model; Thomeé 1997, Silbernagel 2007)",
        "regress_after_flare": f"last week had a flare (reported, or inferred from in-session pain "
                               f"{rules.flare_pain or 0:g}+/10 with next-morning pain still "
                               f"{rules.morning_threshold or 0:g}+ points above the pre-session level): the load "
                               f"drops by at least {rules.flare_regression or 0:.0%} and the sessions may not rise",
        "max_volume_increase": "the weekly volume (sessions x load) may rise at most as much as the load may "
                               f"({rules.max_load_increase or 0:.0%} a week, none after a painful week or a flare): "
                               "extra sessions may not bring in a larger increase (ACSM 2009: progress one of "
                               "frequency, intensity or volume at a time)",
        "min_sessions": f"at least {rules.min_sessions} session(s) a week (a week off only after a flare)",
        "max_sessions": f"at most {rules.max_sessions} sessions a week",
    }


# ------------------------------------------------------------------------------------------- policies
@dataclass
class _Policy:
    """A resolved policy: what acts, its name (``id``), kind, manifest hash, policy id (sha256 over the
    canonical manifest and the weights, as cards and trial reports print it) and a note for the output."""

    policy: Any
    id: str
    kind: str
    manifest_sha256: str | None = None
    note: str | None = None
    policy_id: str | None = None
    evidence: dict[str, Any] | None = None  # the shipped trial's case for a default policy
    warnings: list[str] = field(default_factory=list)


class _MidCourse(Policy):
    """A rule-based protocol continued from a patient's current load (its start phase is over)."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.memory: dict[str, np.ndarray] | None = None

    def reset(self) -> None:
        self.memory = None

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        x, single = batch_obs(obs)
        n = len(x)
        u = to_units(x)
        if self.memory is None or len(self.memory["week"]) != n:
            self.memory = {"week": np.ones(n, dtype=np.int64), **self.protocol.initial_memory(n)}
            if "started" in self.memory:
                self.memory["started"][:] = True
        load, sessions, delivery = self.protocol.prescribe(u, self.memory)
        self.memory["week"] += 1
        ones = np.ones(n)
        actions = encode_prescription(load * ones, sessions * ones, delivery * ones, u["load"])
        return (actions[0] if single else actions), state


def _protocol_policy(name: str, last: dict[str, Any], condition: str = "knee_oa") -> Any:
    """Protocol ``name`` continued from the last prescription (its start load, dose and delivery);
    ``population_best`` is ``condition``'s fixed programme as it is (the safety rules pace the way there)."""
    if name == "population_best":
        return _MidCourse(get_protocol(name, condition=condition))
    params: dict[str, Any] = {}
    protocol = get_protocol(name)
    fields_ = set(protocol.params())
    if "start" in fields_:
        params["start"] = float(np.clip(last["load"], LOAD_MIN, LOAD_MAX))
    if "cap" in fields_:
        params["cap"] = max(float(protocol.params()["cap"]), params.get("start", 0.0))
    if "sessions" in fields_:
        params["sessions"] = int(max(last["sessions"], 1))
    if "delivery" in fields_:
        params["delivery"] = DELIVERIES[int(last["delivery"])]
    try:
        return _MidCourse(get_protocol(name, **params))
    except ValueError:  # a parameter outside the protocol's range: its defaults
        return _MidCourse(protocol)


_POLICY_CACHE: dict[tuple[str, str], Any] = {}


def _load_policy(directory: Path) -> tuple[Any, str]:
    """The policy of ``directory`` and its manifest's sha256, loaded once per (manifest, weights) content: in
    numpy (:mod:`adaptrx.agents.numpy_policy`, no torch import) where it can, else through torch."""
    try:
        key = (hashlib.sha256((directory / MANIFEST_FILE).read_bytes()).hexdigest(),
               hashlib.sha256((directory / WEIGHTS_FILE).read_bytes()).hexdigest())
    except OSError:
        return load_policy(directory), ""  # raises the loader's own error naming the missing file
    loaded = _POLICY_CACHE.get(key)
    if loaded is None:
        try:  # both verify the weights against the manifest
            loaded = load_numpy_policy(directory)
        except NoNumpyImplementation:  # the recurrent policy
            loaded = load_policy(directory)
        if len(_POLICY_CACHE) >= 4:
            _POLICY_CACHE.clear()
        _POLICY_CACHE[key] = loaded
    return loaded, key[0]


def check_policy(policy: str | Path | None) -> tuple[str | Path | None, Any, dict[str, Any]]:
    """Resolve and check a policy argument once: ``(target, loaded, info)``.

    ``target`` is what :func:`recommend` is given (a policy directory, a protocol name, or ``None`` when no
    shipped policy is found), ``loaded`` the loaded directory policy (``None`` for a protocol) and ``info`` its
    description ``{"id", "kind", "manifest_sha256", "policy_id", "condition", "note"}`` (``condition``: the one
    a directory policy was trained on; ``policy_id``: :func:`adaptrx.agents.export.policy_id`, ``None`` for a
    protocol).

    Raises:
        ValueError: a non-clinical protocol (oracle, population_best, none), a discrete-action policy, or a
            malformed policy directory (the loader's message naming the file and field).
        FileNotFoundError: a directory or file that does not exist.
    """
    if policy is None:
        defaults = {c: e["policy"] for c, e in evidence.load().items()}
        note = ("per condition, the best-evidenced policy of the shipped trials: "
                + ", ".join(f"{c}: {p}" for c, p in defaults.items()) + "; the pain-monitoring model elsewhere")
        return None, None, {"id": "default", "kind": "default", "manifest_sha256": None, "policy_id": None,
                            "condition": None, "note": note, "defaults": defaults}
    if isinstance(policy, str) and policy == PLANNER and not Path(policy).exists():
        return policy, None, {"id": PLANNER, "kind": "planner", "manifest_sha256": None, "policy_id": None,
                              "condition": None, "note": None}
    if isinstance(policy, str) and policy in PROTOCOL_NAMES and not Path(policy).exists():
        if policy in _NOT_CLINICAL:
            raise ValueError(f"policy: {policy!r} cannot be continued from a patient's log; use a clinical "
                             f"protocol or a policy directory")
        return policy, None, {"id": policy, "kind": "protocol", "manifest_sha256": None, "policy_id": None,
                              "condition": None, "note": None}
    if not isinstance(policy, str | Path):
        raise ValueError(f"policy: expected a policy directory or a protocol name, got {type(policy).__name__}")
    directory = Path(policy).resolve()
    loaded, digest = _load_policy(directory)  # ValueError / FileNotFoundError naming the file and field
    env = loaded.manifest.get("env") or {}
    if env.get("discrete"):
        raise ValueError(f"policy: {directory} acts in the discrete env; the clinic needs a Progression-v0 policy")
    belief = reads_beliefs(loaded.feature_names)
    try:  # the observation the clinic builds is Progression-v0's (with the belief features), and it reads Box actions
        check_spaces(loaded, *env_spaces(discrete=False, belief=belief),
                     feature_names=EnvConfig(belief=belief).feature_names)
    except ValueError as exc:
        raise ValueError(f"policy: {directory}: {exc}") from exc
    return directory, loaded, {"id": str(loaded.manifest.get("name", directory.name)), "kind": "trained",
                               "manifest_sha256": digest, "policy_id": loaded.policy_id,
                               "condition": env.get("condition"), "note": None}


class _WithBeliefs(Policy):
    """A belief policy fed the clinical records plus fixed belief features (the forecast's simulated weeks
    have no filter of their own: the beliefs are held at their value after the logged weeks)."""

    def __init__(self, policy: Any, beliefs: np.ndarray) -> None:
        self.policy, self.beliefs = policy, np.asarray(beliefs, dtype=np.float32)

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        x = np.atleast_2d(np.asarray(obs, dtype=np.float32))
        full = np.hstack([x, np.repeat(self.beliefs[None, :], len(x), axis=0)])
        return self.policy.predict(full, state, episode_start, deterministic)


def _default(history: History, last: dict[str, Any]) -> _Policy:
    """The condition's best-evidenced policy (:mod:`adaptrx.clinic.evidence`), or the pain-monitoring model."""
    condition = history.intake.condition
    entry = evidence.load().get(condition)
    if entry is None:
        return _Policy(_protocol_policy("pain_monitoring", last, condition), "pain_monitoring", "protocol",
                       warnings=[f"no shipped agent and no trial evidence for {condition}: the pain-monitoring "
                                 "model recommends"])
    warnings = [] if entry["beats_reference"] is not False else [
        f"the default policy for {condition}, {entry['policy']}, does not beat {entry['reference']} in the "
        f"shipped trial (return {evidence.difference(entry, 'return')} per patient): no policy the clinic can run "
        "was shown better than the best fixed programme"]
    if entry["kind"] != "agent":
        return _Policy(_protocol_policy(entry["policy"], last, condition), entry["policy"], "protocol",
                       evidence=entry, warnings=warnings)
    directory = default_policy_dir(condition)
    if directory is None:
        return _Policy(_protocol_policy("pain_monitoring", last, condition), "pain_monitoring", "protocol",
                       warnings=[f"the shipped agent for {condition} ({entry['policy']}) was not found: the "
                                 "pain-monitoring model recommends"])
    loaded, digest = _load_policy(directory)
    if loaded.policy_id != entry["policy_id"]:
        warnings.append(f"{directory} (policy id {loaded.policy_id[:16]}) is not the agent the shipped trial "
                        f"tested ({str(entry['policy_id'])[:16]}): the evidence shown is for the latter")
    return _Policy(loaded, str(loaded.manifest.get("name", directory.name)), "trained", manifest_sha256=digest,
                   policy_id=loaded.policy_id, evidence=entry, warnings=warnings)


def _resolve(policy: str | Path | None, history: History, last: dict[str, Any]) -> _Policy:
    """The policy acting for this patient: the default of their condition (``None``), a directory policy
    trained on their condition, else a protocol."""
    if policy is None:
        return _default(history, last)
    _, loaded, info = check_policy(policy)
    condition = history.intake.condition
    if info["kind"] == "planner":
        return _Policy(None, PLANNER, "planner")
    if loaded is None:
        return _Policy(_protocol_policy(info["id"], last, condition), info["id"], "protocol", note=info["note"])
    if info["condition"] != condition:
        return _Policy(_protocol_policy("pain_monitoring", last, condition), "pain_monitoring", "protocol",
                       note=f"the policy {info['id']} was trained on {info['condition']} patients, not "
                            f"{condition}; the pain-monitoring model recommends instead")
    return _Policy(loaded, info["id"], "trained", manifest_sha256=info["manifest_sha256"],
                   policy_id=info["policy_id"])


# ----------------------------------------------------------------------------------------- observation
def observation_values(history: History, fit: PatientFit) -> np.ndarray:
    """The env's observation records after the logged weeks, in clinical units ``(n_features,)``.

    The same update as the env's step (:meth:`adaptrx.envs.episode_engine.EpisodeBatch.step`), fed with the
    log's weekly records; diary pain, diary days, function, capacity tests and (without ``pain_before``) the
    next-morning change are the fit's posterior means.
    """
    intake, weeks, imputed = history.intake, history.weeks(), fit.imputed.set_index("week")
    v = np.zeros(len(FEATURE_NAMES))
    records = fit.intake_records

    def known(name: str) -> float:
        value = getattr(intake, name)
        return float(value) if value is not None else float(records[name])

    f = FEATURE_INDEX
    v[f["intake_age"]], v[f["intake_pain"]] = intake.age, intake.baseline_pain
    v[f["intake_sensitization"]], v[f["intake_fear"]] = known("sensitization_score"), known("fear_score")
    v[f["intake_preferred_sessions"]], v[f["intake_function"]] = known("preferred_sessions"), known("function")
    v[f["diary_pain"]], v[f["function"]] = intake.baseline_pain, v[f["intake_function"]]
    v[f["load"]], v[f["capacity_test"]] = EnvConfig().initial_load, 1.0
    src = [f[name] for name in HISTORY_FEATURES]
    dst = [[f[f"{name}_lag{lag}"] for name in HISTORY_FEATURES] for lag in HISTORY_LAGS]
    for row in weeks.itertuples(index=False):
        imp = imputed.loc[row.week]
        for k in range(len(dst) - 1, 0, -1):
            v[dst[k]] = v[dst[k - 1]]
        v[dst[0]] = v[src]
        attended = row.attended > 0
        v[f["progress"]] = (row.week + 1) / EPISODE_WEEKS
        v[f["load"]] = row.load if not np.isnan(row.load) else v[f["load"]]
        v[f["sessions"]] = row.sessions
        v[f["supervised"]], v[f["remote"]] = float(row.delivery == 2), float(row.delivery == 1)
        v[f["session_pain_mean"]] = row.session_pain_mean if attended and not np.isnan(row.session_pain_mean) else 0.0
        v[f["session_pain_max"]] = row.session_pain_max if attended and not np.isnan(row.session_pain_max) else 0.0
        change = row.morning_change_mean if not np.isnan(row.morning_change_mean) else imp["morning_change_mean"]
        v[f["morning_change"]] = change if attended and not np.isnan(change) else 0.0
        if imp["diary_days"] > 0 and not np.isnan(imp["diary_pain"]):
            v[f["diary_pain"]] = imp["diary_pain"]
        v[f["diary_days"]] = imp["diary_days"]
        v[f["rpe"]] = row.rpe_mean if attended and not np.isnan(row.rpe_mean) else 0.0
        v[f["attendance"]] = row.attended / row.sessions if row.sessions > 0 else 0.0
        v[f["sessions_attended"]] = row.attended
        v[f["flare_reported"]] = float(row.flare)
        v[f["function"]] = imp["function"]
        if not np.isnan(imp["capacity_test"]):
            v[f["capacity_test"]] = imp["capacity_test"]
    return v


def _scaled(values: np.ndarray) -> np.ndarray:
    """Clinical-unit records -> the policy's float32 observation (clipped to the documented bounds)."""
    return np.minimum(np.maximum(values / SCALES, LOW), HIGH).astype(np.float32)


# -------------------------------------------------------------------------------------------- forecast
def _last_prescription(history: History) -> dict[str, Any]:
    """The last week's prescription; sessions and delivery from the last week that had sessions."""
    weeks = history.weeks()
    with_sessions = weeks[weeks["sessions"] > 0]
    last = with_sessions.iloc[-1]
    return {"load": float(weeks["load"].iloc[-1]), "sessions": int(weeks["sessions"].iloc[-1]),
            "held_sessions": int(last["sessions"]), "delivery": int(last["delivery"])}


def _open_loop(plan: dict[str, Any], ramp: float = 0.2) -> OpenLoopPlans:
    """A plan ``{"target_load" (None: hold), "sessions", "delivery"}`` followed open-loop (the belief planner's
    choice, the clinician's plan): the load moves toward the target by at most ``ramp`` up and -50 % down per
    week from the observed last load, sessions and delivery held."""
    target = np.nan if plan["target_load"] is None else float(plan["target_load"])
    return OpenLoopPlans(target, plan["sessions"], plan["delivery"], ramp=ramp)


class _Hold(Policy):
    """Last week's prescription unchanged (sessions and delivery of the last week that had sessions)."""

    def __init__(self, last: dict[str, Any]) -> None:
        self.last = last

    def predict(self, obs: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        x, single = batch_obs(obs)
        n = len(x)
        load = np.full(n, self.last["load"])
        actions = encode_prescription(load, np.full(n, self.last["held_sessions"]), np.full(n, self.last["delivery"]),
                                      x[:, FEATURE_INDEX["load"]] * SCALES[FEATURE_INDEX["load"]])
        return (actions[0] if single else actions), state


def _start_batch(fit: PatientFit, values: np.ndarray, last: dict[str, Any], m: int,
                 rng: np.random.Generator) -> EpisodeBatch:
    """``m`` posterior particles as an episode batch at the patient's current week, observing ``values``."""
    index = fit.resample(m, rng)
    keys = rng.integers(0, np.iinfo(np.uint64).max, size=m, dtype=np.uint64, endpoint=True)
    sim = fit.particles.take(index, keys=keys)
    episode = episode_state(m, last_load=max(last["load"], LOAD_MIN),  # as recommend() decodes it (0 -> the minimum)
                            planned_sessions=max(last["held_sessions"], 1), delivery=last["delivery"],
                            week=fit.history.n_weeks)
    intake = fit.history.intake
    config = EnvConfig(condition=intake.condition, weeks=EPISODE_WEEKS, modality=intake.modality)
    columns = sim.cohort
    names = list(columns.columns)
    rows = [dict(zip(names, values, strict=True)) for values in zip(*(columns[c].tolist() for c in names), strict=True)]
    state = {"patients": rows, "keys": keys, "sim": sim.get_state(),
             "features": {"values": np.repeat(values[:, None], m, axis=1)}, "episode": episode}
    return EpisodeBatch.from_state(state, config)


def _forecast(base: EpisodeBatch, policy: Any, rules: SafetyRules, horizon: int) -> dict[str, np.ndarray]:
    """Follow ``policy`` (behind ``rules``, asked afresh each week as the clinic asks it) for ``horizon`` weeks on a
    copy of ``base``; ITT after dropout. Weekly ``pain`` (NRS), ``flares``, ``load`` (NaN after a dropout), per
    particle whether it ``dropped`` out, and the first week's prescription."""
    b = base.take(np.arange(base.n))  # same keys: every plan meets the same noise
    r = rollout(b, policy, horizon, shield=rules, fresh_state=True,
                record=("pain", "flares", "load", "sessions", "delivery"))
    return {"pain": r["pain"], "load": np.where(r.in_programme, r["load"], np.nan), "flares": r["flares"],
            "dropped": r.dropout_week > 0, "first_load": r["load"][0], "first_sessions": r["sessions"][0],
            "first_delivery": r["delivery"][0]}


def _plan_summary(label: str, r: dict[str, np.ndarray]) -> dict[str, Any]:
    pain = r["pain"]
    q10, q50, q90 = np.quantile(pain, [0.1, 0.5, 0.9], axis=1)
    with np.errstate(all="ignore"):
        load = np.array([np.nanmedian(row) if np.isfinite(row).any() else np.nan for row in r["load"]])
    return {
        "label": label,
        "pain_median": _round_list(q50), "pain_q10": _round_list(q10), "pain_q90": _round_list(q90),
        "pain_mean": _round_list(pain.mean(axis=1)),
        "load_median": _round_list(load, 3),
        "flare_probability": round(float((r["flares"].sum(axis=0) > 0).mean()), 3),
        "dropout_probability": round(float(r["dropped"].mean()), 3),
        "mean_pain": round(float(pain.mean()), 2),
    }


def _json_params(params: dict[str, Any]) -> dict[str, Any]:
    """A protocol's parameters as JSON values (a protocol is identified by name, parameters and adaptrx
    version, the output's ``adaptrx_version``)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()}


def _round_list(x: np.ndarray, digits: int = 2) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), digits) for v in np.asarray(x, dtype=float)]


# ------------------------------------------------------------------------------------------ recommend
@dataclass
class Recommendation:
    """What :func:`recommend` returns; :meth:`to_dict` is the JSON the CLI and the web API print."""

    history: History
    fit: PatientFit
    policy: _Policy
    prescription: dict[str, Any]
    bound_by: tuple[str, ...]
    explanations: dict[str, str]
    forecast: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (layout in the README's clinic section)."""
        h = self.history
        weeks = h.weeks()
        n = h.n_weeks
        bound = list(self.bound_by)
        summary_text = ("; ".join(f"{r}: {self.explanations[r]}" for r in bound) if bound
                        else "no safety rule had to change the policy's proposal")
        return {
            "adaptrx_version": __version__,
            "policy": {"id": self.policy.id, "kind": self.policy.kind, "policy_id": self.policy.policy_id,
                       "manifest_sha256": self.policy.manifest_sha256, "note": self.policy.note,
                       "evidence": self.policy.evidence,
                       "evidence_text": evidence.describe(self.policy.evidence) if self.policy.evidence else None,
                       **({"parameters": _json_params(self.policy.policy.protocol.params())}
                          if isinstance(self.policy.policy, _MidCourse) else {})},
            "patient": {"patient_id": h.intake.patient_id, "condition": h.intake.condition,
                        "weeks_of_history": n, "next_week": n + 1,
                        "next_week_start": (h.start + dt.timedelta(days=7 * n + 1)).isoformat()},
            "prescription": self.prescription,
            "safety": {"bound_by": bound, "summary": summary_text, "explanations": {
                r: self.explanations[r] for r in dict.fromkeys(
                    bound + list((self.forecast.get("clinician_plan") or {}).get("breaks", [])))}},
            "forecast": self.forecast,
            "history": {"weeks": [int(w) + 1 for w in weeks["week"]], "load": _round_list(weeks["load"], 3),
                        "sessions": [int(s) for s in weeks["sessions"]],
                        "attended": [int(a) for a in weeks["attended"]],
                        "pain_during": _round_list(weeks["session_pain_mean"]),
                        "pain_next_morning": _round_list(weeks["morning_pain_mean"])},
            "fit": summary(self.fit),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        """A plain-text report for a physiotherapist: the prescription first (in plain units, with the change
        from last week), the policy's proposal and the rules that changed it, the forecast, the warnings, why this
        policy, and the model's details last."""
        d = self.to_dict()
        p, rx, fc, pol = d["patient"], d["prescription"], d["forecast"], d["policy"]
        was = rx["last_week"]
        volume_change = "" if rx["volume_change"] is None else f", {rx['volume_change']:+.0%}"
        lines = [
            f"adaptrx recommendation for {p['patient_id'] or 'the patient'} ({p['condition']}), week {p['next_week']} "
            f"(from {p['next_week_start']}), after {p['weeks_of_history']} week(s) of history",
            "",
            "NEXT WEEK'S PRESCRIPTION",
            f"  sessions:  {rx['sessions']} a week (last week {was['sessions']}, {rx['sessions_change']:+d})",
            f"  load:      {rx['load']:.2f} x baseline capacity (last week {was['load']:.2f}, "
            f"{rx['load_change']:+.0%})",
            f"  volume:    sessions x load {rx['volume']:.2f} (last week {was['sessions'] * was['load']:.2f}"
            f"{volume_change})",
            f"  delivery:  {rx['delivery']} (last week {was['delivery']})",
            f"  {LOAD_UNIT}",
            "",
            "PROPOSAL AND SAFETY RULES",
            f"  the policy proposed {rx['proposed']['sessions']} session(s) at load {rx['proposed']['load']:.2f}, "
            f"{rx['proposed']['delivery']}",
        ]
        if d["safety"]["bound_by"]:
            lines += [f"  changed by rule {r}: {d['safety']['explanations'][r]}" for r in d["safety"]["bound_by"]]
        else:
            lines.append("  no safety rule had to change it")
        own = fc.get("clinician_plan")
        if own:
            req, first = own["requested"], own["first_week"]
            lines += ["", "YOUR PLAN", f"  requested: {req['sessions']} session(s) at load {req['load']:.2f}, "
                      f"{req['delivery']}; first week with the safety rules: {first['sessions']} session(s) at load "
                      f"{first['load']:.2f}, {first['delivery']}"]
            if not own["reachable_in_one_week"]:
                lines.append("  the load moves at most 50 % a week: the plan reaches its load over several weeks")
            lines += [f"  breaks rule {r}: {d['safety']['explanations'][r]}" for r in own["breaks"]] or [
                "  it breaks no safety rule"]
        w = [0, len(fc["weeks"]) // 2, len(fc["weeks"]) - 1]
        lines += ["", f"FORECAST: {FORECAST_MEANING}", f"  weeks {', '.join(str(fc['weeks'][i]) for i in w)} "
                  f"(median [10-90 % band]); chance within {len(fc['weeks'])} weeks of a flare / of dropping out"]
        for name, plan in fc["plans"].items():
            bands = ", ".join(f"{plan['pain_median'][i]:.1f} [{plan['pain_q10'][i]:.1f}-{plan['pain_q90'][i]:.1f}]"
                              for i in w)
            lines.append(f"  {name:16s} {bands}; flare {plan['flare_probability']:.0%}, "
                         f"dropout {plan['dropout_probability']:.0%}")
        lines.append(f"  {FLARE_MEANING}")
        lines += ["", "WARNINGS"] + ([f"  - {x}" for x in d["warnings"]] or ["  none"])
        lines += ["", "WHY THIS POLICY", f"  {pol['id']} ({pol['kind']})"
                  + (f", policy id {pol['policy_id']}" if pol["policy_id"] else "")
                  + (", parameters " + ", ".join(f"{k}={v}" for k, v in pol["parameters"].items())
                     + f", adaptrx {d['adaptrx_version']}" if "parameters" in pol else "")]
        if pol["evidence_text"]:
            lines.append(f"  {pol['evidence_text']}")
        lines += [f"  note: {note}" for note in d["notes"]]
        lines += ["", "MODEL DETAILS (the fitted virtual patient: posterior mean [10-90 %], prior mean)"]
        for name, row in d["fit"]["parameters"].items():
            lines.append(f"  {name:20s} {row['mean']:.3g} [{row['q10']:.3g}-{row['q90']:.3g}]  "
                         f"prior {row['prior_mean']:.3g}")
        lines.append(f"  ({d['fit']['particles']} particles, {d['fit']['unique_particles']} distinct, "
                     f"effective sample size {d['fit']['effective_sample_size']})")
        return "\n".join(lines)


def parse_plan(plan: str | dict[str, Any] | None, last: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The clinician's own plan, ``"sessions=3,load=0.45,delivery=home"`` or a mapping with those keys:
    ``{"sessions": 0-5, "load": 0.05-1.5 (x baseline capacity), "delivery": home|remote|supervised}``; a key left
    out keeps last week's value (``last``: :func:`_last_prescription`). ``None``/empty: no plan. Raises
    ``ValueError`` naming ``plan.<key>``."""
    if plan is None or (isinstance(plan, str) and not plan.strip()):
        return None
    if isinstance(plan, str):
        raw: dict[str, Any] = {}
        for part in plan.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"plan: expected key=value pairs such as sessions=3,load=0.45,delivery=home, "
                                 f"got {part.strip()!r}")
            raw[key.strip()] = value.strip()
    elif isinstance(plan, dict):
        raw = dict(plan)
    else:
        raise ValueError(f"plan: expected 'sessions=3,load=0.45,delivery=home', got {type(plan).__name__}")
    unknown = sorted(set(raw) - {"sessions", "load", "delivery"})
    if unknown:
        raise ValueError(f"plan.{unknown[0]}: unknown key; known: sessions, load, delivery")
    last = last or {}
    out: dict[str, Any] = {}
    try:
        sessions = float(raw.get("sessions", last.get("held_sessions", 3)))
    except (TypeError, ValueError):
        raise ValueError(f"plan.sessions: expected a whole number 0-5, got {raw.get('sessions')!r}") from None
    if not sessions.is_integer() or not 0 <= sessions <= 5:
        raise ValueError(f"plan.sessions: expected a whole number 0-5, got {raw.get('sessions')!r}")
    out["sessions"] = int(sessions)
    try:
        load = float(raw.get("load", last.get("load", 0.3)))
    except (TypeError, ValueError):
        raise ValueError(f"plan.load: expected a number {LOAD_MIN}-{LOAD_MAX} (x baseline capacity), got "
                         f"{raw.get('load')!r}") from None
    if not np.isfinite(load) or not LOAD_MIN <= load <= LOAD_MAX:
        raise ValueError(f"plan.load: expected a number {LOAD_MIN}-{LOAD_MAX} (x baseline capacity), got {load!r}")
    out["load"] = load
    delivery = raw.get("delivery", DELIVERIES[int(last.get("delivery", 2))])
    if delivery not in DELIVERIES:
        raise ValueError(f"plan.delivery: expected one of {', '.join(DELIVERIES)}, got {delivery!r}")
    out["delivery"] = delivery
    return out


def _plan_check(plan: dict[str, Any], acting: Policy, obs: np.ndarray, last_load: float,
                rules: SafetyRules) -> dict[str, Any]:
    """What the safety rules make of the clinician's plan (``acting``: the policy that follows it, as its forecast
    does) in its first week: the rules it breaks and the prescription they allow."""
    wanted, _ = acting.predict(obs, deterministic=True)
    wanted = np.asarray(wanted, dtype=np.float32).reshape(1, 3)
    target, _, _ = decode_continuous(wanted, np.array([last_load]))  # the load within one week's reach
    allowed, bound = rules.constrain(obs, wanted)
    load, sessions, delivery = decode_continuous(allowed, np.array([last_load]))
    return {"requested": dict(plan), "breaks": list(bound[0]),
            "first_week": {"sessions": int(sessions[0]), "load": round(float(load[0]), 3),
                           "delivery": DELIVERIES[int(delivery[0])]},
            "reachable_in_one_week": bool(abs(float(target[0]) - plan["load"]) < 1e-5)}


def recommend(history: History, policy: str | Path | None = None, horizon: int = 12, n_particles: int = 4000,
              seed: int = 0, rules: SafetyRules | None = None,
              plan: str | dict[str, Any] | None = None) -> Recommendation:
    """Next week's prescription for the patient of ``history`` (see the module docstring).

    Args:
        history: a validated history (:func:`adaptrx.clinic.history.parse_history`).
        policy: a policy directory, a clinical protocol name, or ``None`` for the default.
        horizon: weeks forecast (4-12).
        n_particles: particles of the fit (100-100000).
        seed: seed of the fit and the forecast (same inputs and seed, same output).
        rules: the safety rules (default :class:`SafetyRules` defaults); always applied.
        plan: the clinician's own plan (:func:`parse_plan`), forecast beside the others on the same particles
            with the same noise, behind the same rules (its target load held, reached at the pace they allow);
            the output names any rule it breaks.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or not 4 <= horizon <= 12:
        raise ValueError(f"horizon: must be an integer in 4-12 weeks, got {horizon!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    rules = rules if rules is not None else SafetyRules()
    last = _last_prescription(history)
    own = parse_plan(plan, last)
    resolved = _resolve(policy, history, last)
    fit = fit_patient(history, n_particles=n_particles, seed=seed)
    values = observation_values(history, fit)
    obs = _scaled(values)[None, :]
    rng = np.random.default_rng([int(seed), 0xF0CA])
    m = min(FORECAST_PARTICLES, fit.particles.n)
    base = _start_batch(fit, values, last, m, rng)
    acting = resolved.policy
    if resolved.kind == "planner":  # the oracle's planner from posterior particles (equally weighted draws)
        rows = np.arange(min(PLANNER_PARTICLES, m))
        # other noise than the forecast's: the plan is not chosen on the futures it is then shown with
        _, plan = plan_for_posterior(base.take(rows, keys=mix64(base.keys[rows] ^ np.uint64(0xB1A9))))
        acting = _open_loop(plan)
    elif reads_beliefs(getattr(acting, "feature_names", ())):  # the envs' filter over the log, the policy's particles
        particles = int((acting.manifest.get("env") or {}).get("belief_particles", 64))
        acting = _WithBeliefs(acting, belief_features(history, particles=particles, seed=seed))
    proposed, _ = acting.predict(obs, deterministic=True)
    proposed = np.asarray(proposed, dtype=np.float32).reshape(1, 3)
    allowed, bound = rules.constrain(obs, proposed)
    last_load = np.array([max(last["load"], LOAD_MIN)])
    p_load, p_sessions, p_delivery = decode_continuous(proposed, last_load)
    load, sessions, delivery = decode_continuous(allowed, last_load)
    last_sessions = int(last["held_sessions"])
    last_volume = last_load[0] * last_sessions
    prescription = {
        "sessions": int(sessions[0]), "load": round(float(load[0]), 3),
        "load_change": round(float(load[0] / last_load[0] - 1.0), 3),
        "sessions_change": int(sessions[0]) - last_sessions,
        "volume": round(float(load[0] * sessions[0]), 3),
        "volume_change": round(float(load[0] * sessions[0] / last_volume - 1.0), 3) if last_volume > 0 else None,
        "delivery": DELIVERIES[int(delivery[0])], "supervised": bool(delivery[0] == 2),
        "last_week": {"sessions": last_sessions, "load": round(float(last_load[0]), 3),
                      "delivery": DELIVERIES[int(last["delivery"])]},
        "proposed": {"sessions": int(p_sessions[0]), "load": round(float(p_load[0]), 3),
                     "delivery": DELIVERIES[int(p_delivery[0])]},
    }
    plans = {"recommended": (acting, f"{resolved.id} (recommended, with the safety rules)"),
             "hold": (_Hold(last), "hold: last week's prescription unchanged"),
             "pain_monitoring": (_protocol_policy("pain_monitoring", last),
                                 "pain-monitoring model from the current load")}
    plan_check = None
    if own is not None:
        follows = _open_loop({"target_load": own["load"], "sessions": own["sessions"],
                              "delivery": DELIVERIES.index(own["delivery"])}, ramp=0.5)
        plan_check = _plan_check(own, follows, obs, float(last_load[0]), rules)
        plans["clinician"] = (follows, f"your plan: {own['sessions']} session(s), load {own['load']:.2f}, "
                                       f"{own['delivery']} (with the safety rules)")
    forecast: dict[str, Any] = {"weeks": list(range(history.n_weeks + 1, history.n_weeks + horizon + 1)), "plans": {}}
    for name, (plan, label) in plans.items():
        r = _forecast(base, plan, rules, horizon)
        if name == "recommended":
            same = np.allclose(r["first_load"], load[0]) and (r["first_sessions"] == sessions[0]).all()
            assert same, "the forecast's first week must be the recommendation"
        if name == "clinician" and plan_check is not None:
            first = plan_check["first_week"]
            same = (np.allclose(r["first_load"], first["load"], atol=1e-3)
                    and (r["first_sessions"] == first["sessions"]).all())
            assert same, "the forecast's first week of the clinician's plan must be what the rules allow"
        forecast["plans"][name] = _plan_summary(label, r)
    if plan_check is not None:
        forecast["clinician_plan"] = plan_check
    notes = [resolved.note] if resolved.note else []
    if history.n_weeks + horizon > EPISODE_WEEKS:
        notes.append(f"the forecast runs past week {EPISODE_WEEKS}, the programme length the policy was trained for")
    warnings = [*resolved.warnings, *fit_warnings(fit), *gap_warnings(history),
                *risk_warnings(forecast["plans"]["recommended"], forecast["plans"]["hold"])]
    return Recommendation(history=history, fit=fit, policy=resolved, prescription=prescription,
                          bound_by=tuple(bound[0]), explanations=_rule_explanations(rules), forecast=forecast,
                          notes=notes, warnings=warnings)


def fit_warnings(fit: PatientFit) -> list[str]:
    """A poor fit: the effective sample size fell below :data:`POOR_FIT_ESS` of the particles at some step (the
    log is unusual for the condition's prior), or the particles descend from few prior draws."""
    out = []
    n = fit.particles.n
    ess = np.asarray(fit.ess, dtype=float)
    if len(ess) and ess.min() < POOR_FIT_ESS * n:
        step = int(ess.argmin())
        when = "at intake" if step == 0 else f"after week {step}"
        out.append(f"poor fit: the effective sample size fell to {ess.min():.0f} of {n} particles {when} (below "
                   f"{POOR_FIT_ESS:.0%}): this log is unusual for the {fit.history.intake.condition} prior, so the "
                   "forecast bands are likely too narrow; check the log for entry errors")
    if fit.unique_particles < 20:
        out.append(f"poor fit: the posterior descends from only {fit.unique_particles} prior draws; the intervals "
                   "may be too narrow (try more particles)")
    return out


def gap_warnings(history: History) -> list[str]:
    """Weeks of the log without any session row (neither attended nor missed), named with their dates: the fit
    reads them as weeks off."""
    weeks = history.weeks()
    empty = (weeks["sessions"] == 0).to_numpy()
    out = []
    w = 0
    while w < len(empty):
        if not empty[w]:
            w += 1
            continue
        end = w
        while end + 1 < len(empty) and empty[end + 1]:
            end += 1
        first = weeks["start"].iloc[w]
        last = weeks["start"].iloc[end] + dt.timedelta(days=6)
        span = f"week {w + 1}" if end == w else f"weeks {w + 1}-{end + 1}"
        out.append(f"gap in the log: no session recorded from {first.isoformat()} to {last.isoformat()} ({span}); "
                   "the model assumes no exercise then: if sessions took place, log them")
        w = end + 1
    return out


def risk_warnings(recommended: dict[str, Any], hold: dict[str, Any]) -> list[str]:
    """The recommendation's own forecast is worse than holding last week's prescription on flare or dropout risk
    by more than :data:`RISK_MARGIN` (absolute)."""
    out = []
    for key, what in (("flare_probability", "a flare"), ("dropout_probability", "dropping out")):
        if recommended[key] > hold[key] + RISK_MARGIN:
            out.append(f"higher risk than holding: the forecast chance of {what} within the horizon is "
                       f"{recommended[key]:.0%} under the recommendation vs {hold[key]:.0%} if last week's "
                       f"prescription is held (margin {RISK_MARGIN:.0%}); consider holding")
    return out
