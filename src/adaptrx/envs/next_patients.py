"""Each vector-env slot's next patient, drawn ahead of its reset in a background thread.

The patient of a slot's next episode is fixed by the slot's next episode seed, which its generator gives
whatever happens in the current episode (:mod:`adaptrx.patient.generators`). So it can be drawn while the
episode still runs: after a reset, :meth:`NextPatients.draw_ahead` hands the slots' next seeds to a worker
thread (:class:`~adaptrx.common.worker.Worker`), which draws those patients
(:func:`~adaptrx.envs.episode_engine.new_patients`: the copula, scipy's inverse beta CDF, the noise-stream
keys) while the main thread steps the simulator; the compiled kernel and scipy's ufuncs release the GIL, so on
a machine with a spare core the draws cost the step little.

The store is a cache keyed by the episode seed: :meth:`NextPatients.take` uses a slot's drawn-ahead patient
only if it was drawn for the very seed the reset uses, and draws the others on the spot. Reseeding, restored
states and user-given patients therefore need no bookkeeping here, and the patients a reset starts are the
same with or without the worker (without ``submit`` every patient is drawn at its reset).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import numpy as np

from adaptrx.envs.episode_engine import EnvConfig, NewPatients, Submit, new_patients
from adaptrx.patient.cohort import PatientDraws

#: Fewest slots handed to the worker at once: smaller batches cost more in thread hand-offs than they save.
MIN_BATCH = 32


class NextPatients:
    """Drawn-ahead patients of ``n`` slots (one per vector-env slot), keyed by their episode seeds.

    Slots whose next patient is wanted are collected until :data:`MIN_BATCH` of them wait, then drawn in one
    background call; a reset never waits for the worker (what is not ready is drawn on the spot).

    Args:
        n: number of slots (>= 1).
        config: the env settings (condition and split of the prior).
        submit: how to draw ahead, ``submit(fn, *args) -> Future`` (a :class:`~adaptrx.common.worker.Worker`'s);
            None: :meth:`draw_ahead` does nothing and every patient is drawn in :meth:`take`.
    """

    def __init__(self, n: int, config: EnvConfig, submit: Submit | None = None) -> None:
        self.config = config
        self.submit = submit
        self.seeds = np.zeros(n, dtype=np.uint64)  # the episode seed each slot's stored patient was drawn for
        self.ready = np.zeros(n, dtype=bool)  # a stored patient is there (and not yet used)
        self._wanted = np.zeros(n, dtype=bool)  # slots whose next patient is to be drawn ahead ...
        self._wanted_seeds = np.zeros(n, dtype=np.uint64)  # ... for these seeds
        self._ids = np.empty(n, dtype=object)
        self._keys = np.zeros(n, dtype=np.uint64)
        self._values: np.ndarray | None = None  # (n, n_parameters), made at the first store
        self._categorical: dict[str, np.ndarray] = {}
        self._names: tuple[str, ...] = ()
        self._pending: tuple[np.ndarray, Future[NewPatients]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickles and copies hold the pending draw's result (waited for), not the draw in flight."""
        self.collect()
        return self.__dict__.copy()

    def take(self, index: np.ndarray, seeds: np.ndarray) -> NewPatients:
        """The patients of slots ``index`` (distinct, ``(m,)``) for episode seeds ``seeds`` (``uint64`` ``(m,)``):
        those drawn ahead for these seeds, the others drawn now. Row ``j`` is slot ``index[j]``'s patient."""
        self.collect(wait=False)
        index = np.asarray(index, dtype=np.int64)
        seeds = np.asarray(seeds, dtype=np.uint64)
        miss = ~(self.ready[index] & (self.seeds[index] == seeds))
        if miss.any():
            self._store(index[miss], new_patients(self.config, seeds[miss]))
        self.ready[index] = False  # used: a slot's next reset needs its next seed's patient
        self._wanted[index] = False
        assert self._values is not None
        draws = PatientDraws(self.config.condition, self.config.split, self.seeds[index],
                             {name: labels[index] for name, labels in self._categorical.items()}, self._names,
                             self._values[index])
        return NewPatients(draws, self._ids[index], self._keys[index])

    def draw_ahead(self, index: np.ndarray, seeds: np.ndarray) -> None:
        """Ask for the patients of slots ``index`` for their next episode seeds ``seeds``: drawn through
        ``submit`` once :data:`MIN_BATCH` slots wait and the worker is free (stored by a later :meth:`take` or
        :meth:`collect`). Does nothing without ``submit``."""
        if self.submit is None:
            return
        self._wanted[index] = True
        self._wanted_seeds[index] = seeds
        self.collect(wait=False)
        if self._pending is None:
            wanted = np.flatnonzero(self._wanted)
            if len(wanted) >= MIN_BATCH:
                self._wanted[wanted] = False
                self._pending = (wanted, self.submit(new_patients, self.config, self._wanted_seeds[wanted]))

    def collect(self, wait: bool = True) -> None:
        """Store the pending draw, if any and (unless ``wait``) if it has finished."""
        if self._pending is not None and (wait or self._pending[1].done()):
            index, future = self._pending
            self._pending = None
            self._store(index, future.result())

    def _store(self, index: np.ndarray, new: NewPatients) -> None:
        draws = new.draws
        if self._values is None:
            n = len(self.seeds)
            self._names = draws.names
            self._values = np.empty((n, len(draws.names)))
            self._categorical = {name: np.empty(n, dtype=object) for name in draws.categorical}
        self._values[index] = draws.values
        for name, labels in draws.categorical.items():
            self._categorical[name][index] = labels
        self._ids[index] = new.ids
        self._keys[index] = new.keys
        self.seeds[index] = draws.seeds
        self.ready[index] = True
