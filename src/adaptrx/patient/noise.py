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
