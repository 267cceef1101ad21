"""What the Hydra apps (``adaptrx-train``, ``adaptrx-trial``) share: config errors, the pre-check that turns
a bad command line into ``<prog>: error: <field>: <why>`` and exit code 2 before Hydra starts a run, and the
``_target_`` allowlist.

Configs are data, never code. adaptrx itself instantiates nothing from a config, but Hydra instantiates its
own nodes (``hydra.launcher``, ``hydra.sweeper``, ``hydra.callbacks``) by ``_target_`` and configures logging
from ``hydra.job_logging`` (whose ``class`` and ``()`` keys name callables). A config a user passes (command
line overrides, ``--config-dir`` / ``--config-path``, ``hydra.searchpath`` folders) may therefore name only:

* ``_target_`` under ``adaptrx.`` (app config), or Hydra's own launchers, sweepers and callbacks and
  ``hydra_plugins.`` (the ``hydra`` node): :data:`APP_TARGETS`, :data:`HYDRA_TARGETS`;
* logging handlers and formatters as ``class`` / ``()`` (the ``hydra.*_logging`` nodes):
  :data:`LOGGING_CALLABLES`.

Anything else exits with code 2 before Hydra composes or instantiates anything (:func:`check_user_configs`),
and each job checks its composed config again (:func:`check_targets`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: ``_target_`` prefixes allowed in the app config, and in the ``hydra`` node: Hydra's own launchers, sweepers
#: and callbacks and installed plugins (not ``hydra.utils.*``: ``call`` / ``instantiate`` would name anything).
APP_TARGETS: tuple[str, ...] = ("adaptrx.",)
HYDRA_TARGETS: tuple[str, ...] = ("hydra._internal.core_plugins.", "hydra.experimental.callbacks.", "hydra_plugins.",
                                  "adaptrx.")
#: Prefixes allowed for the callables a logging config names (``class``, ``()``): handlers and formatters
#: (not ``logging.config.*``, whose file configs are evaluated).
LOGGING_CALLABLES: tuple[str, ...] = ("logging.StreamHandler", "logging.FileHandler", "logging.NullHandler",
                                      "logging.Formatter", "logging.handlers.", "colorlog.")
_CONFIG_DIR_OPTIONS = ("--config-dir", "-cd", "--config-path", "-cp")


class ConfigError(ValueError):
    """A config value out of range or an impossible combination; the message starts with the field."""


def check_field(condition: bool, name: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<name>: <message>"`` unless ``condition``."""
    if not condition:
        raise ConfigError(f"{name}: {message}")


def _walk(node: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """Every ``(dotted path, key, value)`` of a nested mapping/list (OmegaConf containers unresolved)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, DictConfig | ListConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, str(key), value
            yield from _walk(value, child)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _allowed(path: str, key: str, value: Any) -> str | None:
    """Why ``key: value`` at ``path`` is refused (``None``: allowed)."""
    under_hydra = path == "hydra" or path.startswith("hydra.")
    if key == "_target_":
        prefixes = HYDRA_TARGETS if under_hydra else APP_TARGETS
    elif under_hydra and key in ("class", "()") and re.match(r"hydra\.(job|hydra)_logging\.", path):
        prefixes = LOGGING_CALLABLES
    else:
        return None
    if isinstance(value, str) and value.startswith(prefixes):
        return None
    return (f"{path}: {value!r} is not allowed (configs may name only {' / '.join(p + '*' for p in prefixes)} "
            "here; nothing else is instantiated from a config)")


def check_targets(cfg: Any, root: str = "") -> None:
    """Raise :class:`ConfigError` naming the first ``_target_`` (or logging ``class`` / ``()``) of ``cfg``
    outside the allowlist (see the module docstring). ``root``: the dotted path of ``cfg`` itself
    (``"hydra"`` for Hydra's own config node)."""
    for path, key, value in _walk(cfg, root):
        problem = _allowed(path, key, value)
        if problem:
            raise ConfigError(problem)


def _config_dirs(args: list[str]) -> list[Path]:
    """Folders of user configs named on a command line (``--config-dir``, ``--config-path``, the
    ``file://`` entries of ``hydra.searchpath``)."""
    dirs = []
    for i, arg in enumerate(args):
        for option in _CONFIG_DIR_OPTIONS:
            if arg == option and i + 1 < len(args):
                dirs.append(Path(args[i + 1]))
            elif arg.startswith(option + "="):
                dirs.append(Path(arg.split("=", 1)[1]))
        key, _, value = arg.partition("=")
        if key.lstrip("+~") == "hydra.searchpath":
            dirs += [Path(m) for m in re.findall(r"file://([^,\]\s'\"]+)", value)]
    return dirs


def _override_values(args: list[str]) -> Iterator[tuple[str, Any]]:
    """``(key, value)`` of every ``key=value`` override of a command line (each choice of a sweep; dict and list
    values as parsed), options skipped. Raises :class:`ConfigError` for an override Hydra cannot parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_override(arg)
            value = override.value()
        except (HydraException, OmegaConfBaseException) as exc:  # Hydra would refuse it the same way
            raise ConfigError(f"{arg}: not a valid override ({str(exc).strip().splitlines()[0]})") from exc
        if isinstance(value, ChoiceSweep):
            for choice in value.list:
                yield override.key_or_group, choice
        elif not override.is_sweep_override():  # range / interval sweeps are numbers
            yield override.key_or_group, value


def check_user_configs(args: list[str]) -> None:
    """Apply the ``_target_`` allowlist to what a command line brings in: its overrides (a ``_target_`` key,
    or a mapping value holding one) and every YAML file of the config folders it names. Raises
    :class:`ConfigError`; Hydra has composed nothing yet."""
    import yaml

    for key, value in _override_values(args):
        problem = _allowed(key, key.rsplit(".", 1)[-1], value)
        for where, child, item in _walk(value, key):
            problem = problem or _allowed(where, child, item)
        if problem:
            raise ConfigError(problem)
    for folder in _config_dirs(args):
        files = sorted([*folder.rglob("*.yaml"), *folder.rglob("*.yml")]) if folder.is_dir() else []
        for path in files:
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise ConfigError(f"{path}: not a readable YAML config ({exc})") from exc
            group = path.relative_to(folder).parent.parts  # hydra/job_logging/x.yaml configures hydra.job_logging
            root = ".".join(group) if group and group[0] == "hydra" else ""
            for where, key, value in _walk(data, root):
                problem = _allowed(where, key, value)
                if problem:
                    raise ConfigError(f"{path}: {problem}")


def check_job(cfg: Any) -> None:
    """Inside a Hydra job: the allowlist on the composed app config and on Hydra's own node (a second line of
    defence behind :func:`check_user_configs`). Raises :class:`ConfigError`."""
    from hydra.core.hydra_config import HydraConfig

    check_targets(cfg)
    if HydraConfig.initialized():
        check_targets(HydraConfig.get(), "hydra")


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
        check_targets(cfg)
        validate(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        causes = [exc, exc.__cause__] if exc.__cause__ is not None else [exc]
        raise ConfigError(": ".join(str(e).strip().splitlines()[0] for e in causes)) from exc


def run_app(prog: str, config_name: str, validate: Callable[[Any], None], app: Callable[[], Any],
            argv: list[str] | None = None) -> None:
    """Console entry point of a Hydra app: the ``_target_`` allowlist is applied to the command line and the
    config folders it names, then a single run's overrides are checked (exit code 2 with one line on error);
    sweeps and ``hydra.*`` overrides go on to Hydra (the app validates each job)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        check_user_configs(args)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
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
