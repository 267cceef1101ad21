"""Per-patient, counter-based random streams (common random numbers).

Every random number the simulator uses is a pure function of
``(patient key, day, channel, slot)``: SplitMix64 keyed by a 64-bit patient key (drawn from an explicit
:class:`numpy.random.Generator` or hashed from the patient id and seed) and counting over the simulation
day, the named channel and a slot index.
Consequences:

* a patient's noise never depends on other patients in the batch, on the batch size or order, or on
  what the policy prescribes (the attendance draw for day 17 is the same uniform whether a session is
  prescribed that day or not), so the same patient + seed faces the same noise under every policy;
* a draw can be computed on its own, so the compiled simulator (:mod:`adaptrx.patient.kernel`) draws
  inline only what a day needs (e.g. no attendance draw on a day without a scheduled session) without
  shifting any other draw; no per-patient generators and no Python loop over patients;
* the global NumPy RNG is never touched.

SplitMix64 (Steele, Lea & Flood 2014) passes BigCrush as a hash of a counter; uniforms use the top 53
bits, ``((bits >> 11) + 0.5) * 2**-53``; normals are the inverse normal CDF of the uniform, by Wichura's
AS241 (:func:`adaptrx.patient.kernel.ndtri`, ~1e-16 relative accuracy). :class:`NoiseStreams` gives the
same draws (the kernel's own functions) as arrays over channels, days, patients and slots, for code outside
the kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from adaptrx.patient.constants import CHANNELS
from adaptrx.patient.kernel import draw_array

__all__ = ["CHANNELS", "NoiseStreams", "mix64", "patient_keys"]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 of a ``uint64`` array (wrapping arithmetic): a bijective hash for deriving keys."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def patient_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw ``n`` independent 64-bit stream keys from an explicit generator.

    Args:
        rng: the generator that owns the randomness of a cohort or episode.
        n: number of patients (>= 0).

    Returns:
        ``uint64`` array of shape ``(n,)``.
    """
    return rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)


class NoiseStreams:
    """Counter-based noise for a batch of patients.

    Args:
        keys: ``uint64`` stream key per patient, shape ``(n,)``. Two batches that contain the same key
            produce identical draws for that patient.
    """

    def __init__(self, keys: np.ndarray) -> None:
        self.keys = np.ascontiguousarray(keys, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, index: np.ndarray) -> NoiseStreams:
        """Streams of a subset of patients (same draws for those patients)."""
        return NoiseStreams(self.keys[index])

    def _draw(self, channels: list[str], first_day: np.ndarray | int, n_days: int, slots: int,
              gaussian: bool) -> np.ndarray:
        first = np.ascontiguousarray(np.broadcast_to(np.asarray(first_day, dtype=np.int64), self.keys.shape))
        codes = np.array([CHANNELS[c] for c in channels], dtype=np.int64)
        return draw_array(self.keys, first, codes, int(n_days), int(slots), gaussian)

    def uniform(
        self, channels: list[str], first_day: np.ndarray | int, n_days: int = 1, slots: int = 1
    ) -> np.ndarray:
        """Uniforms in (0, 1), shape ``(n_channels, n_days, n_patients, slots)``.

        Args:
            channels: channel names (keys of :data:`CHANNELS`).
            first_day: simulation day of the first draw, a scalar or one per patient (shape ``(n,)``).
            n_days: consecutive days to draw (>= 1).
            slots: independent draws per patient-day and channel (>= 1).
        """
        return self._draw(channels, first_day, n_days, slots, gaussian=False)

    def normal(
        self, channels: list[str], first_day: np.ndarray | int, n_days: int = 1, slots: int = 1
    ) -> np.ndarray:
        """Standard normals, same shape and arguments as :meth:`uniform` (AS241 inverse CDF of the uniforms)."""
        return self._draw(channels, first_day, n_days, slots, gaussian=True)


# ------------------------------------------------------------------------------ stream keys (BLAKE2b)
_B2_IV = np.array([0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1,
                   0x510E527FADE682D1, 0x9B05688C2B3E6C1F, 0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179], dtype=np.uint64)
_B2_SIGMA = np.array([
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
], dtype=np.int64)
_B2_PARAM8 = np.uint64(0x01010008)  # digest length 8, no key, fanout 1, depth 1
_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True, nogil=True)
def _rotr(x: np.uint64, n: int) -> np.uint64:
    return (x >> np.uint64(n)) | (x << np.uint64(64 - n))


@njit(cache=True, nogil=True)
def _g(a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64, x: np.uint64,
       y: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """BLAKE2b's mixing function G."""
    a = a + b + x
    d = _rotr(d ^ a, 32)
    c = c + d
    b = _rotr(b ^ c, 24)
    a = a + b + y
    d = _rotr(d ^ a, 16)
    c = c + d
    b = _rotr(b ^ c, 63)
    return a, b, c, d


@njit(cache=True, nogil=True)
def blake2b_keys(data: np.ndarray, lengths: np.ndarray, salts: np.ndarray) -> np.ndarray:
    """8-byte BLAKE2b digests (RFC 7693) read as little-endian ``uint64``: row ``i`` is
    ``hashlib.blake2b(data[i, :lengths[i]], digest_size=8, salt=salts[i].to_bytes(8, "little"))`` (the salt's
    other 8 bytes zero, no key, no personalisation).

    Args:
        data: ``uint8`` messages, shape ``(m, width)`` (bytes past a row's length are ignored).
        lengths: message lengths in bytes, ``int64`` ``(m,)``.
        salts: ``uint64`` ``(m,)``.
    """
    m = data.shape[0]
    out = np.empty(m, dtype=np.uint64)
    h, w = np.empty(8, dtype=np.uint64), np.empty(16, dtype=np.uint64)
    for i in range(m):
        h[:] = _B2_IV
        h[0] ^= _B2_PARAM8
        h[4] ^= salts[i]
        length = lengths[i]
        start = 0
        while True:  # blocks of 128 bytes; the last (possibly empty or partial) one is flagged
            last = length - start <= 128
            for k in range(16):
                word = np.uint64(0)
                for b in range(8):
                    pos = start + 8 * k + b
                    if pos < length:
                        word |= np.uint64(data[i, pos]) << np.uint64(8 * b)
                w[k] = word
            v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
            v8, v9, v10, v11 = _B2_IV[0], _B2_IV[1], _B2_IV[2], _B2_IV[3]
            v12 = _B2_IV[4] ^ np.uint64(length if last else start + 128)  # bytes hashed so far
            v13, v14, v15 = _B2_IV[5], _B2_IV[6] ^ (_U64_MAX if last else np.uint64(0)), _B2_IV[7]
            for r in range(12):
                s = _B2_SIGMA[r % 10]
                v0, v4, v8, v12 = _g(v0, v4, v8, v12, w[s[0]], w[s[1]])
                v1, v5, v9, v13 = _g(v1, v5, v9, v13, w[s[2]], w[s[3]])
                v2, v6, v10, v14 = _g(v2, v6, v10, v14, w[s[4]], w[s[5]])
                v3, v7, v11, v15 = _g(v3, v7, v11, v15, w[s[6]], w[s[7]])
                v0, v5, v10, v15 = _g(v0, v5, v10, v15, w[s[8]], w[s[9]])
                v1, v6, v11, v12 = _g(v1, v6, v11, v12, w[s[10]], w[s[11]])
                v2, v7, v8, v13 = _g(v2, v7, v8, v13, w[s[12]], w[s[13]])
                v3, v4, v9, v14 = _g(v3, v4, v9, v14, w[s[14]], w[s[15]])
            h[0] ^= v0 ^ v8
            h[1] ^= v1 ^ v9
            h[2] ^= v2 ^ v10
            h[3] ^= v3 ^ v11
            h[4] ^= v4 ^ v12
            h[5] ^= v5 ^ v13
            h[6] ^= v6 ^ v14
            h[7] ^= v7 ^ v15
            if last:
                break
            start += 128
        out[i] = h[0]
    return out
