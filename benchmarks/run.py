"""Run every benchmark module in this folder (``bench_*.py``) and print one results table.

Usage: ``python benchmarks/run.py [--quick] [--only NAME ...] [--results FILE]`` (``make bench`` runs it without
options). A full run (no ``--quick``, no ``--only``) also writes ``benchmarks/RESULTS.md``: the machine, the date,
the table and the figures; ``--results FILE`` writes that page for any run.
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


def _machine() -> str:
    """The CPU model, core count, memory, OS and Python/NumPy versions, one line."""
    import numpy as np

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages * size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs{memory}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, NumPy {np.__version__}")


def _cell(value: Any) -> str:
    text = _fmt(value)
    return text.replace("|", "\\|")


def write_results(path: Path, rows: list[dict[str, Any]], seconds: float, failed: list[str], quick: bool) -> None:
    """The results page: machine, date, command, one table per module, figures, misses."""
    import datetime as dt

    columns = ["benchmark", "metric", "value", "unit", "target", "ratio", "status"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python benchmarks/run.py`" + (" --quick" if quick else "") + "); do not edit by "
        "hand. What each benchmark measures, and what bounds each figure, is in [README.md](README.md).",
        "",
        f"* date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"* machine: {_machine()}",
        f"* total run time: {seconds:.0f} s",
        "* ratio = measured / target (below 1 beats the target; for higher-is-better targets, target / measured)",
    ]
    if failed:
        lines.append(f"* FAILED modules: {', '.join(failed)}")
    missed = [r for r in rows if r.get("ratio") is not None and r["ratio"] > 1]
    lines.append(f"* targets missed: {len(missed)}" + (" (" + "; ".join(f"{r['module']}/{r['benchmark']}: "
                                                                      f"{r['metric']}" for r in missed) + ")"
                                                         if missed else ""))
    figures = [r["value"] for r in rows if r.get("unit") == "png"]
    for module in dict.fromkeys(r["module"] for r in rows):
        lines += ["", f"## {module}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for r in rows:
            if r["module"] != module or r.get("unit") == "png":
                continue
            status = "" if r.get("ratio") is None else ("ok" if r["ratio"] <= 1 else "MISSED")
            lines.append("| " + " | ".join(status if c == "status" else _cell(r.get(c)) for c in columns) + " |")
    if figures:
        lines += ["", "## Figures", ""]
        for figure in figures:
            rel = os.path.relpath(HERE.parent / figure, path.parent)
            lines.append(f"![{Path(figure).stem}]({rel})")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="module names to run, e.g. patient")
    parser.add_argument("--results", metavar="FILE", type=Path, default=None,
                        help="write the results page here (default: benchmarks/RESULTS.md on a full run)")
    args = parser.parse_args(argv)
    results = args.results or (None if args.quick or args.only else HERE / "RESULTS.md")
    started = time.perf_counter()

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
    if results is not None and rows:
        write_results(results, rows, time.perf_counter() - started, failed, args.quick)
        print(f"\nwrote {results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
