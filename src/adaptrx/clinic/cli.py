"""``adaptrx``: the clinician's command line.

``adaptrx recommend --history FILE [--policy DIR|PROTOCOL] [--plan sessions=3,load=0.45,delivery=home]
[--format json|text]`` prints next week's
prescription for the patient of a history file (:mod:`adaptrx.clinic.history`), with the forecast and the
safety rules that bound it; ``adaptrx serve`` runs the local web page and JSON API
(:mod:`adaptrx.clinic.web`, on 127.0.0.1 by default).

Bad input exits with code 2 and one message per problem naming the field and row, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from adaptrx.clinic.history import HistoryError, load_history
from adaptrx.clinic.recommend import recommend
from adaptrx.common import atomic

#: Intake options of ``recommend`` (for a CSV without intake comment lines): option -> (field, type).
_INTAKE_OPTIONS: dict[str, tuple[str, Any]] = {
    "--condition": ("condition", str),
    "--age": ("age", float),
    "--baseline-pain": ("baseline_pain", float),
    "--sex": ("sex", str),
    "--sensitization-score": ("sensitization_score", float),
    "--fear-score": ("fear_score", float),
    "--preferred-sessions": ("preferred_sessions", float),
    "--function": ("function", float),
    "--modality": ("modality", str),
    "--intake-date": ("intake_date", str),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adaptrx", description="adaptrx clinic: next week's exercise prescription "
                                     "from a patient's session log.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{recommend,serve}")
    rec = sub.add_parser("recommend", help="recommend next week's prescription for a history file",
                         description="Fit the patient of a history (JSON or sessions CSV), ask the policy for next "
                                     "week's prescription behind the safety rules, and forecast weekly pain.")
    rec.add_argument("--history", required=True, metavar="FILE", help="history file (.json or .csv, at most 1 MB)")
    rec.add_argument("--policy", metavar="DIR", default=None,
                     help="policy directory (safetensors + manifest.json) or a clinical protocol name "
                          "(default: per condition, the best-evidenced policy of the shipped trials)")
    rec.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    rec.add_argument("--horizon", type=int, default=12, metavar="WEEKS", help="weeks to forecast, 4-12 (default 12)")
    rec.add_argument("--particles", type=int, default=4000, metavar="N", help="particles of the fit (default 4000)")
    rec.add_argument("--seed", type=int, default=0, help="seed of the fit and forecast (default 0)")
    rec.add_argument("--plan", metavar="PLAN", default=None,
                     help="your own plan to forecast beside the others, e.g. sessions=3,load=0.45,delivery=home "
                          "(load x baseline capacity; a key left out keeps last week's); the output names any "
                          "safety rule it breaks")
    rec.add_argument("--output", metavar="FILE", default=None, help="write the output here instead of stdout")
    group = rec.add_argument_group("intake (for a CSV without '# field: value' lines; overrides the file)")
    for option, (name, kind) in _INTAKE_OPTIONS.items():
        group.add_argument(option, dest=name, type=kind, default=None, metavar=name.upper())
    serve = sub.add_parser("serve", help="run the local web page and JSON API",
                           description="Serve the clinic web page and JSON API (POST /api/recommend).")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--policy", metavar="DIR", default=None, help="policy directory or protocol name")
    serve.add_argument("--particles", type=int, default=4000, metavar="N", help="particles of the fit (default 4000)")
    serve.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                       help="worker processes computing recommendations in parallel (default: one per core; 0: "
                            "the server's threads)")
    return parser


def _fail(parser: argparse.ArgumentParser, command: str, lines: list[str]) -> int:
    for line in lines:
        print(f"adaptrx {command}: error: {line}", file=sys.stderr)
    return 2


def _recommend(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    intake = {name: getattr(args, name) for _, (name, _) in _INTAKE_OPTIONS.items() if getattr(args, name) is not None}
    try:
        history = load_history(args.history, intake=intake)
    except HistoryError as exc:
        return _fail(parser, "recommend", [str(e) for e in exc.errors])
    try:
        rec = recommend(history, policy=args.policy, horizon=args.horizon, n_particles=args.particles, seed=args.seed,
                        plan=args.plan)
    except FileNotFoundError as exc:
        return _fail(parser, "recommend", [f"--policy: {exc}"])
    except ValueError as exc:
        field, _, rest = str(exc).partition(": ")
        option = {"n_particles": "--particles", "horizon": "--horizon", "seed": "--seed"}.get(field)
        if field.startswith("plan"):
            option, rest = "--plan", str(exc)
        return _fail(parser, "recommend", [f"{option}: {rest}" if option else f"--policy: {exc}"])
    text = json.dumps(rec.to_dict(), indent=2) if args.format == "json" else rec.to_text()
    if args.output:
        atomic.write_text(args.output, text + "\n")
    else:
        print(text)
    return 0


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        import uvicorn

        from adaptrx.clinic.web import create_app
    except ImportError as exc:
        return _fail(parser, "serve", [f"the web extra is not installed ({exc.name}); pip install 'adaptrx[web]'"])
    if not 0 < args.port < 65536:
        return _fail(parser, "serve", [f"--port: must be in 1-65535, got {args.port}"])
    try:
        app = create_app(policy=args.policy, n_particles=args.particles, workers=args.workers)
    except (ValueError, FileNotFoundError) as exc:
        field, _, rest = str(exc).partition(": ")
        option = {"policy": "--policy", "n_particles": "--particles", "workers": "--workers"}.get(field)
        return _fail(parser, "serve", [f"{option}: {rest}" if option else f"--policy: {exc}"])
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"adaptrx serve: warning: binding {args.host} exposes the clinic API beyond this machine "
              "(no authentication)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``adaptrx``; returns the exit code (0 ok, 2 bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on a bad command line
    if args.command == "recommend":
        return _recommend(args, parser)
    return _serve(args, parser)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
