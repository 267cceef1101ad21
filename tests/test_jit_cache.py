"""Numba cache invalidation: cached machine code never outlives an edit of the simulator's sources."""

from __future__ import annotations

from pathlib import Path

from adaptrx.common.jit_cache import STAMP_NAME, invalidate_stale_caches


def _package(root: Path) -> tuple[Path, Path]:
    for name in ("patient", "envs"):
        (root / name / "__pycache__").mkdir(parents=True)
        (root / name / "mod.py").write_text(f"X = '{name}'\n")
    return root / "patient" / "__pycache__" / "kernel.step_week-1.py311.nbi", root / "envs" / "__pycache__" / "e.nbc"


def test_caches_survive_while_sources_are_unchanged_and_go_when_any_source_changes(tmp_path: Path) -> None:
    kernel_cache, engine_cache = _package(tmp_path)
    # first run: no stamp, so cache files of unknown provenance go and stamps are written
    kernel_cache.write_bytes(b"old")
    assert invalidate_stale_caches(tmp_path) == [kernel_cache]
    assert (tmp_path / "envs" / "__pycache__" / STAMP_NAME).exists()
    # unchanged sources: compiled code is kept
    kernel_cache.write_bytes(b"x")
    engine_cache.write_bytes(b"y")
    assert invalidate_stale_caches(tmp_path) == []
    assert kernel_cache.exists() and engine_cache.exists()
    # an edit in one package invalidates the caches of both (the engine inlines the kernel)
    (tmp_path / "patient" / "mod.py").write_text("X = 'edited'\n")
    assert sorted(invalidate_stale_caches(tmp_path)) == sorted([kernel_cache, engine_cache])
    assert not kernel_cache.exists() and not engine_cache.exists()
    # a new source file counts as an edit too
    engine_cache.write_bytes(b"z")
    (tmp_path / "envs" / "new.py").write_text("")
    assert invalidate_stale_caches(tmp_path) == [engine_cache]


def test_installed_package_is_stamped_with_its_current_sources() -> None:
    import adaptrx.patient.kernel as kernel
    from adaptrx.common.jit_cache import sources_fingerprint

    root = Path(kernel.__file__).parent.parent
    stamp = root / "patient" / "__pycache__" / STAMP_NAME
    assert stamp.read_text() == sources_fingerprint(root)
