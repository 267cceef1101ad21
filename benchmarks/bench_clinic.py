"""Benchmark of the clinic (``adaptrx.clinic``): ``recommend()`` latency for a 12-week history.

* ``recommend_12_weeks``: wall time of :func:`adaptrx.clinic.recommend` with its defaults (the shipped policy,
  4000 particles, 12-week forecast under three plans) on 12-week histories of 20 different virtual knee-OA
  patients (pain-monitoring model, supervised). Target: p95 under 1 s. Measured side by side: the fit alone
  (particle filter), so the forecast's share is the rest.

* ``web_api_load``: ``adaptrx serve`` (defaults, in its own process on 127.0.0.1) under 20 concurrent
  clients that post 12-week histories back to back for 30 s (a local asyncio/httpx load generator in this
  process): requests answered, errors (any non-200), throughput and the p50/p95 latency seen by the clients.
  Targets: no errors, and a throughput of at least 80 % of (cores / single-request time), the single-request
  time being the median of 10 requests of one client measured just before (the server computes in one worker
  process per core). The latency under 20 concurrent clients is mostly queueing: about 20 / throughput.

* ``cli_cold``: ``adaptrx recommend --history FILE`` end to end in a new process (imports, policy load in numpy,
  fit, forecast, text report; numba's on-disk cache warm, as after the first run on a machine), median of 3.
  Target: 2 s.

``--quick`` uses 5 patients, and 5 clients for 8 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from adaptrx import protocols
from adaptrx.clinic.fitting import fit_patient
from adaptrx.clinic.history import parse_history
from adaptrx.clinic.recommend import recommend
from adaptrx.clinic.synthetic import simulate_history
from adaptrx.patient import make_cohort

NAME = "clinic"
TARGET_P95_S = 1.0
TARGET_CLI_S = 2.0
TARGET_THROUGHPUT_SHARE = 0.8


def histories(n: int, weeks: int = 12) -> list[Any]:
    """``n`` validated 12-week histories of virtual knee-OA patients (dropouts skipped)."""
    cohort = make_cohort("knee_oa", 4 * n, seed=99, split="test")
    out = []
    for i, row in cohort.iterrows():
        doc, batch = simulate_history(row.to_dict(), protocols.get("pain_monitoring", delivery="supervised"), weeks,
                                      seed=int(i))
        if not bool(batch.sim.state.dropped_out[0]):
            out.append(parse_history(doc))
        if len(out) == n:
            break
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _load(url: str, bodies: list[bytes], clients: int, seconds: float) -> tuple[list[float], int, int]:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(k: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                response = await http.post(url, content=bodies[i % len(bodies)],
                                           headers={"content-type": "application/json"})
                ok = response.status_code == 200 and "prescription" in response.json()
            except (httpx.HTTPError, json.JSONDecodeError):
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok
            i += clients

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=300.0, limits=limits) as http:
        await asyncio.gather(*(client(k, http) for k in range(clients)))
    return latencies, len(latencies), errors


def web_load(logs: list[Any], clients: int, seconds: float) -> dict[str, float]:
    """Serve the clinic in a subprocess and load it (see the module docstring)."""
    import httpx

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "adaptrx.clinic.cli", "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.perf_counter() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() > deadline or server.poll() is not None:
                raise RuntimeError("adaptrx serve did not start")
            time.sleep(0.5)
        bodies = [json.dumps(h.to_dict()).encode() for h in logs]
        for body in bodies[:4]:  # warm-up: compiled kernels, the worker processes
            httpx.post(f"{base}/api/recommend", content=body, headers={"content-type": "application/json"},
                       timeout=300)
        single = []  # one client, one request at a time: the single-request time of the throughput target
        for body in bodies[:10]:
            t0 = time.perf_counter()
            httpx.post(f"{base}/api/recommend", content=body, headers={"content-type": "application/json"},
                       timeout=300)
            single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        latencies, n, errors = asyncio.run(_load(f"{base}/api/recommend", bodies, clients, seconds))
        elapsed = time.perf_counter() - t0
        alive = httpx.get(f"{base}/api/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
    p50, p95 = np.percentile(latencies, [50, 95])
    return {"requests": n, "errors": errors + (not alive), "throughput": n / elapsed, "p50": float(p50),
            "p95": float(p95), "single": float(np.median(single))}


def cli_cold(history: Any, repeats: int = 3) -> float:
    """Median wall time (s) of ``adaptrx recommend --history FILE`` in a new process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.json"
        path.write_text(json.dumps(history.to_dict()))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "adaptrx.clinic.cli", "recommend", "--history", str(path)],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(quick: bool = False) -> list[dict[str, Any]]:
    logs = histories(5 if quick else 20)
    recommend(logs[0])  # warm-up: numba kernels, imports
    total, fit = [], []
    for h in logs:
        t0 = time.perf_counter()
        fit_patient(h)
        fit.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        recommend(h)
        total.append(time.perf_counter() - t0)
    p50, p95 = np.percentile(total, [50, 95])
    clients, seconds = (5, 8.0) if quick else (20, 30.0)
    load = web_load(logs, clients, seconds)
    label = f"{clients} concurrent clients, {seconds:.0f} s"
    cores = os.cpu_count() or 1
    share = load["throughput"] / (cores / load["single"])
    cold = cli_cold(logs[0])
    return [
        {"benchmark": "recommend_12_weeks", "metric": f"p50 over {len(logs)} patients", "value": float(p50),
         "unit": "s"},
        {"benchmark": "recommend_12_weeks", "metric": "p95 (fit + observation + policy + 3-plan forecast)",
         "value": float(p95), "unit": "s", "target": TARGET_P95_S, "ratio": float(p95) / TARGET_P95_S},
        {"benchmark": "recommend_12_weeks", "metric": "fit share (particle filter, 4000 particles)",
         "value": float(np.sum(fit) / np.sum(total)), "unit": "fraction"},
        {"benchmark": "web_api_load", "metric": f"errors, {label}", "value": float(load["errors"]), "unit": "requests",
         "target": 0.0, "ratio": 0.0 if load["errors"] == 0 else float("inf")},
        {"benchmark": "web_api_load", "metric": "requests answered", "value": float(load["requests"]),
         "unit": "requests"},
        {"benchmark": "web_api_load", "metric": "throughput", "value": load["throughput"], "unit": "requests/s"},
        {"benchmark": "web_api_load", "metric": "single request, one client (median of 10, with the figure)",
         "value": load["single"], "unit": "s"},
        {"benchmark": "web_api_load", "metric": f"throughput / ({cores} cores / single request)", "value": share,
         "unit": "fraction", "target": TARGET_THROUGHPUT_SHARE, "ratio": TARGET_THROUGHPUT_SHARE / share},
        {"benchmark": "web_api_load", "metric": "p50 latency", "value": load["p50"], "unit": "s"},
        {"benchmark": "web_api_load", "metric": "p95 latency", "value": load["p95"], "unit": "s"},
        {"benchmark": "cli_cold", "metric": "adaptrx recommend, new process, median of 3", "value": cold, "unit": "s",
         "target": TARGET_CLI_S, "ratio": cold / TARGET_CLI_S},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
