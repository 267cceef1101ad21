"""Atomic file writes: a reader (or a run resumed after a kill) sees the previous file or the whole new one,
never a half-written table, report or policy that looks valid.

Every result file adaptrx writes goes through :func:`replacing`: the content is written to a temporary file in
the same folder (same suffix, so writers that infer the format from it still work), flushed to disk, and moved
over the destination with :func:`os.replace`, which is atomic on POSIX and Windows file systems.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block ends without an exception it replaces ``path``
    (mode 0644), otherwise it is deleted and ``path`` is untouched.

    Example::

        with replacing(out / "results.parquet") as tmp:
            table.to_parquet(tmp, index=False)
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.part-", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the writer may have replaced the file: flush what is there now
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are readable like any other file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`replacing`)."""
    write_bytes(path, text.encode(encoding))
