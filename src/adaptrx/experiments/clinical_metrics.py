"""Clinical evaluation of a policy: summary numbers, patient trajectories and load-response curves.

Used by the training app (TensorBoard scalars and figures) and by the trained-policy card. Everything here
reads the intention-to-treat outcomes of :class:`~adaptrx.envs.episodes.EpisodeOutcomes` (one episode per
patient of a paired virtual trial), or asks a policy directly how it would answer one observation.

:data:`METRICS` (the keys of :func:`clinical_metrics`, all means over patients):

======================  ==============================================================  ==============
metric                  meaning (units)                                                 better
======================  ==============================================================  ==============
pain_w12                mean true pain of week ``week`` (NRS 0-10, ITT)                 lower
pain_change_w12         ``pain_w12`` minus baseline pain (NRS points; negative = relief) lower
responder_rate_w12      fraction of Farrar responders at ``week`` (0-1)                 higher
pain_mean               mean weekly true pain over the whole episode (NRS 0-10)         lower
flares_per_patient      flares summed over the episode's weeks (count per patient)      lower
dropout_rate            fraction of patients who dropped out (0-1)                      lower
capacity_change         final capacity minus 1 (x baseline capacity)                    higher
function_change         final minus baseline function (points, 0-100 scale)             higher
safety_cost             safety cost (env ``info['cost']``: unsafe weeks + weeks lost)  lower
shield_interventions    weeks a shield rule bound (weeks per patient)                   lower
supervised_sessions     attended sessions with supervised delivery (per patient)        lower (cost)
composite               :func:`composite_score` (secondary): pain + flares + dropouts   lower
return                  episode return of the env reward (the headline objective)      higher
======================  ==============================================================  ==============

The ``_w12`` names are fixed (TensorBoard tags stay stable); the week they describe is ``week`` (default 12).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from adaptrx.envs.belief import OBSERVATION_WIDTHS
from adaptrx.envs.episodes import EpisodeOutcomes
from adaptrx.envs.features import FEATURE_INDEX, FEATURE_NAMES, HIGH, LOW, SCALES
from adaptrx.envs.reward import COST_PAIN_THRESHOLD
from adaptrx.protocols.base import Protocol

#: Names (and order) of the metrics :func:`clinical_metrics` returns (table in the module docstring).
METRICS: tuple[str, ...] = (
    "pain_w12", "pain_change_w12", "responder_rate_w12", "pain_mean", "flares_per_patient", "dropout_rate",
    "capacity_change", "function_change", "safety_cost", "shield_interventions", "supervised_sessions",
    "composite", "return",
)
#: Weight of a dropout in :func:`composite_score`: points (on the composite's NRS-plus-flare-weeks scale) added
#: for a patient who dropped out. Not the belief filter's log-likelihood of ``adaptrx.envs.belief``.
DROPOUT_WEIGHT = 2.0
#: Most patients :func:`trajectory_figure` draws (one panel each).
MAX_PANELS = 8


def composite_score(pain_mean: np.ndarray, flares: np.ndarray, dropped_out: np.ndarray) -> np.ndarray:
    """The composite harm score per patient, the one place it is defined (arrays of equal shape, e.g. columns of
    the tidy results table): ``pain_mean`` (mean weekly true pain over the episode, NRS 0-10, intention to treat:
    the no-exercise continuation after a dropout counts) + ``flares`` (flare weeks over the episode) +
    :data:`DROPOUT_WEIGHT` x ``dropped_out`` (bool or 0/1). Lower is better; a patient scores 0 at best.

    A documented *secondary* outcome: the headline objective is the env return (``adaptrx.envs.reward``).
    With flares recorded as flare weeks (at most one onset a week) the weights rank policies sensibly: on the
    knee-OA trials neither ``none`` nor ``attention_control`` ranks above a protocol that relieves 1 NRS more at
    week 12 (checked on the committed trial, ``tests/experiments/test_trial.py``).
    """
    return pain_mean + flares + DROPOUT_WEIGHT * np.asarray(dropped_out, dtype=np.float64)


def load_follows_patient(out: EpisodeOutcomes, envelope: np.ndarray, weeks: tuple[int, int] = (5, 16)) -> float:
    """Spearman rank correlation (-1..1) between each patient's mean prescribed load over the in-programme weeks
    ``weeks`` (1-based, inclusive; baseline-capacity units) and ``envelope`` (the patients' true tolerance
    envelope, cohort column ``envelope``). Patients who left before ``weeks[0]`` are left out; 0 when the loads
    do not vary (a fixed protocol prescribes everyone the same)."""
    envelope = np.asarray(envelope, dtype=float)
    if envelope.shape != (out.n,):
        raise ValueError(f"envelope: expected one value per patient ({out.n},), got {envelope.shape}")
    first, last = weeks
    if not 1 <= first <= last <= out.weeks:
        raise ValueError(f"weeks: need 1 <= first <= last <= {out.weeks}, got {weeks}")
    inside = out.in_programme[first - 1:last]
    count = inside.sum(axis=0)
    keep = count > 0
    mean_load = np.where(inside, out.load[first - 1:last], 0.0).sum(axis=0)[keep] / count[keep]
    if keep.sum() < 3 or np.ptp(mean_load) <= 1e-12:
        return 0.0
    return float(spearmanr(mean_load, envelope[keep]).statistic)


def _check_week(out: EpisodeOutcomes, week: int) -> int:
    if isinstance(week, bool) or not isinstance(week, int | np.integer) or not 1 <= int(week) <= out.weeks:
        raise ValueError(f"week: must be an integer in 1-{out.weeks} (the episode's weeks), got {week!r}")
    return int(week)


def clinical_metrics(out: EpisodeOutcomes, week: int = 12) -> dict[str, float]:
    """The :data:`METRICS` of one policy's outcomes, as plain floats (means over the ``out.n`` patients).

    * ``pain_w12``: mean true pain of week ``week`` (NRS 0-10); ``pain_change_w12``: that minus the intake
      pain (NRS points, negative = better); ``responder_rate_w12``: fraction (0-1) of
      :meth:`~adaptrx.envs.episodes.EpisodeOutcomes.responders` at ``week``;
    * ``pain_mean``: mean weekly true pain over the episode (NRS 0-10);
    * ``flares_per_patient``: flares summed over the weeks; ``dropout_rate``: fraction (0-1) who dropped out;
    * ``capacity_change``: final capacity - 1 (x baseline capacity); ``function_change``: final minus baseline
      function (points on the 0-100 scale, higher is better);
    * ``safety_cost``: safety-cost weeks per patient; ``shield_interventions``: weeks a shield rule bound, per
      patient; ``supervised_sessions``: attended sessions with supervised delivery, per patient;
    * ``composite``: mean of :func:`composite_score`; ``return``: mean undiscounted episode return.

    The keys keep their ``_w12`` names whatever ``week`` is. ``ValueError`` if ``week`` is not in
    ``1..out.weeks``.
    """
    w = _check_week(out, week)
    pain_w = out.pain_at(w)
    values = {
        "pain_w12": pain_w.mean(),
        "pain_change_w12": (pain_w - out.baseline_pain).mean(),
        "responder_rate_w12": out.responders(w).mean(),
        "pain_mean": out.pain.mean(),
        "flares_per_patient": out.flares.sum(axis=0).mean(),
        "dropout_rate": (out.dropout_week > 0).mean(),
        "capacity_change": (out.capacity[-1] - 1.0).mean(),
        "function_change": (out.function[-1] - out.baseline_function).mean(),
        "safety_cost": np.mean(out.cost),
        "shield_interventions": np.mean(out.shield_interventions),
        "supervised_sessions": (out.sessions_attended * out.supervised).sum(axis=0).mean(),
        "composite": composite_score(out.pain.mean(axis=0), out.flares.sum(axis=0), out.dropout_week > 0).mean(),
        "return": np.mean(out.returns),
    }
    return {name: float(values[name]) for name in METRICS}


def trajectory_figure(out: EpisodeOutcomes, patients: Sequence[int] = (0, 1, 2, 3), title: str = "") -> Figure:
    """Weekly course of a few patients, one panel each (1 to 8 patients, indices into ``out``).

    Left axis: weekly mean true pain (NRS 0-10, line from the intake value at week 0; marker size = sessions
    attended that week, no marker without a session; flare weeks as red crosses). Right axis: prescribed load
    (x baseline capacity, bars; darker = supervised delivery). A dropout is a dashed vertical line at its week
    (pain after it is the no-exercise continuation). Each panel has a twin axis, so the figure has
    ``2 * len(patients)`` axes.
    """
    idx = [int(p) for p in patients]
    if not 1 <= len(idx) <= MAX_PANELS:
        raise ValueError(f"patients: expected 1-{MAX_PANELS} patient indices, got {len(idx)}")
    bad = [p for p in idx if not 0 <= p < out.n]
    if bad:
        raise ValueError(f"patients: indices {bad} out of range 0-{out.n - 1}")
    ncols = min(len(idx), 4)
    nrows = math.ceil(len(idx) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[len(idx):]:
        fig.delaxes(ax)
    weeks = np.arange(0, out.weeks + 1)
    w1 = weeks[1:]
    load_max = max(1.0, float(out.load[:, idx].max()) * 1.1)
    for k, (ax, p) in enumerate(zip(axes, idx, strict=False)):
        right = ax.twinx()
        supervised = out.supervised[:, p] > 0.5
        right.bar(w1, out.load[:, p], width=0.8, color=np.where(supervised, "tab:green", "#b5dcb5"),
                  alpha=0.6, zorder=1, label="load (bars)")
        right.set_ylim(0.0, load_max)
        ax.set_zorder(right.get_zorder() + 1)  # the pain line in front of the bars
        ax.patch.set_visible(False)
        pain = np.concatenate([[out.baseline_pain[p]], out.pain[:, p]])
        ax.plot(weeks, pain, "-", color="tab:blue", lw=1.6, label="pain (NRS)")
        attended = out.sessions_attended[:, p]
        has = attended > 0
        ax.scatter(w1[has], out.pain[has, p], s=12.0 * attended[has], color="tab:blue", zorder=3,
                   label="sessions attended (size)")
        flare = out.flares[:, p] > 0
        ax.scatter(w1[flare], out.pain[flare, p], marker="x", s=60, color="tab:red", zorder=4, label="flare")
        drop = int(out.dropout_week[p])
        if drop > 0:
            ax.axvline(drop, color="black", ls="--", lw=1.2, label=f"dropout (week {drop})")
        ax.set_ylim(0.0, 10.0)
        ax.set_xlim(0.0, out.weeks + 0.5)
        ax.grid(alpha=0.3)
        ax.set_title(f"{out.patient_id[p]}" + (f", dropped out week {drop}" if drop else ""), fontsize=9)
        if k % ncols == 0:
            ax.set_ylabel("weekly pain (NRS 0-10)")
        if k % ncols == ncols - 1 or k == len(idx) - 1:
            right.set_ylabel("load (x baseline capacity)")
        if k >= len(idx) - ncols:
            ax.set_xlabel("week")
        if k == 0:
            handles, labels = ax.get_legend_handles_labels()
            handles2, labels2 = right.get_legend_handles_labels()
            ax.legend(handles + handles2, labels + labels2, fontsize=6, loc="upper right")
    fig.suptitle(title or f"{out.policy}: patient trajectories ({out.split})")
    fig.tight_layout()
    return fig


def reference_observation(episodes_obs: np.ndarray) -> np.ndarray:
    """Per-feature median of observations (scaled features), float32.

    ``(n, n_features)`` -> ``(n_features,)``: a typical patient's observation, the reference of
    :func:`response_curve`. ``(weeks, n, n_features)`` -> ``(weeks, n_features)``: the median per week (a
    typical history to warm a stateful policy up with).
    """
    x = np.asarray(episodes_obs, dtype=np.float64)
    if x.ndim not in (2, 3) or x.shape[-1] not in OBSERVATION_WIDTHS or x.shape[-2] == 0:
        raise ValueError(f"episodes_obs: expected shape (n, d) or (weeks, n, d) with n > 0 and d one of "
                         f"{OBSERVATION_WIDTHS} (records, or records and belief features), got {x.shape}")
    return np.median(x, axis=-2).astype(np.float32)


def _default_values(feature: str) -> np.ndarray:
    i = FEATURE_INDEX[feature]
    return np.linspace(LOW[i] * SCALES[i], HIGH[i] * SCALES[i], 21)


def response_curve(policy: Any, reference_obs: np.ndarray, feature: str = "session_pain_max",
                   values: np.ndarray | None = None,
                   history: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """How the policy's next load responds to one reported feature, everything else held at ``reference_obs``.

    Args:
        policy: anything with SB3's ``predict`` acting in the ``Progression-v0`` Box action space (a trained
            agent, a clinical protocol). Protocols (whose per-env memory lives in the object) are deep-copied
            and reset first, so the caller's protocol keeps its memory; other policies carry their memory in
            SB3's ``state``.
        reference_obs: one observation ``(n_features,)``, scaled features (e.g. :func:`reference_observation`).
        feature: the feature to vary (a name of :data:`~adaptrx.envs.features.FEATURE_NAMES`).
        values: the feature's values in clinical units (default: 21 points over its range, for pain features
            ``np.linspace(0, 10, 21)`` NRS). Each is divided by the feature's scale (clipped to the observation
            bounds) and written into a copy of ``reference_obs``; the batch of ``len(values)`` observations is
            answered in one deterministic ``predict`` call. For ``session_pain_max``, ``session_pain_mean`` is
            set to the same value (the mean cannot exceed the maximum).
        history: optional observations ``(weeks, n_features)`` of the weeks before the reference, fed to the
            policy first (the first as an episode start) so that a stateful policy answers with its
            mid-programme memory. Clinical protocols remember the weeks into the programme (e.g.
            ``pain_monitoring`` prescribes its start load in week 1 whatever the reports): without a history
            they answer as in the first week of an episode.

    Returns:
        ``(values, load_factor)``: the values (clinical units) and the load multiplier ``1 + 0.5 * a[0]``
        (0.5-1.5, ``a[0]`` clipped to [-1, 1]; the ``Progression-v0`` contract) the policy prescribes for each.

    Raises:
        ValueError: ``feature`` unknown (named in the message), a bad ``reference_obs``/``history`` shape, or
            the policy's actions are not ``(n, 3)`` Box actions (e.g. a ``ProgressionDiscrete-v0`` policy).
    """
    if feature not in FEATURE_INDEX:
        raise ValueError(f"feature: unknown feature {feature!r}; known: {', '.join(FEATURE_NAMES)}")
    ref = np.asarray(reference_obs, dtype=np.float32)
    if ref.ndim != 1 or ref.shape[0] not in OBSERVATION_WIDTHS:
        raise ValueError(f"reference_obs: expected one observation of shape ({len(FEATURE_NAMES)},) (+ the belief "
                         f"features), got {ref.shape}")
    n_features = ref.shape[0]
    vals = _default_values(feature) if values is None else np.asarray(values, dtype=np.float64).reshape(-1)
    if len(vals) == 0 or not np.isfinite(vals).all():
        raise ValueError("values: expected a non-empty array of finite numbers")
    n = len(vals)
    varied = [feature] + (["session_pain_mean"] if feature == "session_pain_max" else [])
    obs = np.repeat(ref[None, :], n, axis=0)
    for name in varied:
        i = FEATURE_INDEX[name]
        obs[:, i] = np.clip(vals / SCALES[i], LOW[i], HIGH[i])

    if isinstance(policy, Protocol):  # per-env memory lives in the object: answer on a fresh copy
        policy = copy.deepcopy(policy)
        policy.reset()
    state: Any = None
    if history is not None:
        hist = np.asarray(history, dtype=np.float32)
        if hist.ndim != 2 or hist.shape[1] != n_features:
            raise ValueError(f"history: expected shape (weeks, {n_features}), got {hist.shape}")
        for t, h in enumerate(hist):
            start = np.full(n, t == 0)
            _, state = policy.predict(np.repeat(h[None, :], n, axis=0), state=state, episode_start=start,
                                      deterministic=True)
    episode_start = np.full(n, history is None or len(history) == 0)
    actions, _ = policy.predict(obs, state=state, episode_start=episode_start, deterministic=True)
    a = np.asarray(actions)
    if a.shape != (n, 3) or not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"policy: expected Box actions of shape ({n}, 3) (Progression-v0), got {a.dtype} "
                         f"{a.shape}; discrete policies (ProgressionDiscrete-v0 moves) have no load multiplier "
                         "to read")
    return vals, 1.0 + 0.5 * np.clip(a[:, 0].astype(np.float64), -1.0, 1.0)


def response_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    feature: str = "session_pain_max") -> Figure:
    """Load multiplier (x last load, 0.5-1.5) against ``feature`` (clinical units), one line per label.

    ``curves`` maps a label (e.g. the trained policy, ``pain_monitoring``) to :func:`response_curve`'s
    ``(values, load_factor)``. A dashed line marks holding the load (1.0); for in-session pain features the
    design's in-session pain threshold (NRS 5) is marked by a dotted vertical line. One axes.
    """
    if not curves:
        raise ValueError("curves: expected at least one (values, load_factor) curve")
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    colors = colormaps["tab10"](np.arange(len(curves)) % 10)
    for color, (label, (x, y)) in zip(colors, curves.items(), strict=True):
        ax.plot(np.asarray(x), np.asarray(y), "-o", ms=3, color=color, lw=1.8, label=label)
    ax.axhline(1.0, color="gray", ls="--", lw=1.0, label="hold (x1.0)")
    if feature.startswith("session_pain"):
        ax.axvline(COST_PAIN_THRESHOLD, color="tab:red", ls=":", lw=1.2,
                   label=f"in-session pain threshold (NRS {COST_PAIN_THRESHOLD:g})")
    unit = " (NRS 0-10)" if "pain" in feature else ""
    ax.set_xlabel(f"reported {feature}{unit}")
    ax.set_ylabel("next load (x last load)")
    ax.set_ylim(0.45, 1.55)
    ax.set_title(f"Load response to {feature}, all else at the reference observation", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
