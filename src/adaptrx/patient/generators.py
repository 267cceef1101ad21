"""NumPy's seeded generators, compiled, for many seeds at once (bit for bit the same numbers).

An env reset draws a new patient from two generators seeded with the episode seed
(:func:`adaptrx.patient.cohort.sample_patient`: ``np.random.default_rng(words)``), and the episode seed
itself from the env's own generator (``np_random.integers(0, 2**63)``). Creating a ``numpy.random.Generator``
costs ~10 us of Python, so a vector env resetting a few hundred patients per step would spend most of its time
there. This module reproduces, in one compiled call over many seeds, exactly what NumPy computes:

* :class:`numpy.random.SeedSequence` (entropy words, the 4-word pool, ``generate_state``; O'Neill's hash mix);
* :class:`numpy.random.PCG64` (128-bit LCG, XSL-RR output) seeded from it, as ``default_rng`` does;
* ``Generator.standard_normal`` (NumPy's 256-step ziggurat, with its tables), ``Generator.random`` (53-bit
  doubles) and ``Generator.integers(0, 2**63)`` (Lemire's bounded draw, which for this range is one
  64-bit word shifted right by one).

A generator state is four ``uint64`` words ``(state_hi, state_lo, inc_hi, inc_lo)``, the fields of
``PCG64().state``. The ziggurat tables are NumPy's own (shipped by numba, whose Generator support is tested
bit for bit against NumPy). ``tests/patient/test_cohort.py`` checks every function against NumPy on
thousands of seeds, the rare ziggurat tail paths included.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit
from numba.np.random import _constants as _zig

__all__ = [
    "entropy_words",
    "generator_state",
    "next_episode_seeds",
    "patient_draws",
    "pcg64_states",
    "random_entropy",
    "state_dict",
]

_jit = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")

# SeedSequence constants (numpy/random/bit_generator.pyx)
_INIT_A = np.uint64(0x43B0D7E5)
_MULT_A = np.uint64(0x931E8875)
_INIT_B = np.uint64(0x8B51F9DD)
_MULT_B = np.uint64(0x58F38DED)
_MIX_MULT_L = np.uint64(0xCA01F9DD)
_MIX_MULT_R = np.uint64(0x4973F715)
_M32 = np.uint64(0xFFFFFFFF)
_POOL = 4
# PCG64's 128-bit multiplier
_MUL_HI = np.uint64(2549297995355413924)
_MUL_LO = np.uint64(4865540595714422341)
_U0, _U1, _U8, _U11, _U16, _U32, _U58, _U63, _U64 = (np.uint64(k) for k in (0, 1, 8, 11, 16, 32, 58, 63, 64))
_U255 = np.uint64(0xFF)
_MANTISSA = np.uint64(0x000FFFFFFFFFFFFF)
_TO_DOUBLE = 1.0 / 9007199254740992.0
# NumPy's ziggurat for the standard normal (numpy/random/src/distributions/ziggurat_constants.h)
_KI = np.asarray(_zig.ki_double, dtype=np.uint64)
_WI = np.asarray(_zig.wi_double, dtype=np.float64)
_FI = np.asarray(_zig.fi_double, dtype=np.float64)
_NOR_R = float(_zig.ziggurat_nor_r)
_NOR_INV_R = float(_zig.ziggurat_nor_inv_r)

#: Largest episode seed (exclusive): ``integers(0, EPISODE_SEED_HIGH)``.
EPISODE_SEED_HIGH = 2**63


# ---------------------------------------------------------------------------------- SeedSequence
@_jit
def _hashmix(value: np.uint64, hash_const: np.ndarray) -> np.uint64:
    value = (value ^ hash_const[0]) & _M32
    hash_const[0] = (hash_const[0] * _MULT_A) & _M32
    value = (value * hash_const[0]) & _M32
    return value ^ (value >> _U16)


@_jit
def _mix(x: np.uint64, y: np.uint64) -> np.uint64:
    result = (_MIX_MULT_L * x - _MIX_MULT_R * y) & _M32
    return result ^ (result >> _U16)


@_jit
def _seed_pcg64(words: np.ndarray, n_words: int, out: np.ndarray) -> None:
    """``PCG64(SeedSequence(entropy))`` for the ``uint32`` entropy ``words[:n_words]``: the 4 state words."""
    hash_const = np.empty(1, dtype=np.uint64)
    hash_const[0] = _INIT_A
    pool = np.empty(_POOL, dtype=np.uint64)
    for i in range(_POOL):
        pool[i] = _hashmix(np.uint64(words[i]) if i < n_words else _U0, hash_const)
    for i_src in range(_POOL):
        for i_dst in range(_POOL):
            if i_src != i_dst:
                pool[i_dst] = _mix(pool[i_dst], _hashmix(pool[i_src], hash_const))
    for i_src in range(_POOL, n_words):
        for i_dst in range(_POOL):
            pool[i_dst] = _mix(pool[i_dst], _hashmix(np.uint64(words[i_src]), hash_const))
    # generate_state(4, uint64): 8 uint32 words, read as little-endian uint64 pairs
    b = _INIT_B
    state = np.empty(8, dtype=np.uint64)
    for i in range(8):
        v = pool[i % _POOL] ^ b
        b = (b * _MULT_B) & _M32
        v = (v * b) & _M32
        state[i] = v ^ (v >> _U16)
    seed_hi, seed_lo = state[0] | (state[1] << _U32), state[2] | (state[3] << _U32)
    seq_hi, seq_lo = state[4] | (state[5] << _U32), state[6] | (state[7] << _U32)
    # pcg_setseq_128_srandom_r: state = 0, inc = seq << 1 | 1, step, state += seed, step
    out[2] = (seq_hi << _U1) | (seq_lo >> _U63)
    out[3] = (seq_lo << _U1) | _U1
    out[0], out[1] = out[2], out[3]  # 0 * mult + inc
    lo = out[1] + seed_lo
    out[0] = out[0] + seed_hi + (_U1 if lo < out[1] else _U0)
    out[1] = lo
    _step(out)


# ----------------------------------------------------------------------------------------- PCG64
@_jit
def _mulhi(a: np.uint64, b: np.uint64) -> np.uint64:
    """High 64 bits of the 128-bit product ``a * b``."""
    a_lo, a_hi, b_lo, b_hi = a & _M32, a >> _U32, b & _M32, b >> _U32
    p0, p1, p2 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo
    mid = (p0 >> _U32) + (p1 & _M32) + (p2 & _M32)
    return a_hi * b_hi + (p1 >> _U32) + (p2 >> _U32) + (mid >> _U32)


@_jit
def _step(s: np.ndarray) -> None:
    """``state = state * MULT + inc`` (mod 2**128) on ``s = (state_hi, state_lo, inc_hi, inc_lo)``."""
    lo = s[1] * _MUL_LO
    hi = _mulhi(s[1], _MUL_LO) + s[1] * _MUL_HI + s[0] * _MUL_LO
    new_lo = lo + s[3]
    s[0] = hi + s[2] + (_U1 if new_lo < lo else _U0)
    s[1] = new_lo


@_jit
def _next_uint64(s: np.ndarray) -> np.uint64:
    _step(s)
    v = s[0] ^ s[1]
    rot = s[0] >> _U58
    return (v >> rot) | (v << ((_U64 - rot) & _U63))


@_jit
def _next_double(s: np.ndarray) -> float:
    return float(_next_uint64(s) >> _U11) * _TO_DOUBLE


@_jit
def _standard_normal(s: np.ndarray) -> float:
    """NumPy's ``random_standard_normal`` (ziggurat)."""
    while True:
        r = _next_uint64(s)
        idx = r & _U255
        r = r >> _U8
        rabs = (r >> _U1) & _MANTISSA
        x = float(rabs) * _WI[idx]
        if r & _U1:
            x = -x
        if rabs < _KI[idx]:
            return x
        if idx == 0:
            while True:
                xx = -_NOR_INV_R * np.log1p(-_next_double(s))
                yy = -np.log1p(-_next_double(s))
                if yy + yy > xx * xx:
                    return -(_NOR_R + xx) if (rabs >> _U8) & _U1 else _NOR_R + xx
        elif (_FI[idx - _U1] - _FI[idx]) * _next_double(s) + _FI[idx] < np.exp(-0.5 * x * x):
            return x


# ------------------------------------------------------------------------------------ batched use
@_jit
def _pcg64_states(words: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    out = np.empty((len(lengths), 4), dtype=np.uint64)
    for j in range(len(lengths)):
        _seed_pcg64(words[j], lengths[j], out[j])
    return out


def pcg64_states(words: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """States ``(m, 4)`` of ``PCG64(SeedSequence(entropy_j))`` for ``uint32`` entropy words ``(m, w)``, of which
    row ``j`` uses the first ``lengths[j]`` (see :func:`entropy_words`)."""
    words = np.ascontiguousarray(words, dtype=np.uint32)
    lengths = np.asarray(lengths, dtype=np.int64)
    if words.ndim != 2 or lengths.shape != (len(words),) or (len(lengths) and (lengths.min() < 1 or lengths.max()
                                                                                > words.shape[1])):
        raise ValueError("words: expected (m, w) uint32 entropy words and m lengths in 1..w")
    return _pcg64_states(words, lengths)


def entropy_words(seeds: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``uint32`` entropy words ``SeedSequence(seed)`` hashes for each non-negative integer seed, as
    ``(words (m, w), lengths (m,))``: little-endian 32-bit words, ``[0]`` for 0. Seeds up to ``2**64 - 1``."""
    try:
        s = np.asarray(seeds, dtype=np.uint64).reshape(-1)
    except (OverflowError, ValueError, TypeError):
        raise ValueError("seed: must be integers in [0, 2**64)") from None
    if np.asarray(seeds).dtype.kind == "i" and (np.asarray(seeds) < 0).any():
        raise ValueError("seed: must be non-negative")
    words = np.stack([s & _M32, s >> _U32], axis=1).astype(np.uint32)
    return words, np.where(s >> _U32 != 0, 2, 1).astype(np.int64)


def random_entropy(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Fresh OS entropy for ``m`` unseeded generators (what ``SeedSequence()`` draws: 128 bits each)."""
    return np.frombuffer(os.urandom(16 * m), dtype="<u4").astype(np.uint32).reshape(m, 4), np.full(m, 4, np.int64)


@_jit
def _next_episode_seeds(states: np.ndarray, index: np.ndarray) -> np.ndarray:
    out = np.empty(len(index), dtype=np.uint64)
    for j in range(len(index)):
        out[j] = _next_uint64(states[index[j]]) >> _U1
    return out


def next_episode_seeds(states: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``Generator.integers(0, 2**63)`` from the generators ``states[index]`` (advanced in place), ``uint64``.

    Lemire's bounded draw over ``2**63`` values takes the high word of ``x * 2**63`` and never rejects: ``x >> 1``.
    """
    return _next_episode_seeds(states, np.asarray(index, dtype=np.int64))


@_jit
def _patient_draws(seeds: np.ndarray, split: int, tag: int, k: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    m = len(seeds)
    normals = np.empty((m, k))
    uniforms = np.empty((m, c))
    words = np.empty(6, dtype=np.uint64)
    state = np.empty(4, dtype=np.uint64)
    for j in range(m):
        seed = seeds[j]
        words[0] = seed & _M32
        n = 1
        if seed >> _U32:
            words[1] = seed >> _U32
            n = 2
        words[n], words[n + 1], words[n + 2], words[n + 3] = np.uint64(split), np.uint64(tag), np.uint64(0xADA9), _U1
        _seed_pcg64(words, n + 3, state)  # stream 0: the copula's normals
        for i in range(k):
            normals[j, i] = _standard_normal(state)
        _seed_pcg64(words, n + 4, state)  # stream 1: the categorical uniforms
        for i in range(c):
            uniforms[j, i] = _next_double(state)
    return normals, uniforms


def patient_draws(seeds: np.ndarray, split: int, tag: int, k: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """For each cohort seed ``s``: ``default_rng([s, split, tag, 0xADA9]).standard_normal(k)`` and
    ``default_rng([s, split, tag, 0xADA9, 1]).random(c)`` (the draws of ``cohort._uniforms(.., n=1, s, ..)``),
    as arrays ``(m, k)`` and ``(m, c)``. ``seeds``: ``uint64`` ``(m,)``; ``split`` and ``tag`` below ``2**32``."""
    if not 0 <= int(split) < 2**32 or not 0 <= int(tag) < 2**32:
        raise ValueError("split, tag: must be 32-bit words")
    return _patient_draws(np.asarray(seeds, dtype=np.uint64).reshape(-1), int(split), int(tag), int(k), int(c))


def state_dict(state: np.ndarray) -> dict:
    """``PCG64().state`` of one 4-word state (``bit_generator.state`` format)."""
    hi, lo, inc_hi, inc_lo = (int(w) for w in state)
    return {"bit_generator": "PCG64", "state": {"state": hi << 64 | lo, "inc": inc_hi << 64 | inc_lo},
            "has_uint32": 0, "uinteger": 0}


def generator_state(state: dict) -> np.ndarray:
    """The 4 words of a ``PCG64`` ``bit_generator.state`` dict (inverse of :func:`state_dict`)."""
    if state.get("bit_generator") != "PCG64":
        raise ValueError(f"state: expected a PCG64 generator state, got {state.get('bit_generator')!r}")
    s, inc = int(state["state"]["state"]), int(state["state"]["inc"])
    mask = 2**64 - 1
    return np.array([s >> 64, s & mask, inc >> 64, inc & mask], dtype=np.uint64)
