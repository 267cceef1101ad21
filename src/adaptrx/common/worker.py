"""One background worker thread, started at first use: where the vector env overlaps work with its main thread.

Work handed to it must release the GIL for most of its run (compiled numba code marked ``nogil``, NumPy and
scipy ufunc loops) to overlap anything; it runs in submission order.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Worker:
    """A single worker thread (a one-thread ``ThreadPoolExecutor``), started by the first :meth:`submit`."""

    def __init__(self, name: str = "adaptrx-worker") -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in the worker thread, after everything submitted before; its result or exception
        comes back through the returned ``Future``."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        return self._executor.submit(fn, *args)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles and copies carry the name only: a copy starts its own thread at its first :meth:`submit`."""
        return {"name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name = state["name"]
        self._executor = None

    def close(self) -> None:
        """Wait for the submitted work and stop the thread (a later :meth:`submit` starts a new one)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
