"""The clinic's local web page and JSON API (``adaptrx serve``).

:func:`create_app` builds a FastAPI application:

``GET /``
    A plain page (``static/index.html`` + ``app.js`` + ``app.css``, no external resources) to upload or paste a
    history and read the recommendation, its safety rules, the forecast and the fit.
``POST /api/recommend``
    The body is the history: ``application/json`` (the document of :data:`~adaptrx.clinic.history.HISTORY_JSON_SCHEMA`)
    or ``text/csv`` (the sessions CSV; intake from its ``# field: value`` lines and/or the query parameters
    ``condition``, ``age``, ``baseline_pain``, ... of :data:`~adaptrx.clinic.history.INTAKE_FIELDS`). Query
    parameters ``horizon`` (forecast weeks, 4-12) and ``plot`` (``true``/``false``: add the forecast figure as a
    base64 PNG, ``plot_png_base64``). Answers :meth:`Recommendation.to_dict` JSON. Errors are JSON
    ``{"error": message, "detail": [{"field", "message", "row"}, ...]}``: 422 for a history that cannot be used
    (each problem naming its field and 1-based session row), 413 over
    :data:`~adaptrx.clinic.history.MAX_BYTES`, 415 for another content type, 400 for a malformed request.
``GET /api/health``
    ``{"status": "ok", "policy": {...}}``.
``GET /openapi.json``
    The API description (the interactive ``/docs`` pages are off: they load scripts from a CDN).

Security: nothing the client sends is executed, unpickled or used as a file system path (the history is parsed
by :func:`~adaptrx.clinic.history.parse_history`: :func:`json.loads` / :mod:`csv`); the body is read with a size
limit; every response carries ``X-Content-Type-Options: nosniff``, a strict ``Content-Security-Policy`` (own
scripts, styles and ``data:`` images only) and ``Cache-Control: no-store`` (responses hold patient data). The
API only accepts ``application/json`` and ``text/csv`` bodies, which browsers never send cross-origin without a
CORS preflight (and no CORS is allowed), so other web sites cannot submit to it. There is no authentication:
bind to 127.0.0.1 (the ``adaptrx serve`` default).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from multiprocessing import get_context
from numbers import Integral
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adaptrx import __version__
from adaptrx.clinic.history import HISTORY_JSON_SCHEMA, INTAKE_FIELDS, MAX_BYTES, HistoryError, parse_history
from adaptrx.clinic.plot import figure_png
from adaptrx.clinic.recommend import check_policy, parse_plan, recommend

__all__ = ["ERROR_SCHEMA", "SECURITY_HEADERS", "create_app"]

log = logging.getLogger(__name__)

#: Headers added to every response.
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}
#: Request media types (lower case, without parameters) and the history format each carries.
CONTENT_TYPES: dict[str, str] = {"application/json": "json", "text/csv": "csv", "application/csv": "csv"}
_CHARSETS = ("utf-8", "utf8", "us-ascii", "ascii")
#: Forecast horizons the API accepts (weeks).
HORIZONS = (4, 12)
_STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "template.csv": "text/csv; charset=utf-8",
           "app.css": "text/css; charset=utf-8"}
_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

#: JSON schema of every error body.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "the first problem (and how many more)"},
        "detail": {"type": "array", "items": {
            "type": "object",
            "required": ["field", "message", "row"],
            "properties": {
                "field": {"type": "string", "description": "e.g. patient.age, sessions.pain_during, history"},
                "message": {"type": "string"},
                "row": {"type": ["integer", "null"], "description": "1-based session row (CSV data row or JSON "
                                                                    "sessions position); null outside the log"},
            },
        }},
    },
}
_RECOMMENDATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Recommendation.to_dict(): pain NRS 0-10, load in baseline-capacity units, weeks of the "
                   "programme (week 1 starts the day after intake); pain_q10/pain_q90 bound the 80 % interval.",
    "properties": {
        "adaptrx_version": {"type": "string"},
        "policy": {"type": "object"},
        "patient": {"type": "object"},
        "prescription": {"type": "object"},
        "safety": {"type": "object"},
        "forecast": {"type": "object"},
        "history": {"type": "object"},
        "fit": {"type": "object"},
        "warnings": {"type": "array", "items": {"type": "string"},
                     "description": "poor fit, gaps in the log, risk above holding, no agent, weak evidence"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "plot_png_base64": {"type": "string", "description": "the forecast figure, PNG, base64 (when plot=true)"},
    },
}
_CSV_EXAMPLE = ("# condition: knee_oa\n# age: 61\n# baseline_pain: 6\n"
                "date,load,attended,pain_during,pain_next_morning\n"
                "2026-01-06,0.3,true,4,3\n2026-01-08,0.3,true,5,4\n2026-01-10,0.3,false,,\n")


# ------------------------------------------------------------------------------------------------ helpers
class _ApiError(Exception):
    """An error answered as JSON ``{"error", "detail"}`` with ``status``."""

    def __init__(self, status: int, message: str, field: str = "history", row: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": f"{field}: {message}" if field else message,
                     "detail": [{"field": field, "message": message, "row": row}]}


def _error(status: int, body: Mapping[str, Any]) -> JSONResponse:
    return JSONResponse(dict(body), status_code=status)


class _SecurityHeaders:
    """Pure ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response (streaming-safe)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _resolve_policy(policy: str | Path | None) -> tuple[str | Path | None, dict[str, Any]]:
    """Check ``policy`` once (:func:`~adaptrx.clinic.recommend.check_policy`): what :func:`recommend` will be
    given, and its description for ``/api/health``.

    Raises:
        ValueError: not a loadable policy directory (missing, malformed, discrete-action) nor a clinical protocol.
    """
    try:
        target, _, info = check_policy(policy)
    except FileNotFoundError as exc:
        raise ValueError(f"policy: {exc}") from None
    except ValueError as exc:
        raise ValueError(str(exc) if str(exc).startswith("policy: ") else f"policy: {exc}") from None
    return target, info


def _static_files() -> dict[str, bytes]:
    root = resources.files("adaptrx.clinic").joinpath("static")
    return {name: root.joinpath(name).read_bytes() for name in _STATIC}


def _media_type(request: Request) -> str:
    """The history format of the request's ``Content-Type`` (``json``/``csv``), or :class:`_ApiError` 415."""
    raw = request.headers.get("content-type", "")
    media, *params = (part.strip() for part in raw.split(";"))
    fmt = CONTENT_TYPES.get(media.lower())
    accepted = "application/json (the history document) or text/csv (the sessions CSV)"
    if fmt is None:
        shown = repr(media[:80]) if media else "none"
        raise _ApiError(415, f"unsupported content type {shown}; send {accepted}", "content-type")
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in _CHARSETS:
            raise _ApiError(415, f"charset {value.strip()[:40]!r} is not supported; send UTF-8", "content-type")
    return fmt


async def _read_body(request: Request, limit: int = MAX_BYTES) -> bytes:
    """The raw body, at most ``limit`` bytes (Content-Length checked first, then counted while streaming)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.strip().isascii() and declared.strip().isdigit()):  # int() also reads '²'-like digits
            raise _ApiError(400, f"invalid Content-Length {declared[:40]!r}", "content-length")
        if int(declared) > limit:
            raise _ApiError(413, f"{int(declared):,} bytes, larger than the {limit:,}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _ApiError(413, f"larger than the {limit:,}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _query(request: Request, fmt: str, default_horizon: int) -> tuple[dict[str, str], int, bool, str | None]:
    """Intake fields, horizon, plot flag and the clinician's plan from the query string (each at most once, names
    checked)."""
    intake: dict[str, str] = {}
    horizon, plot, plan = default_horizon, True, None
    seen: set[str] = set()
    known = ("horizon", "plot", "plan", *INTAKE_FIELDS)
    for name, value in request.query_params.multi_items():
        field = f"query.{name[:40]}"
        if name in seen:
            raise _ApiError(422, "given more than once", field)
        seen.add(name)
        if name not in known:
            raise _ApiError(422, f"unknown query parameter; known: {', '.join(known)}", field)
        if name == "horizon":
            digits = value.strip()
            if not (digits.isascii() and digits.isdigit() and len(digits) <= 3
                    and HORIZONS[0] <= int(digits) <= HORIZONS[1]):
                raise _ApiError(422, f"must be an integer in {HORIZONS[0]}-{HORIZONS[1]} weeks, got {value[:40]!r}",
                                "horizon")
            horizon = int(value)
        elif name == "plot":
            if value.strip().lower() not in _FLAGS:
                raise _ApiError(422, f"must be true or false, got {value[:40]!r}", "plot")
            plot = _FLAGS[value.strip().lower()]
        elif name == "plan":
            try:
                parse_plan(value[:200])  # the syntax and ranges now; a key left out is filled from the history
            except ValueError as exc:
                raise _ApiError(422, str(exc), str(exc).split(":", 1)[0]) from None
            plan = value[:200] if value.strip() else None
        elif value.strip() != "":
            if fmt == "json":
                raise _ApiError(422, f"intake query parameters are for CSV histories; put {name!r} in the JSON "
                                     "document's 'patient' object", f"patient.{name}")
            intake[name] = value.strip()
    return intake, horizon, plot, plan


# ---------------------------------------------------------------------------------------------------- app
#: Thread-count variables of numpy's BLAS, OpenMP and numba: 1 in the worker processes (one per core).
_THREAD_VARIABLES: tuple[str, ...] = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                      "NUMBA_NUM_THREADS")


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Processes started inside run single-threaded math libraries (a variable the user set is kept). With
    one worker per core, two BLAS threads each halved the throughput under load (measured)."""
    added = [name for name in _THREAD_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = "1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _warm() -> bool:
    """Run in each new worker process once: its imports are done by the time this returns."""
    return True


def _recommend_json(history: Any, policy: str | Path | None, weeks: int, n_particles: int, plot: bool,
                    plan: str | None) -> bytes:
    """Recommend and draw: the JSON response body (in a worker thread or a worker process of the pool)."""
    rec = recommend(history, policy=policy, horizon=weeks, n_particles=n_particles, seed=0, plan=plan)
    out = rec.to_dict()
    if plot:
        out["plot_png_base64"] = base64.b64encode(figure_png(out)).decode("ascii")
    try:
        return json.dumps(out, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:  # a bug, not bad input: answered as a 500
        raise RuntimeError(f"the recommendation is not JSON-ready: {exc}") from exc


def create_app(policy: str | Path | None = None, n_particles: int = 4000, horizon: int = 12,
               workers: int = 0) -> FastAPI:
    """The clinic web app (see the module docstring).

    Args:
        policy: a shipped policy directory, a clinical protocol name, or ``None`` for the per-condition default
            (:mod:`adaptrx.clinic.evidence`). Checked (loaded) here, once.
        n_particles: particles of each patient fit (100-100000); fewer is faster and rougher.
        horizon: default forecast horizon in weeks (4-12); a request's ``horizon`` query parameter overrides it.
        workers: worker processes that compute recommendations in parallel (0-64; ``adaptrx serve`` uses one
            per core). ``recommend()`` is CPU-bound Python: threads share one core, processes use them all. The
            pool starts with the first request and stops with the app; 0 computes in the server's threads.

    Raises:
        ValueError: a bad policy (missing or malformed directory, non-clinical protocol), ``n_particles``,
            ``horizon`` or ``workers``.
    """
    if isinstance(workers, bool) or not isinstance(workers, Integral) or not 0 <= workers <= 64:
        raise ValueError(f"workers: must be an integer in 0-64, got {workers!r}")
    if isinstance(n_particles, bool) or not isinstance(n_particles, Integral) or not 100 <= n_particles <= 100_000:
        raise ValueError(f"n_particles: must be an integer in 100-100000, got {n_particles!r}")
    if isinstance(horizon, bool) or not isinstance(horizon, Integral) or not HORIZONS[0] <= horizon <= HORIZONS[1]:
        raise ValueError(f"horizon: must be an integer in {HORIZONS[0]}-{HORIZONS[1]} weeks, got {horizon!r}")
    n_particles, horizon = int(n_particles), int(horizon)
    policy_arg, policy_info = _resolve_policy(policy)
    static = _static_files()
    default_horizon = horizon
    # recommend() is CPU-bound: at most a few at once in threads (requests beyond wait in the threadpool)
    busy = threading.BoundedSemaphore(max(1, min(4, os.cpu_count() or 1)))
    pool: list[ProcessPoolExecutor] = []  # created by the first request when workers > 0
    pool_lock = threading.Lock()

    def executor() -> ProcessPoolExecutor:
        with pool_lock:
            if not pool:  # spawn: a clean interpreter per worker (no forked threads or numba state)
                with _single_threaded_children():  # one core each: BLAS/OpenMP threads would oversubscribe
                    p = ProcessPoolExecutor(max_workers=int(workers), mp_context=get_context("spawn"))
                    for future in [p.submit(_warm) for _ in range(int(workers))]:  # start them all now
                        future.result()
                pool.append(p)
            return pool[0]

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for p in pool:
            p.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="adaptrx clinic", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  openapi_url="/openapi.json",
                  description="Next week's exercise prescription for a chronic-pain patient from their session log: "
                              "a trained policy behind the safety rules, with predicted pain (NRS 0-10) and its "
                              "uncertainty. Decision support only; the clinician decides.")
    app.add_middleware(_SecurityHeaders)
    app.state.policy = policy_info

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error(exc.status_code, {"error": str(exc.detail), "detail": []})
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", "")),
                   "row": None} for e in exc.errors()]
        return _error(422, {"error": "invalid request", "detail": detail})

    def _page(name: str) -> Response:
        return Response(static[name], media_type=_STATIC[name])

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return _page("index.html")

    @app.get("/static/app.js", include_in_schema=False)
    def app_js() -> Response:
        return _page("app.js")

    @app.get("/static/app.css", include_in_schema=False)
    def app_css() -> Response:
        return _page("app.css")

    @app.get("/static/template.csv", include_in_schema=False)
    def template_csv() -> Response:
        return _page("template.csv")

    @app.get("/api/health", summary="Health and the configured policy")
    def health() -> dict[str, Any]:
        """``{"status": "ok", "policy": {"id", "kind", "manifest_sha256", "policy_id", "condition", "note"}}``."""
        return {"status": "ok", "policy": policy_info, "adaptrx_version": __version__,
                "n_particles": n_particles, "horizon": default_horizon}

    def compute(history: Any, weeks: int, plot: bool, plan: str | None) -> bytes:
        """The JSON response body, in this process (a worker thread)."""
        with busy:
            return _recommend_json(history, policy_arg, weeks, n_particles, plot, plan)

    async def respond(body: bytes, fmt: str, intake: dict[str, str], weeks: int, plot: bool,
                      plan: str | None) -> bytes:
        """Parse here (errors name field and row), compute in the pool or a thread."""
        history = await run_in_threadpool(parse_history, body, fmt, intake or None)
        if workers == 0:
            return await run_in_threadpool(compute, history, weeks, plot, plan)
        future = executor().submit(_recommend_json, history, policy_arg, weeks, n_particles, plot, plan)
        return await asyncio.wrap_future(future)

    parameters: list[dict[str, Any]] = [
        {"name": "horizon", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": HORIZONS[0], "maximum": HORIZONS[1], "default": default_horizon},
         "description": "weeks to forecast"},
        {"name": "plot", "in": "query", "required": False, "schema": {"type": "boolean", "default": True},
         "description": "include the forecast figure as plot_png_base64"},
        {"name": "plan", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200},
         "description": "your own plan, e.g. sessions=3,load=0.45,delivery=home (load x baseline capacity; a key "
                        "left out keeps last week's): forecast beside the others, with the rules it breaks"},
        *({"name": name, "in": "query", "required": False, "schema": {"type": "string"},
           "description": f"intake field {name!r} for a CSV history (overrides its '# {name}:' line); "
                          "JSON histories carry it in 'patient'"} for name in INTAKE_FIELDS),
    ]
    error = {"application/json": {"schema": ERROR_SCHEMA}}

    @app.post(
        "/api/recommend",
        summary="Next week's prescription for a patient history",
        response_class=JSONResponse,
        responses={
            200: {"description": "the recommendation", "content": {"application/json":
                                                                  {"schema": _RECOMMENDATION_SCHEMA}}},
            400: {"description": "malformed request", "content": error},
            413: {"description": f"body larger than {MAX_BYTES:,} bytes", "content": error},
            415: {"description": "not application/json or text/csv", "content": error},
            422: {"description": "the history cannot be used: every problem with its field and session row",
                  "content": error},
            500: {"description": "internal error (no details)", "content": error},
        },
        openapi_extra={
            "parameters": parameters,
            "requestBody": {
                "required": True,
                "description": f"the patient's history, at most {MAX_BYTES:,} bytes of UTF-8",
                "content": {
                    "application/json": {"schema": copy.deepcopy(HISTORY_JSON_SCHEMA)},
                    "text/csv": {"schema": {"type": "string", "description": "sessions CSV: a header row of "
                                            "session columns, one row per prescribed session; intake as leading "
                                            "'# field: value' lines or query parameters"},
                                 "example": _CSV_EXAMPLE},
                },
            },
        },
    )
    async def recommend_endpoint(request: Request) -> Response:
        """Fit the patient of the history in the body and recommend next week's prescription."""
        try:
            fmt = _media_type(request)
            intake, weeks, plot, plan = _query(request, fmt, default_horizon)
            body = await _read_body(request)
            out = await respond(body, fmt, intake, weeks, plot, plan)
        except ClientDisconnect:
            return _error(400, {"error": "the client disconnected", "detail": []})
        except _ApiError as exc:
            return _error(exc.status, exc.body)
        except HistoryError as exc:
            return _error(422, exc.to_dict())
        except ValueError as exc:  # recommend()'s own checks (messages name the field)
            message = str(exc)
            field = message.split(":", 1)[0] if ":" in message[:40] else "history"
            return _error(422, {"error": message, "detail": [{"field": field, "message": message, "row": None}]})
        except Exception:
            log.exception("recommendation failed")
            return _error(500, {"error": "internal error: the recommendation could not be computed", "detail": []})
        return Response(out, media_type="application/json")

    return app
