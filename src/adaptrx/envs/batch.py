"""The batched episode engine shared by the single environments and :class:`PatientVecEnv`.

:class:`EpisodeBatch` holds ``n`` patients, each in its own episode, and steps all of them with one call
of the batched simulator. The single Gymnasium env is an ``EpisodeBatch`` of one; the vector env is one of
``num_envs``. Both therefore produce identical per-patient observations, rewards and infos for the same
patient and noise seed, and neither duplicates the dynamics or the reward.

Patient sampling: an episode's patient and noise are fixed by one integer drawn from the env's
``np_random`` (its *episode seed*): the patient is row 0 of
``sample_patients(condition, 1, episode_seed, split)`` and its noise key is
``stream_keys([patient_id], episode_seed)``. ``reset(seed=s)`` therefore fixes the patient and every random
draw of the episode; a given cohort row can be replayed with ``options={"patient": row}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from adaptrx.envs.actions import LOAD_MAX, LOAD_MIN
from adaptrx.envs.features import FeatureBuffer
from adaptrx.envs.reward import COMPONENTS, RewardWeights, outcome_reward, week_components
from adaptrx.patient import HOME_ALONE, MODALITIES, REMOTE, SPLITS, SUPERVISED, ModelConstants, PatientSimulator
from adaptrx.patient.cohort import ADHERENCE_CLASSES, ID_COLUMNS, conditions, sample_patients
from adaptrx.patient.simulator import WeekResult, stream_keys

#: Largest episode seed (exclusive) drawn from an env's generator.
EPISODE_SEED_HIGH = 2**63


@dataclass
class EnvConfig:
    """Keyword arguments shared by every progression env (validated here, named in errors).

    Attributes:
        condition: patient prior (``knee_oa``, ``chronic_low_back_pain``, ``fibromyalgia``,
            ``lumbar_spinal_stenosis``).
        split: ``train``, ``val``, ``test`` or ``ood`` patients.
        weeks: episode length in weeks (1-104).
        modality: exercise modality (``resistance``, ``aerobic``, ``mind_body``, ``mixed``).
        reward: reward weights (:class:`RewardWeights` or a mapping of overrides).
        initial_load: "last load" of week 1 (baseline-capacity units, 0.05-1.5).
        initial_sessions: planned sessions/week of the discrete env's first week (1-5).
        initial_delivery: the discrete env's first delivery (0 home, 1 remote, 2 supervised).
    """

    condition: str = "knee_oa"
    split: str = "train"
    weeks: int = 26
    modality: str = "resistance"
    reward: Any = None
    initial_load: float = 0.3
    initial_sessions: int = 3
    initial_delivery: int = HOME_ALONE

    def __post_init__(self) -> None:
        if self.condition not in conditions():
            raise ValueError(f"condition: unknown condition {self.condition!r}; known: {', '.join(conditions())}")
        if self.split not in SPLITS:
            raise ValueError(f"split: must be one of {SPLITS}, got {self.split!r}")
        if isinstance(self.weeks, bool) or not isinstance(self.weeks, int | np.integer) or not 1 <= self.weeks <= 104:
            raise ValueError(f"weeks: must be an integer in 1-104, got {self.weeks!r}")
        if self.modality not in MODALITIES:
            raise ValueError(f"modality: must be one of {sorted(MODALITIES)}, got {self.modality!r}")
        self.reward = RewardWeights.parse(self.reward)
        if not LOAD_MIN <= float(self.initial_load) <= LOAD_MAX:
            raise ValueError(f"initial_load: must be in [{LOAD_MIN}, {LOAD_MAX}], got {self.initial_load!r}")
        if self.initial_sessions not in range(1, 6):
            raise ValueError(f"initial_sessions: must be an integer 1-5, got {self.initial_sessions!r}")
        if self.initial_delivery not in (HOME_ALONE, REMOTE, SUPERVISED):
            raise ValueError(f"initial_delivery: must be 0, 1 or 2, got {self.initial_delivery!r}")


@dataclass
class StepBatch:
    """What one batched step returns, arrays over the ``n`` patients of the batch."""

    obs: np.ndarray  # (n, n_features) float32
    reward: np.ndarray  # (n,)
    terminated: np.ndarray  # bool: dropped out
    truncated: np.ndarray  # bool: reached the horizon
    components: np.ndarray  # (len(COMPONENTS), n)
    cost: np.ndarray  # (n,) 1.0 for a week with in-session pain > 5 or a flare
    result: WeekResult
    load: np.ndarray
    sessions: np.ndarray
    delivery: np.ndarray
    pain_after_dropout: dict[int, np.ndarray]  # patient index -> weekly no-exercise pain after dropout


def patient_from_seed(config: EnvConfig, episode_seed: int) -> dict[str, Any]:
    """The cohort row (column -> scalar) of the patient an episode seed selects."""
    cols = sample_patients(config.condition, 1, int(episode_seed), config.split)
    return {name: values[0] for name, values in cols.items()}


def check_patient_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a user-supplied cohort row (``options={"patient": row}``); returns a plain dict."""
    if hasattr(row, "to_dict"):
        row = row.to_dict()
    if not isinstance(row, Mapping):
        raise ValueError(f"options.patient: expected a cohort row (mapping), got {type(row).__name__}")
    needed = set(sample_patients("knee_oa", 1, 0, "train"))
    missing = sorted(needed - set(row))
    if missing:
        raise ValueError(f"options.patient: missing column(s) {missing}")
    out = dict(row)
    for name in needed - set(ID_COLUMNS):
        try:
            value = float(out[name])
        except (TypeError, ValueError):
            raise ValueError(f"options.patient.{name}: must be a number, got {out[name]!r}") from None
        if not np.isfinite(value):
            raise ValueError(f"options.patient.{name}: must be finite, got {value}")
        out[name] = value
    if out["adherence_class"] not in ADHERENCE_CLASSES:
        raise ValueError(f"options.patient.adherence_class: must be one of {ADHERENCE_CLASSES}")
    for name in ID_COLUMNS:
        out[name] = str(out[name])
    return out


def _columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Cohort rows as the column mapping the simulator takes."""
    return {name: np.array([r[name] for r in rows], dtype=object if name in ID_COLUMNS else np.float64)
            for name in rows[0]}


class EpisodeBatch:
    """``n`` patients, each in its own episode of ``config.weeks`` weeks, stepped together.

    Args:
        n: number of patients (>= 1).
        config: env settings.
        constants: model constants (default: the calibrated ones).
    """

    def __init__(self, n: int, config: EnvConfig, constants: ModelConstants | None = None) -> None:
        self.n = int(n)
        self.config = config
        self.constants = constants
        self.patients: list[dict[str, Any]] = [patient_from_seed(config, 0) for _ in range(self.n)]
        self.keys = np.zeros(self.n, dtype=np.uint64)
        self.sim = PatientSimulator(_columns(self.patients), keys=self.keys, modality=config.modality,
                                    constants=constants)
        self.features = FeatureBuffer(self.n)
        self.week = np.zeros(self.n, dtype=np.int64)
        self.last_load = np.full(self.n, float(config.initial_load))
        self.plan = np.full(self.n, config.initial_sessions, dtype=np.int64)
        self.delivery = np.full(self.n, config.initial_delivery, dtype=np.int64)
        self.done = np.ones(self.n, dtype=bool)  # no episode running until reset

    # ------------------------------------------------------------------ reset
    def reset(self, index: np.ndarray, rows: list[dict[str, Any]], episode_seeds: np.ndarray) -> np.ndarray:
        """Start new episodes for patients ``index`` with the given cohort rows and episode seeds.

        Returns the first observations of those patients, shape ``(len(index), n_features)``.
        """
        index = np.asarray(index, dtype=np.int64)
        keys = np.array([stream_keys([r["patient_id"]], int(s))[0] for r, s in zip(rows, episode_seeds, strict=True)],
                        dtype=np.uint64)
        self.sim.replace(index, _columns(rows), keys)
        for j, i in enumerate(index):
            self.patients[i] = rows[j]
        self.keys[index] = keys
        self.week[index] = 0
        self.last_load[index] = self.config.initial_load
        self.plan[index] = self.config.initial_sessions
        self.delivery[index] = self.config.initial_delivery
        self.done[index] = False
        intake = {name: values[index] for name, values in self.sim.intake.items()}
        self.features.reset(index, intake, self.intake_function(index), self.config.initial_load)
        return self.features.observation()[index]

    def intake_function(self, index: np.ndarray) -> np.ndarray:
        """Intake function questionnaire (0-100): true intake function plus the weekly report noise.

        Drawn on the intake day (day 0) of the ``obs_function`` channel, which weekly reports never use.
        """
        k = self.sim.k
        z = self.sim.noise.subset(index).normal(["obs_function"], 0)[0, 0, :, 0]
        return np.clip(np.rint(self.sim.baseline_function()[index] + k.function_sd * z), 0.0, 100.0)

    # ------------------------------------------------------------------- step
    def step(self, load: np.ndarray, sessions: np.ndarray, delivery: np.ndarray) -> StepBatch:
        """Simulate one week of every patient's prescription (patients whose episode is done must be reset
        first). ``load`` in baseline-capacity units, ``sessions`` 0-5, ``delivery`` codes."""
        if self.done.any():
            raise RuntimeError("step: an episode has ended; reset it before stepping")
        cfg, w = self.config, self.config.reward
        result = self.sim.step_week(load, sessions, delivery)
        self.week += 1
        self.last_load = np.asarray(load, dtype=np.float64).copy()
        self.delivery = np.asarray(delivery, dtype=np.int64).copy()
        self.features.update(result, load, sessions, delivery, self.week / cfg.weeks)
        terminated = np.asarray(result.new_dropout, dtype=bool)
        truncated = (self.week >= cfg.weeks) & ~terminated
        flare = np.asarray(result.flares) > 0
        dropout_value = np.zeros(self.n)
        tails: dict[int, np.ndarray] = {}
        if terminated.any():
            tails = self.no_exercise_tail(np.flatnonzero(terminated))
            for i, (pain, function, flares) in tails.items():
                dropout_value[i] = outcome_reward(w, pain, function, flares).sum()
        sessions_attended = np.asarray(result.sessions_attended, dtype=np.float64)
        components = week_components(
            w, result.pain, result.function, flare,
            supervised_sessions=sessions_attended * (np.asarray(delivery) == SUPERVISED),
            remote_week=(np.asarray(delivery) == REMOTE) & (np.asarray(sessions) > 0),
            dropout_value=dropout_value,
        )
        spm = np.asarray(result.session_pain_max)
        cost = ((np.nan_to_num(spm, nan=0.0) > 5.0) | flare).astype(np.float64)
        self.done = terminated | truncated
        return StepBatch(
            obs=self.features.observation(), reward=components.sum(axis=0), terminated=terminated,
            truncated=truncated, components=components, cost=cost, result=result,
            load=np.asarray(load, dtype=np.float64), sessions=np.asarray(sessions), delivery=np.asarray(delivery),
            pain_after_dropout={i: tail[0] for i, tail in tails.items()},
        )

    def no_exercise_tail(self, index: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Forward-simulate patients ``index`` without exercise from their current state to the horizon.

        Uses each patient's own noise (the same draws it would have met), so the tail is the outcome an
        intention-to-treat analysis assigns to a dropout. Returns, per patient, weekly arrays of mean pain
        (NRS), function (0-100) and flare onsets (bool) for the remaining weeks (possibly empty).
        """
        remaining = self.config.weeks - self.week[index]
        horizon = int(remaining.max(initial=0))
        out: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if horizon == 0:
            return {int(i): (np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)) for i in index}
        sub = PatientSimulator(_columns([self.patients[i] for i in index]), keys=self.keys[index],
                               modality=self.config.modality, constants=self.constants)
        sub.set_state({name: value[index] for name, value in self.sim.get_state().items()})
        pain, function, flares = np.empty((horizon, len(index))), np.empty((horizon, len(index))), np.empty(
            (horizon, len(index)), dtype=bool)
        for t in range(horizon):
            r = sub.step_week(0.0, 0, HOME_ALONE)
            pain[t], function[t], flares[t] = r.pain, r.function, np.asarray(r.flares) > 0
        for j, i in enumerate(index):
            m = int(remaining[j])
            out[int(i)] = (pain[:m, j].copy(), function[:m, j].copy(), flares[:m, j].copy())
        return out

    # ---------------------------------------------------------------- infos
    def infos(self, step: StepBatch, indices: list[int] | range) -> list[dict[str, Any]]:
        """The ``info`` dicts of patients ``indices`` after a step (``DESIGN.md`` section 3)."""
        r = step.result
        latent = self.sim.get_state()
        names = list(latent)
        columns = {
            "pain": r.pain.tolist(), "function": r.function.tolist(),
            "sessions": np.asarray(step.sessions).tolist(), "attended": np.asarray(r.sessions_attended).tolist(),
            "flares": np.asarray(r.flares).tolist(), "dropped_out": np.asarray(r.dropped_out).tolist(),
            "cost": step.cost.tolist(), "week": self.week.tolist(), "load": step.load.tolist(),
            "delivery": np.asarray(step.delivery).tolist(), "components": step.components.T.tolist(),
            "latent": np.stack([np.asarray(latent[k], dtype=np.float64) for k in names], axis=1).tolist(),
        }
        out = []
        for i in indices:
            info: dict[str, Any] = {
                "pain": columns["pain"][i],
                "function": columns["function"][i],
                "sessions_prescribed": int(columns["sessions"][i]),
                "sessions_attended": int(columns["attended"][i]),
                "flare": columns["flares"][i] > 0,
                "dropped_out": bool(columns["dropped_out"][i]),
                "rewards": dict(zip(COMPONENTS, columns["components"][i], strict=True)),
                "cost": columns["cost"][i],
                "state": dict(zip(names, columns["latent"][i], strict=True)),
                "week": columns["week"][i],
                "prescription": {"load": columns["load"][i], "sessions": int(columns["sessions"][i]),
                                 "delivery": int(columns["delivery"][i])},
            }
            if i in step.pain_after_dropout:
                info["pain_after_dropout"] = step.pain_after_dropout[i].tolist()
            out.append(info)
        return out

    def reset_info(self, i: int) -> dict[str, Any]:
        """The ``info`` dict of patient ``i`` after a reset: true parameters and intake records."""
        return {
            "patient": dict(self.patients[i]),
            "patient_id": self.patients[i]["patient_id"],
            "intake": {name: float(values[i]) for name, values in self.sim.intake.items()},
            "week": 0,
        }

    # ---------------------------------------------------------------- state
    def get_state(self) -> dict[str, Any]:
        """Everything needed to resume these episodes later (for what-if rollouts): copies."""
        return {
            "patients": [dict(p) for p in self.patients],
            "keys": self.keys.copy(),
            "sim": self.sim.get_state(),
            "features": self.features.state(),
            "week": self.week.copy(),
            "last_load": self.last_load.copy(),
            "plan": self.plan.copy(),
            "delivery": self.delivery.copy(),
            "done": self.done.copy(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` snapshot (the patients may differ from the current ones)."""
        try:
            patients, keys = [dict(p) for p in state["patients"]], np.array(state["keys"], dtype=np.uint64)
            if len(patients) != self.n:
                raise ValueError(f"state.patients: expected {self.n} patients, got {len(patients)}")
            if [p["patient_id"] for p in patients] != [p["patient_id"] for p in self.patients] or not np.array_equal(
                keys, self.keys
            ):
                self.sim.replace(np.arange(self.n), _columns(patients), keys)
            self.sim.set_state(state["sim"])
            self.features.set_state(state["features"])
            self.week = np.array(state["week"], dtype=np.int64)
            self.last_load = np.array(state["last_load"], dtype=np.float64)
            self.plan = np.array(state["plan"], dtype=np.int64)
            self.delivery = np.array(state["delivery"], dtype=np.int64)
            self.done = np.array(state["done"], dtype=bool)
        except KeyError as exc:
            raise ValueError(f"state: missing key {exc.args[0]!r}") from None
        self.patients, self.keys = patients, keys
