"""The batched episode engine shared by the single environments and :class:`PatientVecEnv`.

:class:`EpisodeBatch` holds ``n`` patients, each in its own episode, and steps all of them with one call
of the compiled env step (:mod:`adaptrx.envs.compiled_step`, which runs the patient kernel). The single Gymnasium
env is an ``EpisodeBatch`` of one; the vector env is one of ``num_envs``. Both therefore produce identical
per-patient observations, rewards and infos for the same patient and noise seed, and neither duplicates
the dynamics or the reward.

Patient sampling: an episode's patient and noise are fixed by one integer drawn from the env's
``np_random`` (its *episode seed*): the patient is ``sample_patient(condition, episode_seed, split)`` (row 0
of ``sample_patients(condition, 1, episode_seed, split)``) and its noise key is
``stream_keys([patient_id], episode_seed)``. ``reset(seed=s)`` therefore fixes the patient and every random
draw of the episode; a given cohort row can be replayed with ``options={"patient": row}``. The vector env
draws the patients of many episode seeds at once (:func:`new_patients`, :meth:`EpisodeBatch.reset_drawn`:
the same patients), and their cohort rows (``patients``) are built only when read (:class:`PatientRows`).

Infos: :func:`info_dicts` builds the ``info`` dicts of ``DESIGN.md`` section 3 from a step's work block, the
latent state and the weeks done; the single env builds its one dict every step, the vector env only for the
envs and keys that are read (:mod:`adaptrx.envs.vec_env`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from adaptrx.envs import compiled_step as engine
from adaptrx.envs.actions import LOAD_MAX, LOAD_MIN, move_indices
from adaptrx.envs.belief import BELIEF_FEATURES, INTAKE_RECORDS, BeliefFilter
from adaptrx.envs.features import FEATURE_NAMES, HIGH, LOW, FeatureBuffer
from adaptrx.envs.reward import COMPONENTS, RewardWeights, dropout_cost
from adaptrx.patient import HOME_ALONE, MODALITIES, REMOTE, SPLITS, SUPERVISED, ModelConstants, PatientSimulator
from adaptrx.patient.cohort import (
    ADHERENCE_CLASSES,
    ID_COLUMNS,
    PatientDraws,
    conditions,
    draw_patients,
    sample_patient,
)
from adaptrx.patient.generators import EPISODE_SEED_HIGH as EPISODE_SEED_HIGH
from adaptrx.patient.kernel import Out, St
from adaptrx.patient.simulator import (
    PARAM_COLUMNS,
    SIMULATOR_ERRORS,
    WeekResult,
    padded_matrix,
    stream_keys,
    week_result,
)

_STATE_NAMES = tuple(m.name for m in St)
# rows of the work block an info dict reads, in the order infos() unpacks them
_INFO_ROWS = np.array(
    [engine.W_RX, engine.W_RX + 1, engine.W_RX + 2]
    + [engine.W_OUT + int(r) for r in (Out.pain, Out.function, Out.sessions_attended, Out.flares, Out.dropped_out)]
    + [engine.W_RECORD + r for r in range(engine.R_DROPOUT + 1)] + [engine.W_RECORD + engine.R_COST]
)
_INFO_GETTER = operator.itemgetter(*_INFO_ROWS.tolist())
# the week's records the belief filter weighs: name -> row of the simulator's week output
_BELIEF_RECORDS = {"attended": int(Out.sessions_attended), "session_pain_mean": int(Out.session_pain_mean),
                   "morning_change_mean": int(Out.morning_change_mean), "rpe_mean": int(Out.rpe_mean),
                   "flare": int(Out.flare_reported)}


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
        belief: add the belief features (:data:`adaptrx.envs.belief.BELIEF_FEATURES`, names ``belief_*``) of an
            online particle filter over the patient's hidden parameters to the observation.
        belief_particles: particles per patient of that filter (16-4096).
    """

    condition: str = "knee_oa"
    split: str = "train"
    weeks: int = 26
    modality: str = "resistance"
    reward: Any = None
    initial_load: float = 0.3
    initial_sessions: int = 3
    initial_delivery: int = HOME_ALONE
    belief: bool = False
    belief_particles: int = 64

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
        if not isinstance(self.belief, bool | np.bool_):
            raise ValueError(f"belief: must be true or false, got {self.belief!r}")
        p = self.belief_particles
        if isinstance(p, bool) or not isinstance(p, int | np.integer) or not 16 <= p <= 4096:
            raise ValueError(f"belief_particles: must be an integer in 16-4096, got {p!r}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the observation's features (the clinical records, then the belief features if on)."""
        return FEATURE_NAMES + (BELIEF_FEATURES if self.belief else ())

    @property
    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` float32 bounds of the observation (belief features lie in [0, 1])."""
        extra = len(BELIEF_FEATURES) if self.belief else 0
        return (np.concatenate([LOW, np.zeros(extra, np.float32)]),
                np.concatenate([HIGH, np.ones(extra, np.float32)]))


def env_config(**kwargs: Any) -> EnvConfig:
    """An :class:`EnvConfig` from env keyword arguments; an unknown keyword is a ``ValueError`` naming it."""
    known = {f.name for f in fields(EnvConfig)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(f"unknown keyword argument(s) {unknown}; known: {sorted(known)}")
    return EnvConfig(**kwargs)


def episode_state(n: int, *, last_load: float | np.ndarray, planned_sessions: float | np.ndarray,
                  delivery: float | np.ndarray, week: int | np.ndarray) -> np.ndarray:
    """The ``"episode"`` entry of an :meth:`EpisodeBatch.get_state` snapshot of ``n`` patients whose episodes are
    running after ``week`` weeks (0-104), with the prescription carried to the next week: ``last_load``
    (baseline-capacity units, 0.05-1.5), the discrete env's ``planned_sessions`` (1-5) and ``delivery`` (0 home
    alone, 1 remote, 2 supervised); scalars or arrays ``(n,)``. For starting episodes mid-course (the clinic's
    forecast from a patient's log) with :meth:`EpisodeBatch.from_state`."""
    episode = np.zeros((engine.N_EPISODE, int(n)))
    episode[engine.E_LAST_LOAD], episode[engine.E_PLAN] = last_load, planned_sessions
    episode[engine.E_DELIVERY], episode[engine.E_WEEK] = delivery, week
    return episode


@dataclass
class StepBatch:
    """What one batched step returns: the observations and the step's work block (views below)."""

    obs: np.ndarray  # (n, n_features) float32
    work: np.ndarray  # (engine.N_WORK, n): prescription, simulator output, step record
    pain_after_dropout: Mapping[int, list[float]]  # patient index -> weekly no-exercise pain after dropout
    # dropouts whose tails are still running (EpisodeBatch.settle): index, weeks left, remaining, job or Future
    _dropouts: tuple[np.ndarray, np.ndarray, np.ndarray, Any] | None = field(default=None, repr=False)

    @property
    def rx(self) -> np.ndarray:
        """``(3, n)``: this week's load, sessions and delivery."""
        return self.work[engine.W_RX : engine.W_OUT]

    @property
    def out(self) -> np.ndarray:
        """The simulator's week, rows named by :class:`~adaptrx.patient.kernel.Out`."""
        return self.work[engine.W_OUT : engine.W_RECORD]

    @property
    def record(self) -> np.ndarray:
        """``(engine.N_RECORD, n)``: reward components, reward, cost, terminated, truncated."""
        return self.work[engine.W_RECORD :]

    @property
    def load(self) -> np.ndarray:
        return self.work[engine.W_RX]

    @property
    def sessions(self) -> np.ndarray:
        return self.work[engine.W_RX + 1]

    @property
    def delivery(self) -> np.ndarray:
        return self.work[engine.W_RX + 2]

    @property
    def reward(self) -> np.ndarray:
        return self.work[engine.W_RECORD + engine.R_REWARD]

    @property
    def components(self) -> np.ndarray:
        """``(len(COMPONENTS), n)`` in :data:`~adaptrx.envs.reward.COMPONENTS` order."""
        return self.work[engine.W_RECORD : engine.W_RECORD + len(COMPONENTS)]

    @property
    def cost(self) -> np.ndarray:
        return self.work[engine.W_RECORD + engine.R_COST]

    @property
    def terminated(self) -> np.ndarray:
        return self.work[engine.W_RECORD + engine.R_TERMINATED] != 0.0

    @property
    def truncated(self) -> np.ndarray:
        return self.work[engine.W_RECORD + engine.R_TRUNCATED] != 0.0

    @property
    def result(self) -> WeekResult:
        """The simulator's :class:`~adaptrx.patient.simulator.WeekResult` view of the week."""
        return week_result(self.out)


#: How :meth:`EpisodeBatch.step_actions` may hand work to another thread: ``submit(fn, *args) -> Future``.
Submit = Callable[..., "Future[Any]"]
#: Fewest patient-weeks of dropout tails worth handing to another thread (fewer run at once: ~0.5 us each).
MIN_SUBMITTED_TAIL_WEEKS = 256


def _tails(P: np.ndarray, S: np.ndarray, K: np.ndarray, keys: np.ndarray, remaining: np.ndarray,
           weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The untreated tails of the patients whose columns ``P``, ``S``, ``keys`` hold (copies), ``remaining`` weeks
    each: their ``dropout`` reward terms (before the penalty) and weekly pain ``(m, max(remaining))``
    (:func:`~adaptrx.envs.compiled_step.untreated_tails`)."""
    pain = np.empty((len(remaining), int(remaining.max(initial=0))))
    return engine.untreated_tails(P, S, K, keys, remaining, weights, pain), pain


def patient_from_seed(config: EnvConfig, episode_seed: int) -> dict[str, Any]:
    """The cohort row (column -> scalar) of the patient an episode seed selects."""
    return sample_patient(config.condition, int(episode_seed), config.split)


@dataclass(frozen=True)
class NewPatients:
    """Patients drawn for new episodes, ready to start (:meth:`EpisodeBatch.reset_drawn`): row ``j`` is the
    patient episode seed ``draws.seeds[j]`` selects, ``ids[j]`` its ``patient_id`` (``str``, object array) and
    ``keys[j]`` its noise-stream key for that episode seed (``uint64``)."""

    draws: PatientDraws
    ids: np.ndarray
    keys: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


def new_patients(config: EnvConfig, episode_seeds: np.ndarray) -> NewPatients:
    """The patients of many episode seeds (``uint64`` ``(m,)``, m >= 1) at once: the patients
    :func:`patient_from_seed` gives and the keys :func:`episode_keys` gives, bit for bit, with no per-patient
    Python work. A pure function of its arguments, so it may run ahead in another thread."""
    draws = draw_patients(config.condition, episode_seeds, config.split)
    id_text = draws.patient_id_text()
    keys = stream_keys(id_text, draws.seeds)  # = episode_keys(ids, seeds), without converting the ids
    return NewPatients(draws, id_text.astype(object), keys)


def check_patient_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a user-supplied cohort row (``options={"patient": row}``); returns a plain dict."""
    if hasattr(row, "to_dict"):
        row = row.to_dict()
    if not isinstance(row, Mapping):
        raise ValueError(f"options.patient: expected a cohort row (mapping), got {type(row).__name__}")
    missing = [name for name in (*ID_COLUMNS, *PARAM_COLUMNS) if name not in row]
    if missing:
        raise ValueError(f"options.patient: missing column(s) {missing}")
    out = dict(row)
    for name in PARAM_COLUMNS:
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


def episode_patient(config: EnvConfig, options: Mapping[str, Any] | None, episode_seed: int) -> dict[str, Any]:
    """The patient of a new episode: ``options["patient"]`` (validated) if given, else the one the episode
    seed selects. ``options`` may hold only ``patient``."""
    options = options or {}
    unknown = set(options) - {"patient"}
    if unknown:
        raise ValueError(f"options: unknown key(s) {sorted(unknown)}; known: ['patient']")
    if "patient" in options:
        return check_patient_row(options["patient"])
    return patient_from_seed(config, episode_seed)


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Cohort rows as the column mapping the simulator takes."""
    if len(rows) == 1:  # a single env's reset
        return {name: [value] for name, value in rows[0].items()}
    return {name: [r[name] for r in rows] for name in rows[0]}


def episode_keys(patient_ids: Iterable[str], episode_seeds: Iterable[int]) -> np.ndarray:
    """Noise-stream key of each patient for its own episode seed: ``stream_keys([id], seed)``, ``uint64``."""
    seeds = episode_seeds if isinstance(episode_seeds, np.ndarray) else np.asarray(list(episode_seeds))
    ids = patient_ids if isinstance(patient_ids, np.ndarray) else list(patient_ids)
    return stream_keys(ids, seeds.reshape(-1))  # one compiled call (per-patient seeds)


class PatientRows(Sequence[dict[str, Any]]):
    """The cohort row (column -> scalar, as :func:`~adaptrx.patient.cohort.sample_patient` gives) of each
    patient of a batch. Rows of patients drawn by :meth:`EpisodeBatch.reset_drawn` are built from their
    :class:`~adaptrx.patient.cohort.PatientDraws` on first read (then kept), so a reset of many patients
    builds no dicts."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self._rows: list[dict[str, Any]] = list(rows)
        self._draws = np.full(len(self._rows), None, dtype=object)  # PatientDraws of rows not built yet
        self._pos = np.zeros(len(self._rows), dtype=np.int64)  # their row in it

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self._rows)))]
        draws = self._draws[i]
        if draws is not None:
            self._rows[i] = draws.row(int(self._pos[i]))
            self._draws[i] = None
        return self._rows[i]

    def set_rows(self, index: np.ndarray, rows: list[dict[str, Any]]) -> None:
        """Patients ``index`` get the given rows."""
        for j, i in enumerate(np.asarray(index).tolist()):
            self._rows[i] = rows[j]
        self._draws[index] = None

    def set_drawn(self, index: np.ndarray, draws: PatientDraws) -> None:
        """Patient ``index[j]`` is row ``j`` of ``draws`` (built when read)."""
        holder = np.empty((), dtype=object)
        holder[()] = draws
        self._draws[index] = holder
        self._pos[index] = np.arange(len(index))


class DropoutTails(Mapping[int, list[float]]):
    """Patient index -> weekly mean pain (NRS) without exercise after its dropout (``pain_after_dropout``), for
    the patients who dropped out in one step. Holds the tails as one matrix; a patient's list is built on first
    read (then the same list), so a step with dropouts builds no lists unless an info is read. Keys and values
    are those of ``{int(i): pain[j, :remaining[j]].tolist() for j, i in enumerate(index)}``, in its order; it
    compares equal to that ``dict``."""

    __slots__ = ("_index", "_lists", "_pain", "_pos", "_remaining")

    def __init__(self, index: np.ndarray, pain: np.ndarray, remaining: np.ndarray) -> None:
        self._index = index  # int64 (m,): the patients
        self._pain, self._remaining = pain, remaining  # (m, weeks) matrix and each row's length
        self._pos: dict[int, int] | None = None  # patient -> row, made on first lookup
        self._lists: dict[int, list[float]] = {}

    def _positions(self) -> dict[int, int]:
        pos = self._pos
        if pos is None:
            pos = self._pos = dict(zip(self._index.tolist(), range(len(self._index)), strict=True))
        return pos

    def __getitem__(self, i: int) -> list[float]:
        tail = self._lists.get(i)
        if tail is None:
            j = self._positions()[i]  # KeyError for a patient without a dropout
            tail = self._lists[i] = self._pain[j, : self._remaining[j]].tolist()
        return tail

    def __contains__(self, i: object) -> bool:
        return i in self._positions()

    def __iter__(self) -> Iterator[int]:
        return iter(self._positions())

    def __len__(self) -> int:
        return len(self._positions())

    def __repr__(self) -> str:
        return repr(dict(self.items()))


def info_dicts(work: np.ndarray, latent: np.ndarray, weeks: np.ndarray, tails: Mapping[int, list[float]],
               indices: Sequence[int]) -> list[dict[str, Any]]:
    """The ``info`` dicts (``DESIGN.md`` section 3) of patients ``indices`` after a step.

    Args:
        work: the step's work block ``(engine.N_WORK, n)`` (prescription, simulator week, record).
        latent: the latent state after the step, ``(len(St), n)`` (rows named by :class:`St`).
        weeks: weeks done after the step, ``(n,)``.
        tails: patient -> weekly no-exercise pain after a dropout this week (``pain_after_dropout``).
        indices: patients, in ``0 .. n-1``; all of them (any order) or a few (only their columns are read).
    """
    n = work.shape[1]
    if n == 1:  # a single env: one list of the whole column, then plain indexing (no fancy index)
        columns, states, done = [_INFO_GETTER(work[:, 0].tolist())], latent.T.tolist(), weeks.tolist()
        position: Sequence[int] = indices
    elif len(indices) == n:
        columns = work[_INFO_ROWS].T.tolist()  # per patient: the rows of _INFO_ROWS in order
        states, done, position = latent.T.tolist(), weeks.tolist(), indices
    else:
        sel = np.asarray(indices, dtype=np.int64)
        columns = work[np.ix_(_INFO_ROWS, sel)].T.tolist()
        states, done, position = latent[:, sel].T.tolist(), weeks[sel].tolist(), range(len(sel))
    result = []
    for k, i in zip(position, indices, strict=True):
        (load, sessions, delivery, pain, function, attended, flares, dropped_out, *components,
         cost) = columns[k]
        info: dict[str, Any] = {
            "pain": pain,
            "function": function,
            "sessions_prescribed": int(sessions),
            "sessions_attended": int(attended),
            "flare": flares > 0,
            "dropped_out": dropped_out != 0.0,
            "rewards": dict(zip(COMPONENTS, components, strict=False)),
            "cost": cost,
            "state": dict(zip(_STATE_NAMES, states[k], strict=False)),
            "week": int(done[k]),
            "prescription": {"load": load, "sessions": int(sessions), "delivery": int(delivery)},
        }
        if tails and i in tails:
            info["pain_after_dropout"] = tails[i]
        result.append(info)
    return result


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
        placeholders = [patient_from_seed(config, 0)] * self.n  # until reset
        self.patients = PatientRows(placeholders)
        self.keys = np.zeros(self.n, dtype=np.uint64)
        self.sim = PatientSimulator(_columns(placeholders), keys=self.keys, modality=config.modality,
                                    constants=constants)
        self.features = FeatureBuffer(self.n)
        self.E = np.zeros((engine.N_EPISODE, self.n))  # rows engine.E_*: carried prescription, week, done
        self.E[engine.E_DONE] = 1.0  # no episode running until reset
        self.belief = (BeliefFilter(self.n, config.condition, config.modality, config.belief_particles,
                                    constants=constants) if config.belief else None)
        self._bind_config()

    def _bind_config(self) -> None:
        """The reward weights, step constants and intake episode column of ``self.config``."""
        config = self.config
        self._weights = config.reward.vector()
        self._C = np.append(self._weights, float(config.weeks))
        self._E0 = np.zeros((engine.N_EPISODE, 1))  # a patient's episode column at intake
        self._E0[[engine.E_LAST_LOAD, engine.E_PLAN, engine.E_DELIVERY], 0] = (
            config.initial_load, config.initial_sessions, config.initial_delivery)

    @property
    def week(self) -> np.ndarray:
        """Weeks done in each patient's episode (int64 copy)."""
        return self.E[engine.E_WEEK].astype(np.int64)

    @property
    def done(self) -> np.ndarray:
        """Whether each patient's episode has ended (bool copy)."""
        return self.E[engine.E_DONE] != 0.0

    @property
    def last_load(self) -> np.ndarray:
        """Last prescribed load per patient (baseline-capacity units; a view)."""
        return self.E[engine.E_LAST_LOAD]

    @property
    def planned_sessions(self) -> np.ndarray:
        """The discrete env's planned sessions/week per patient (whole numbers 1-5, float64; a view)."""
        return self.E[engine.E_PLAN]

    @property
    def last_delivery(self) -> np.ndarray:
        """Delivery carried to next week per patient (0 home alone, 1 remote, 2 supervised; float64 view)."""
        return self.E[engine.E_DELIVERY]

    def set_planned_sessions(self, plan: np.ndarray, where: np.ndarray | None = None) -> None:
        """Set the discrete env's planned sessions/week (1-5, ``(n,)``) of every patient, or only where the bool
        mask ``where`` ``(n,)`` is true (the others keep theirs)."""
        self.E[engine.E_PLAN] = plan if where is None else np.where(where, plan, self.E[engine.E_PLAN])

    def reopen(self) -> None:
        """Let every ended episode be stepped again: a patient who dropped out, or whose episode is past its
        last week, keeps being simulated by the next :meth:`step` (intention-to-treat continuation, planners'
        copies past their horizon). The kernel reports each dropout once and keeps a dropped-out patient
        without sessions."""
        self.E[engine.E_DONE] = 0.0

    def observe(self) -> np.ndarray:
        """The patients' current observations ``(n, n_features)`` float32 (with the belief features when the
        batch has a filter), as the last reset or step returned them."""
        obs = self.features.observation()
        return obs if self.belief is None else np.hstack([obs, self.belief.features()])

    # ------------------------------------------------------------------ reset
    def reset(self, index: np.ndarray, rows: list[dict[str, Any]], episode_seeds: np.ndarray) -> np.ndarray:
        """Start new episodes for patients ``index`` with the given cohort rows and episode seeds.

        Returns the first observations of those patients, shape ``(len(index), n_features)``.
        """
        index = np.asarray(index, dtype=np.int64)
        keys = episode_keys([r["patient_id"] for r in rows], np.asarray(episode_seeds))
        self.patients.set_rows(index, rows)
        return self._begin(index, _columns(rows), keys)

    def reset_drawn(self, index: np.ndarray, new: NewPatients) -> np.ndarray:
        """Start new episodes for patients ``index``: patient ``index[j]`` is row ``j`` of ``new``
        (:func:`new_patients`), as :meth:`reset` with the rows ``sample_patient(condition, seed)`` and episode
        seeds ``new.draws.seeds`` would start them, without building the rows. Returns the first observations,
        shape ``(len(index), n_features)``."""
        index = np.asarray(index, dtype=np.int64)
        self.patients.set_drawn(index, new.draws)
        return self._begin(index, new.draws.columns(new.ids), new.keys, owned=True)

    def _begin(self, index: np.ndarray, columns: Mapping[str, Any], keys: np.ndarray,
               owned: bool = False) -> np.ndarray:
        self.sim.replace(index, columns, keys, owned=owned)
        self.keys[index] = keys
        self.E[:, index] = self._E0
        obs = np.empty((len(index), self.features.values.shape[0]), dtype=np.float32)
        engine.start_features(self.features.values, index, self.sim.intake_matrix(), self.config.initial_load, obs)
        if self.belief is None:
            return obs
        intake = {field: self.sim.intake[record][index] for field, record in INTAKE_RECORDS.items()}
        self.belief.start(index, intake, keys)
        return np.hstack([obs, self.belief.features(index)])

    # ------------------------------------------------------------------- step
    def step_actions(self, actions: np.ndarray, discrete: bool, submit: Submit | None = None) -> StepBatch:
        """Decode a batch of env actions and simulate the week (one compiled call).

        ``actions``: ``(n, 3)`` Box actions, or ``(n,)`` move indices when ``discrete`` (the plan of planned
        sessions is updated). Raises ``ValueError`` naming ``action`` for malformed actions.

        ``submit``: run the dropouts' untreated tails through it (``submit(fn, *args) -> Future``, e.g. a worker
        thread's) when they hold at least :data:`MIN_SUBMITTED_TAIL_WEEKS` patient-weeks; the step is then
        unsettled until :meth:`settle`, which must come before its reward, cost or ``pain_after_dropout`` are
        read. The tails work on copies, so the batch may be reset meanwhile.
        """
        n = self.n
        if discrete:
            a = move_indices(actions)
            if a.shape != (n,):
                raise ValueError(f"action: expected {n} move index(es), got shape {np.shape(actions)}")
            kernel_step = engine.step_discrete
        else:
            a = np.asarray(actions)
            if a.dtype != np.float32 and a.dtype != np.float64:  # float32 (SB3's) is decoded as is: same values
                a = a.astype(np.float64)
            if a.size != 3 * n:
                raise ValueError(f"action: expected shape ({n}, 3), got {a.shape}")
            a = a.reshape(n, 3)
            kernel_step = engine.step_continuous
        return self._step(kernel_step, a, padded_matrix(engine.N_WORK, n), submit)

    def step(self, load: np.ndarray | float, sessions: np.ndarray | int, delivery: np.ndarray | int) -> StepBatch:
        """Simulate one week of explicit prescriptions: ``load`` (baseline-capacity units, clipped to 0-1.5),
        ``sessions`` 0-5 and ``delivery`` codes, scalars or arrays ``(n,)``."""
        work = padded_matrix(engine.N_WORK, self.n)
        work[engine.W_RX], work[engine.W_RX + 1], work[engine.W_RX + 2] = load, sessions, delivery
        return self._step(None, None, work)

    def _step(self, kernel_step: Any, actions: np.ndarray | None, work: np.ndarray,
              submit: Submit | None = None) -> StepBatch:
        P, S, K, keys = self.sim.kernel_arrays()
        obs = np.empty((self.n, self.features.values.shape[0]), dtype=np.float32)
        if kernel_step is None:
            status, dropouts = engine.env_step(P, S, K, keys, self.E, self._C, self.features.values, work, obs)
        else:
            status, dropouts = kernel_step(P, S, K, keys, actions, self.E, self._C, self.features.values, work, obs)
        if status == engine.EPISODE_DONE:
            raise RuntimeError("step: an episode has ended; reset it before stepping")
        if status:
            raise ValueError("action: must be finite (no NaN or inf)" if status == engine.ACTION_ERROR
                             else SIMULATOR_ERRORS[status])
        step = StepBatch(obs=obs, work=work, pain_after_dropout={})
        if dropouts:
            index = np.flatnonzero(work[engine.W_RECORD + engine.R_TERMINATED])
            left = self.config.weeks - self.E[engine.E_WEEK, index]  # weeks of the episode not lived
            remaining = np.maximum(left, 0).astype(np.int64)
            job = (P[:, index], S[:, index], K, keys[index], remaining, self._weights)  # copies (fancy index)
            handed = submit is not None and remaining.sum() >= MIN_SUBMITTED_TAIL_WEEKS
            step._dropouts = (index, left, remaining, submit(_tails, *job) if handed else job)
            if not handed:
                self.settle(step)
        if self.belief is not None:  # every patient was stepped (the engine refuses ended episodes)
            out = work[engine.W_OUT : engine.W_RECORD]
            records = {name: out[row] for name, row in _BELIEF_RECORDS.items()}
            self.belief.advance(np.arange(self.n), work[engine.W_RX], work[engine.W_RX + 1], work[engine.W_RX + 2],
                                records)
            step.obs = np.hstack([obs, self.belief.features()])
        return step

    def settle(self, step: StepBatch) -> None:
        """Finish a step's dropouts (no-op if settled): the ``dropout`` reward term (the untreated tail's outcome
        components minus the dropout penalty) into reward, the dropout cost into cost, ``pain_after_dropout``."""
        if step._dropouts is None:
            return
        index, left, remaining, job = step._dropouts
        step._dropouts = None
        value, pain = job.result() if isinstance(job, Future) else _tails(*job)
        work = step.work
        work[engine.W_RECORD + engine.R_DROPOUT, index] = value - self.config.reward.dropout
        work[engine.W_RECORD + engine.R_REWARD, index] += work[engine.W_RECORD + engine.R_DROPOUT, index]
        work[engine.W_RECORD + engine.R_COST, index] += dropout_cost(left)
        step.pain_after_dropout = DropoutTails(index, pain, remaining)

    # ---------------------------------------------------------------- infos
    def infos(self, step: StepBatch, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The ``info`` dicts of patients ``indices`` after a step (``DESIGN.md`` section 3), before any reset."""
        return info_dicts(step.work, self.sim.kernel_arrays()[1], self.E[engine.E_WEEK], step.pain_after_dropout,
                          indices)

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
            "episode": self.E.copy(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`get_state` snapshot (the patients may differ from the current ones). Not for a
        batch with belief features: snapshots do not hold the particle filter."""
        if self.belief is not None:
            raise ValueError("state: a snapshot does not hold the belief filter; restore it into an env without "
                             "belief=True")
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
            episode = np.array(state["episode"], dtype=np.float64)
            if episode.shape != self.E.shape:
                raise ValueError(f"state.episode: expected shape {self.E.shape}, got {episode.shape}")
            self.E = episode
        except KeyError as exc:
            raise ValueError(f"state: missing key {exc.args[0]!r}") from None
        self.patients, self.keys = PatientRows(patients), keys

    # ---------------------------------------------------------------- copies
    @classmethod
    def of_parts(cls, config: EnvConfig, constants: ModelConstants | None, patients: list[dict[str, Any]],
                 keys: np.ndarray, sim: PatientSimulator, values: np.ndarray, episode: np.ndarray) -> EpisodeBatch:
        """A batch from its parts, owned by the new batch (no placeholder patients are sampled): cohort rows,
        noise keys ``(m,)``, a simulator of ``m`` patients in their current state, feature values
        ``(n_features, m)`` and episode columns ``(engine.N_EPISODE, m)``. For planners: copies have no belief
        filter."""
        batch = cls.__new__(cls)
        batch.n, batch.config, batch.constants = len(patients), config, constants
        batch.patients, batch.keys, batch.sim = PatientRows(patients), keys, sim
        batch.features = FeatureBuffer(0)
        batch.features.values = values
        batch.E = episode
        batch.belief = None  # copies are for planning: no particle filter (their observations have no beliefs)
        batch._bind_config()
        return batch

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: EnvConfig,
                   constants: ModelConstants | None = None) -> EpisodeBatch:
        """A new, independent batch in the state of a :meth:`get_state` snapshot (as many patients as it holds).

        ``config`` and ``constants`` must be those of the batch the snapshot came from (for an env:
        ``env.unwrapped.batch.config`` / ``.constants``); the new batch then steps bit for bit as that batch
        would have from the snapshot. The snapshot is not modified or shared.
        """
        try:
            patients = [dict(p) for p in state["patients"]]
            keys = np.array(state["keys"], dtype=np.uint64)
            n = len(patients)
            if n < 1 or keys.shape != (n,):
                raise ValueError(f"state.keys: expected one key per patient ({n}), got shape {keys.shape}")
            common = [name for name in patients[0] if all(name in p for p in patients)]
            sim = PatientSimulator({name: [p[name] for p in patients] for name in common}, keys=keys,
                                   modality=config.modality, constants=constants)
            sim.set_state(state["sim"])
            values = np.array(state["features"]["values"], dtype=np.float64, order="C")
            episode = np.array(state["episode"], dtype=np.float64, order="C")
        except KeyError as exc:
            raise ValueError(f"state: missing key {exc.args[0]!r}") from None
        if values.shape != (len(FEATURE_NAMES), n):
            raise ValueError(f"state.features.values: expected shape {(len(FEATURE_NAMES), n)}, "
                             f"got {values.shape}")
        if episode.shape != (engine.N_EPISODE, n):
            raise ValueError(f"state.episode: expected shape {(engine.N_EPISODE, n)}, got {episode.shape}")
        return cls.of_parts(config, constants, patients, keys, sim, values, episode)

    def take(self, index: np.ndarray, keys: np.ndarray | None = None,
             sim: PatientSimulator | None = None) -> EpisodeBatch:
        """A new, independent batch of copies of patients ``index`` (repeats allowed), in their current state.

        The copies carry the patients' parameters, latent state, observation records and episode columns
        (last prescription, week, done) and the noise-stream ``keys`` given (``uint64`` ``(m,)``; default:
        their own keys, with which the copies' next steps replay the originals' bit for bit). Planners pass
        other keys to roll out plans on noise the patients have not met, and may pass ``sim``, a simulator of
        ``m`` patients (e.g. posterior particles of patients ``index``, owned by the new batch) to simulate in
        place of the patients' true parameters and state (built with the same ``keys``). Repeated rows
        share one copy of the patient's cohort row (dict). This batch is left unchanged.
        """
        index = np.asarray(index, dtype=np.int64)
        m = len(index) if index.ndim == 1 else -1
        if index.shape != (m,) or m < 1 or index.min() < 0 or index.max() >= self.n:
            raise ValueError(f"index: must be a non-empty 1-D array of positions in 0..{self.n - 1}")
        keys = self.keys[index] if keys is None else np.array(keys, dtype=np.uint64)
        if keys.shape != (m,):
            raise ValueError(f"keys: need one stream key per copied patient ({m}), got shape {keys.shape}")
        if sim is None:
            sim = self.sim.take(index, keys)
        elif sim.n != m:
            raise ValueError(f"sim: need one simulated patient per copy ({m}), got {sim.n}")
        rows = {i: dict(self.patients[i]) for i in np.unique(index).tolist()}
        patients = [rows[i] for i in index.tolist()]
        values = np.ascontiguousarray(self.features.values[:, index])
        episode = np.ascontiguousarray(self.E[:, index])
        return self.of_parts(self.config, self.constants, patients, keys.copy(), sim, values, episode)
