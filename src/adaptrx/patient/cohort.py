"""Condition priors and deterministic virtual cohorts.

A prior (``src/adaptrx/patient/priors/<condition>.yaml``) lists each patient parameter with a marginal distribution,
the literature source of its range, pairwise correlations applied through a Gaussian copula, categorical
parameters, and the shift that defines the out-of-distribution (``ood``) split.

:func:`make_cohort` turns a prior into a table with one row per patient. The same
``(condition, n, seed, split)`` always gives the same table; the four splits draw from disjoint streams.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import special

from adaptrx.common import atomic
from adaptrx.patient import generators

SPLITS: tuple[str, ...] = ("train", "val", "test", "ood")
ADHERENCE_CLASSES: tuple[str, ...] = ("rapid_decline", "gradual_decline", "low")

#: Columns every cohort table has, in this order (continuous parameters follow).
ID_COLUMNS: tuple[str, ...] = ("patient_id", "condition", "split", "sex", "adherence_class")


def prior_dir() -> Path:
    """Directory holding the ``<condition>.yaml`` priors shipped with the package."""
    return Path(str(resources.files("adaptrx.patient") / "priors"))


#: The exercise modality of each condition's programmes where it is not resistance training (the calibration
#: suite's and the env configs' choice: aerobic exercise is the trial-supported programme for fibromyalgia).
PROGRAMME_MODALITY: dict[str, str] = {"fibromyalgia": "aerobic"}


def programme_modality(condition: str) -> str:
    """The exercise modality of ``condition``'s programmes: ``aerobic`` for fibromyalgia, else ``resistance``."""
    return PROGRAMME_MODALITY.get(condition, "resistance")


def conditions() -> list[str]:
    """Names of the conditions with a shipped prior, sorted."""
    return list(_conditions())


@cache
def _conditions() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in prior_dir().glob("*.yaml")))


@cache
def _load_prior_cached(condition: str) -> dict[str, Any]:
    path = prior_dir() / f"{condition}.yaml"
    if not path.is_file():
        raise ValueError(f"condition: unknown condition {condition!r}; known: {', '.join(conditions())}")
    with path.open() as fh:
        prior = yaml.safe_load(fh)
    _validate_prior(prior, path)
    return prior


def load_prior(condition: str) -> dict[str, Any]:
    """Load and validate the prior of ``condition`` (a deep copy, safe to modify)."""
    return copy.deepcopy(_load_prior_cached(condition))


def _validate_prior(prior: dict[str, Any], path: Path) -> None:
    params = prior.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ValueError(f"{path}: 'parameters' must be a non-empty mapping")
    for name, spec in params.items():
        if spec.get("dist") not in {"normal", "lognormal", "beta"}:
            raise ValueError(f"{path}: parameters.{name}.dist must be normal, lognormal or beta")
    for a, b, r in prior.get("correlations", []):
        if a not in params or b not in params or not -1 < float(r) < 1:
            raise ValueError(f"{path}: bad correlation entry {[a, b, r]}")
    cats = prior.get("categorical", {})
    for name, probs in cats.items():
        if abs(sum(probs.values()) - 1.0) > 1e-6:
            raise ValueError(f"{path}: categorical.{name} probabilities must sum to 1")
    if set(cats.get("adherence_class", {})) != set(ADHERENCE_CLASSES):
        raise ValueError(f"{path}: categorical.adherence_class must list {ADHERENCE_CLASSES}")


def _apply_shift(prior: dict[str, Any], shift: dict[str, dict[str, float]]) -> dict[str, Any]:
    prior = copy.deepcopy(prior)
    for name, change in shift.items():
        spec = prior["parameters"][name]
        for key, value in change.items():
            if key == "mean_add":
                spec["mean"] = spec["mean"] + value
            elif key == "median_factor":
                spec["median"] = spec["median"] * value
            else:
                raise ValueError(f"ood_shift.{name}: unknown change {key!r} (mean_add or median_factor)")
    return prior


def _correlation_matrix(names: list[str], pairs: list[list[Any]]) -> np.ndarray:
    r = np.eye(len(names))
    index = {n: i for i, n in enumerate(names)}
    for a, b, rho in pairs:
        r[index[a], index[b]] = r[index[b], index[a]] = float(rho)
    w, v = np.linalg.eigh(r)
    if w.min() < 1e-6:  # nearest positive-definite correlation matrix
        r = v @ np.diag(np.clip(w, 1e-6, None)) @ v.T
        d = np.sqrt(np.diag(r))
        r = r / d[:, None] / d[None, :]
    return r


@dataclass(frozen=True)
class _Marginals:
    """Every truncated marginal of a prior as arrays over its parameters, so that mapping copula uniforms to
    parameter values is a few vectorised ufunc calls (cheap even for one patient per env reset).

    Normal and lognormal parameters: ``x = f(loc + scale * ndtri(lo + u * (hi - lo)))`` with ``f`` the
    identity or ``exp`` and ``lo``/``hi`` the CDF at the truncation bounds; beta: ``betaincinv(a, b, u)``.
    """

    gauss: np.ndarray  # column indices of normal and lognormal parameters
    loc: np.ndarray
    scale: np.ndarray
    lo: np.ndarray
    width: np.ndarray  # hi - lo
    log: np.ndarray  # bool over ``gauss``: lognormal
    beta: np.ndarray  # column indices of beta parameters
    a: np.ndarray
    b: np.ndarray
    rounded: np.ndarray  # column indices rounded to integers

    @classmethod
    def of(cls, specs: list[dict[str, Any]]) -> _Marginals:
        gauss, loc, scale, lo, hi, log, beta, a, b, rounded = [], [], [], [], [], [], [], [], [], []
        for j, spec in enumerate(specs):
            if spec.get("round"):
                rounded.append(j)
            if spec["dist"] == "beta":
                m, sd = float(spec["mean"]), float(spec["sd"])
                k = m * (1 - m) / sd**2 - 1
                beta.append(j)
                a.append(m * k)
                b.append((1 - m) * k)
                continue
            is_log = spec["dist"] == "lognormal"
            mu, sigma = ((np.log(float(spec["median"])), float(spec["sigma"])) if is_log
                         else (float(spec["mean"]), float(spec["sd"])))
            low = float(spec.get("low", 1e-12 if is_log else -np.inf))
            high = float(spec.get("high", np.inf))
            fwd = np.log if is_log else float
            gauss.append(j)
            loc.append(mu)
            scale.append(sigma)
            log.append(is_log)
            lo.append(special.ndtr((fwd(low) - mu) / sigma))
            hi.append(special.ndtr((fwd(high) - mu) / sigma))
        arr = np.asarray
        return cls(arr(gauss, dtype=np.int64), arr(loc), arr(scale), arr(lo), arr(hi) - arr(lo), arr(log, dtype=bool),
                   arr(beta, dtype=np.int64), arr(a), arr(b), arr(rounded, dtype=np.int64))

    def values(self, u: np.ndarray) -> np.ndarray:
        """Parameter values for copula uniforms ``u`` of shape ``(n, n_parameters)``."""
        x = np.empty_like(u)
        g = self.loc + self.scale * special.ndtri(self.lo + u[:, self.gauss] * self.width)
        np.exp(g, out=g, where=self.log)  # lognormal columns only
        x[:, self.gauss] = g
        if len(self.beta):
            x[:, self.beta] = special.betaincinv(self.a, self.b, u[:, self.beta])
        if len(self.rounded):
            x[:, self.rounded] = np.rint(x[:, self.rounded])  # = np.round: half to even
        return x


@cache
def _categorical_tables(condition: str, split: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, labels, cumulative probabilities)`` of each categorical parameter of a split's prior."""
    prior = _prepared(condition, split)[0]
    tables = []
    for name, probs in prior.get("categorical", {}).items():
        cumulative = np.cumsum(list(probs.values()))
        tables.append((name, np.asarray(list(probs), dtype=object), cumulative))
    return tables


@cache
def _condition_tag(condition: str) -> int:
    return int.from_bytes(hashlib.blake2b(condition.encode(), digest_size=4).digest(), "little")


def _rng(condition: str, seed: int, split: str, stream: int = 0) -> np.random.Generator:
    tag = _condition_tag(condition)
    words = [int(seed), SPLITS.index(split), tag, 0xADA9] + ([stream] if stream else [])
    return np.random.default_rng(words)


@cache
def _prepared(condition: str, split: str) -> tuple[dict[str, Any], list[str], np.ndarray, _Marginals]:
    """The (shifted, for ``ood``) prior of a split, its parameter names, the copula's Cholesky factor and
    the vectorised marginals."""
    prior = _load_prior_cached(condition)
    if split == "ood":
        prior = _apply_shift(prior, prior.get("ood_shift", {}))
    names = list(prior["parameters"])
    chol = np.linalg.cholesky(_correlation_matrix(names, prior.get("correlations", [])))
    return prior, names, chol, _Marginals.of([prior["parameters"][name] for name in names])


def _check_sample_args(condition: str, n: int, seed: int, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: must be one of {SPLITS}, got {split!r}")
    if int(n) < 1:
        raise ValueError(f"n: must be >= 1, got {n}")
    if int(seed) < 0:
        raise ValueError(f"seed: must be >= 0, got {seed}")
    if condition not in _conditions():
        raise ValueError(f"condition: unknown condition {condition!r}; known: {', '.join(conditions())}")


def _uniforms(condition: str, n: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Copula uniforms of the continuous parameters ``(n, n_parameters)`` and the categorical uniforms
    ``(n, n_categorical)`` of ``(condition, seed, split)``; rows are prefix-stable in ``n``."""
    _, names, chol, _ = _prepared(condition, split)
    z = _rng(condition, seed, split).standard_normal((n, len(names))) @ chol.T
    u = np.clip(special.ndtr(z), 1e-12, 1 - 1e-12)
    # A separate stream, drawn row-major, so a patient's categories do not depend on n (prefix-stable ids).
    u_cat = _rng(condition, seed, split, stream=1).random((n, len(_categorical_tables(condition, split))))
    return u, u_cat


def sample_patients(condition: str = "knee_oa", n: int = 1000, seed: int = 0, split: str = "train") -> dict[str, Any]:
    """Columns of :func:`make_cohort` as a dict of numpy arrays, without building a DataFrame.

    Same arguments, same values as :func:`make_cohort`; identity columns are arrays of ``str``
    (``condition`` and ``split`` included). For one patient per seed (env resets): :func:`draw_patients`,
    :func:`sample_patient`.
    """
    _check_sample_args(condition, n, seed, split)
    _, names, _, marginals = _prepared(condition, split)
    u, u_cat = _uniforms(condition, n, seed, split)
    data: dict[str, Any] = {
        "patient_id": np.array([f"{condition}-{split}-s{seed}-{i:05d}" for i in range(n)], dtype=object),
        "condition": np.full(n, condition, dtype=object),
        "split": np.full(n, split, dtype=object),
    }
    for j, (name, labels, cumulative) in enumerate(_categorical_tables(condition, split)):
        data[name] = labels[np.searchsorted(cumulative, u_cat[:, j], side="right").clip(0, len(labels) - 1)]
    x = marginals.values(u)
    for j, name in enumerate(names):
        data[name] = x[:, j]
    return data


@dataclass(frozen=True)
class PatientDraws:
    """Patients drawn one per cohort seed (:func:`draw_patients`), held as arrays; rows are built on request.

    Row ``j`` is the patient ``sample_patient(condition, seeds[j], split)`` (the single patient of
    ``make_cohort(condition, 1, seeds[j], split)``), bit for bit.

    Attributes:
        condition, split: the prior and split the patients were drawn from.
        seeds: the cohort seeds, ``uint64`` ``(m,)``.
        categorical: categorical column name -> labels ``(m,)`` (object array of ``str``), prior order.
        names: the continuous parameters, prior order.
        values: their values ``(m, len(names))`` (units as in the prior YAML).
    """

    condition: str
    split: str
    seeds: np.ndarray
    categorical: dict[str, np.ndarray]
    names: tuple[str, ...]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.seeds)

    def patient_id_text(self) -> np.ndarray:
        """``{condition}-{split}-s{seed}-00000`` of every patient as a NumPy ``str_`` array (one vectorised call;
        what :func:`~adaptrx.patient.stream_keys` hashes without converting)."""
        prefix = f"{self.condition}-{self.split}-s"
        return np.strings.add(np.strings.add(prefix, self.seeds.astype(np.str_)), "-00000")

    def patient_ids(self) -> np.ndarray:
        """``{condition}-{split}-s{seed}-00000`` of every patient (object array of ``str``; one vectorised call)."""
        return self.patient_id_text().astype(object)

    def columns(self, id_text: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Column name -> array ``(m,)`` in :func:`make_cohort`'s order (what ``PatientSimulator`` takes).
        ``id_text``: :meth:`patient_id_text` (or those ids as an object array) if already made (saves making it
        again)."""
        m = len(self.seeds)
        ids = self.patient_id_text() if id_text is None else id_text
        if ids.dtype != object:
            ids = ids.astype(object)
        condition, split = np.empty(m, dtype=object), np.empty(m, dtype=object)
        condition.fill(self.condition)  # = np.full(m, .., dtype=object), several times faster
        split.fill(self.split)
        data: dict[str, np.ndarray] = {"patient_id": ids, "condition": condition, "split": split, **self.categorical}
        data.update(zip(self.names, self.values.T, strict=True))
        return data

    def row(self, j: int) -> dict[str, Any]:
        """Patient ``j`` as column -> Python scalar (``str`` identity columns, ``float`` parameters)."""
        row: dict[str, Any] = {"patient_id": f"{self.condition}-{self.split}-s{int(self.seeds[j])}-00000",
                               "condition": self.condition, "split": self.split}
        for name, labels in self.categorical.items():
            row[name] = labels[j]
        row.update(zip(self.names, self.values[j].tolist(), strict=True))
        return row


def draw_patients(condition: str, seeds: np.ndarray | list[int], split: str = "train") -> PatientDraws:
    """One patient per cohort seed, all at once: patient ``j`` is ``sample_patient(condition, seeds[j], split)``.

    The env-reset path of the vector env (a few hundred new patients per step). Each patient's two seeded NumPy
    generators are reproduced bit for bit by :mod:`adaptrx.patient.generators` in one compiled call; the
    copula's matrix product runs row by row inside one ``matmul`` call (the vector-matrix product that
    ``make_cohort(.., 1, ..)`` computes, so the rounding is the same), and the marginals are elementwise.

    Args:
        condition: one of :func:`conditions`.
        seeds: cohort seeds, integers in ``[0, 2**64)``, shape ``(m,)`` (m >= 1).
        split: ``train``, ``val``, ``test`` or ``ood``.
    """
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or len(seeds) < 1 or seeds.dtype.kind not in "iu" or (seeds.dtype.kind == "i" and
                                                                               (seeds < 0).any()):
        raise ValueError("seeds: must be a non-empty 1-D array of integers in [0, 2**64)")
    _check_sample_args(condition, len(seeds), 0, split)
    seeds = seeds.astype(np.uint64)
    _, names, chol, marginals = _prepared(condition, split)
    tables = _categorical_tables(condition, split)
    normals, u_cat = generators.patient_draws(seeds, SPLITS.index(split), _condition_tag(condition), len(names),
                                              len(tables))
    z = np.matmul(normals[:, None, :], chol.T)[:, 0]  # (1, k) @ (k, k) per row: make_cohort(n=1)'s product
    u = np.minimum(np.maximum(special.ndtr(z), 1e-12), 1 - 1e-12)  # = np.clip (no NaN), minus its overhead
    categorical = {name: labels[np.minimum(np.searchsorted(cumulative, u_cat[:, j], side="right"), len(labels) - 1)]
                   for j, (name, labels, cumulative) in enumerate(tables)}
    return PatientDraws(condition, split, seeds, categorical, tuple(names), marginals.values(u))


def sample_patient(condition: str = "knee_oa", seed: int = 0, split: str = "train") -> dict[str, Any]:
    """Row 0 of :func:`sample_patients` ``(condition, 1, seed, split)`` as column -> Python scalar (``str``
    identity columns, ``float`` parameters), bit for bit the same values. ``seed`` in ``[0, 2**64)``.

    The hot path of single-env resets (one new patient per episode): :func:`draw_patients` of one seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed: must be an integer in [0, 2**64), got {seed!r}")
    return draw_patients(condition, np.array([int(seed)], dtype=np.uint64), split).row(0)


def make_cohort(condition: str = "knee_oa", n: int = 1000, seed: int = 0, split: str = "train") -> pd.DataFrame:
    """Sample a deterministic cohort of virtual patients.

    Args:
        condition: one of :func:`conditions` (``knee_oa``, ``chronic_low_back_pain``, ``fibromyalgia``,
            ``lumbar_spinal_stenosis``).
        n: number of patients (>= 1).
        seed: cohort seed (any non-negative int); the same arguments always give the same table.
        split: ``train``, ``val`` and ``test`` share the prior but use disjoint random streams; ``ood`` uses
            the prior shifted as its ``ood_shift`` says (older, more sensitized, more fearful).

    Returns:
        One row per patient: the identity columns of :data:`ID_COLUMNS` then every continuous parameter
        of the prior (units and ranges documented in the YAML and in ``envs/MODEL_CARD.md``).
    """
    df = pd.DataFrame(sample_patients(condition, n, seed, split))
    ordered = [*ID_COLUMNS, *[c for c in df.columns if c not in ID_COLUMNS]]
    return df[ordered]


def save_cohort(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a cohort to ``.parquet`` or ``.csv`` (chosen by suffix); returns the path."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise ValueError(f"path: cohort files must end in .parquet or .csv, got {path.name!r}")
    with atomic.replacing(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, float_format="%.17g")
    return path


def load_cohort(path: str | Path) -> pd.DataFrame:
    """Read a cohort written by :func:`save_cohort` and check its identity columns."""
    path = Path(path)
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        df = pd.read_csv(path, dtype={c: str for c in ID_COLUMNS})
    else:
        raise ValueError(f"path: cohort files must end in .parquet or .csv, got {path.name!r}")
    missing = [c for c in ID_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name}: missing cohort column(s) {missing}")
    for c in ID_COLUMNS:
        df[c] = df[c].astype(str)  # the dtype make_cohort gives (str in pandas 3, object before)
    numeric = [c for c in df.columns if c not in ID_COLUMNS]
    df[numeric] = df[numeric].astype(np.float64)  # CSV reads rounded columns back as int64
    return df
