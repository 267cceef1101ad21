"""Keep numba's on-disk cache of the compiled simulator consistent with the sources.

Numba's ``cache=True`` keys a cached function on the file that defines it, not on what it calls or on the
module-level constants it reads. ``adaptrx.envs.compiled_step`` compiles ``adaptrx.patient.kernel.step_week`` and
the ``Kc``/``Pr``/``St`` indices into its own machine code, so after an edit of ``kernel.py`` (a new model
constant, a changed mechanism) the engine would silently keep running the old model from its cache.

:func:`invalidate_stale_caches` fingerprints every source file of the packages whose jitted functions call
each other (``adaptrx.patient``, ``adaptrx.envs``) and, when the fingerprint differs from the one stamped in
a package's ``__pycache__``, deletes that package's numba cache files (``*.nbi``, ``*.nbc``) so they are
recompiled. It runs once when :mod:`adaptrx.patient.kernel` is imported, before anything is compiled. Only
numba's default cache location (``__pycache__`` next to the sources) is handled; with ``NUMBA_CACHE_DIR``
set, clear that directory after editing the model. Read-only installs are left alone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Sub-packages whose compiled functions call or inline each other.
JIT_PACKAGES: tuple[str, ...] = ("patient", "envs")
#: Name of the stamp file written into each package's ``__pycache__``.
STAMP_NAME = "adaptrx-jit-sources.sha256"


def sources_fingerprint(root: Path, packages: tuple[str, ...] = JIT_PACKAGES) -> str:
    """sha256 over the names and bytes of every ``*.py`` file of ``packages`` under ``root``."""
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).glob("*.py")):
            digest.update(f"{package}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def invalidate_stale_caches(root: Path | None = None, packages: tuple[str, ...] = JIT_PACKAGES) -> list[Path]:
    """Delete numba cache files of ``packages`` compiled from other sources than the current ones.

    Args:
        root: the ``adaptrx`` package directory (default: the installed one).
        packages: sub-packages to check, all fingerprinted together.

    Returns:
        The cache files deleted (empty when the stamps match or nothing could be written).
    """
    root = Path(__file__).resolve().parents[1] if root is None else root  # src/adaptrx
    fingerprint = sources_fingerprint(root, packages)
    deleted: list[Path] = []
    for package in packages:
        cache = root / package / "__pycache__"
        stamp = cache / STAMP_NAME
        try:
            if stamp.read_text() == fingerprint:
                continue
        except OSError:
            pass
        try:
            for path in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
                path.unlink(missing_ok=True)
                deleted.append(path)
            cache.mkdir(exist_ok=True)
            stamp.write_text(fingerprint)
        except OSError:  # read-only install, or another process got there first
            continue
    return deleted
