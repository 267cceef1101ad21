"""What the Hydra apps (``adaptrx-train``, ``adaptrx-trial``) share: config errors and the pre-check that turns
a bad command line into ``<prog>: error: <field>: <why>`` and exit code 2 before Hydra starts a run."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A config value out of range or an impossible combination; the message starts with the field."""


def check_field(condition: bool, name: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<name>: <message>"`` unless ``condition``."""
    if not condition:
        raise ConfigError(f"{name}: {message}")


def check_overrides(config_name: str, overrides: list[str], validate: Callable[[Any], None]) -> None:
    """Compose ``configs/<config_name>.yaml`` with the command line's overrides and ``validate`` it, without
    running anything.

    Raises :class:`ConfigError` with Hydra's or the schema's message (an unknown group option, a key not in
    the schema, a value of the wrong type, a value out of range).
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_module("adaptrx.configs", version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
        validate(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        causes = [exc, exc.__cause__] if exc.__cause__ is not None else [exc]
        raise ConfigError(": ".join(str(e).strip().splitlines()[0] for e in causes)) from exc


def run_app(prog: str, config_name: str, validate: Callable[[Any], None], app: Callable[[], Any],
            argv: list[str] | None = None) -> None:
    """Console entry point of a Hydra app: a single run's overrides are checked first (exit code 2 with one
    line on error); sweeps and ``hydra.*`` overrides go straight to Hydra (the app validates each job)."""
    args = sys.argv[1:] if argv is None else argv
    plain = [a for a in args if not a.startswith(("-", "hydra.", "+hydra.", "~hydra.", "hydra/"))]
    sweep = any(a in ("-m", "--multirun") for a in args) or any("," in a.split("=", 1)[-1] for a in plain)
    if not sweep and len(plain) == len(args):
        try:
            check_overrides(config_name, plain, validate)
        except ConfigError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            sys.exit(2)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    app()
