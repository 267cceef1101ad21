"""Run every benchmark module in this folder (``bench_*.py``) and print one results table.

Usage: ``python benchmarks/run.py [--quick] [--only NAME ...]`` (``make bench`` runs it without options).
Each module exposes ``run(quick: bool) -> list[dict]``; a row has ``benchmark``, ``metric``, ``value``,
``unit`` and optionally ``target`` and ``ratio`` (measured / target: below 1 beats the target).
The exit code is 0 unless a module fails to run; a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent


def discover() -> list[Path]:
    """The benchmark modules, sorted by name."""
    return sorted(HERE.glob("bench_*.py"))


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmarks.{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print rows as an aligned text table (benchmark, metric, value, unit, target, ratio, status)."""
    columns = ["module", "benchmark", "metric", "value", "unit", "target", "ratio", "status"]
    if not any("module" in r for r in rows):
        columns.remove("module")
    cells = []
    for r in rows:
        status = "" if r.get("ratio") is None else ("ok" if r["ratio"] <= 1 else "MISSED")
        cells.append([status if c == "status" else _fmt(r.get(c)) for c in columns])
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = {"value", "target", "ratio"}

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if c in numeric else v.ljust(w) for c, v, w in zip(columns, values, widths, strict=True)
        ).rstrip()

    header = line(columns)
    print(header)
    print("-" * len(header))
    for row in cells:
        print(line(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="module names to run, e.g. patient")
    args = parser.parse_args(argv)

    import numpy as np

    print(
        f"adaptrx benchmarks: python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or platform.system()}"
    )
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for path in discover():
        name = path.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            module_rows = load(path).run(quick=args.quick)
        except Exception as exc:  # report and keep going with the other modules
            print(f"{path.name}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(path.name)
            continue
        print(f"{path.name}: {len(module_rows)} results in {time.perf_counter() - t0:.1f} s")
        rows.extend({"module": name, **r} for r in module_rows)
    print()
    if rows:
        print_table(rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
