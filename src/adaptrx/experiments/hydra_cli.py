"""What the Hydra apps (``adaptrx-train``, ``adaptrx-trial``) share: config errors, the pre-check that turns
a bad command line into ``<prog>: error: <field>: <why>`` and exit code 2 before Hydra starts a run, and the
``_target_`` allowlist.

Configs are data, never code. adaptrx itself instantiates nothing from a config, but Hydra instantiates its
own nodes (``hydra.launcher``, ``hydra.sweeper``, ``hydra.callbacks``) by ``_target_`` and configures logging
from ``hydra.job_logging`` (whose ``class`` and ``()`` keys name callables). A config a user passes (command
line overrides, ``--config-dir`` / ``--config-path``, ``hydra.searchpath`` folders, presets) may therefore
name only these exact objects:

* as ``_target_`` in the ``hydra`` node: the launchers, sweepers and callbacks the project ships or documents
  (:data:`HYDRA_TARGETS`); the app config has no ``_target_`` at all (no ``adaptrx`` function is a target);
* as ``class`` / ``()`` in the ``hydra.*_logging`` nodes: logging handlers and formatters
  (:data:`LOGGING_CALLABLES`).

A named path is resolved to the object it denotes and compared with the allowed objects, never by a string
prefix (``adaptrx.common.atomic.os.system`` starts with ``adaptrx.`` and is ``os.system``). Only paths inside the
packages the allowed objects come from are imported to resolve them (:data:`_RESOLVABLE`), so naming a module
never runs it. Anything else exits with code 2 before Hydra composes or instantiates anything
(:func:`check_user_configs`), and each job checks its composed config again (:func:`check_targets`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from adaptrx.common.validation import InvalidField, require

#: The objects a ``_target_`` in the ``hydra`` node may name: Hydra's basic launcher and sweeper, the joblib
#: and submitit launchers (``hydra/launcher=local|slurm|submitit_local``) and the job-return logging callback.
#: Not ``hydra.utils.*`` (``call`` / ``instantiate`` would name anything) nor the pickling callback.
HYDRA_TARGETS: tuple[str, ...] = (
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "hydra.experimental.callbacks.LogJobReturnCallback",
)
#: The objects a ``_target_`` in the app config may name: none (adaptrx instantiates nothing from a config).
APP_TARGETS: tuple[str, ...] = ()
#: The callables a logging config may name (``class``, ``()``): handlers and formatters (not
#: ``logging.config.*``, whose file configs are evaluated).
LOGGING_CALLABLES: tuple[str, ...] = (
    "logging.StreamHandler", "logging.FileHandler", "logging.NullHandler", "logging.Formatter",
    "logging.handlers.RotatingFileHandler", "logging.handlers.TimedRotatingFileHandler",
    "logging.handlers.WatchedFileHandler", "colorlog.ColoredFormatter",
)
#: Top-level packages whose modules may be imported to resolve a named path (those of the allowed objects).
_RESOLVABLE: frozenset[str] = frozenset({"hydra", "hydra_plugins", "logging", "colorlog"})
_CONFIG_DIR_OPTIONS = ("--config-dir", "-cd", "--config-path", "-cp")
_MISSING = object()


@cache
def _resolve(path: str) -> Any:
    """The object a dotted ``path`` names (longest importable module prefix, then attributes), or
    :data:`_MISSING` when it names nothing or lies outside :data:`_RESOLVABLE`."""
    parts = path.split(".")
    if not path or parts[0] not in _RESOLVABLE or not all(p.isidentifier() for p in parts):
        return _MISSING
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def _is_allowed(value: Any, allowed: tuple[str, ...]) -> bool:
    """Whether ``value`` is a path naming one of the ``allowed`` objects (compared by identity)."""
    if not isinstance(value, str) or not allowed:
        return False
    target = _resolve(value)
    return target is not _MISSING and any(target is _resolve(name) for name in allowed)


class ConfigError(InvalidField):
    """A config value out of range or an impossible combination; the message starts with the field.

    Built as ``ConfigError(field, problem)`` like every :class:`~adaptrx.common.validation.InvalidField`, or from
    one message that already starts with ``"<field>: "`` (errors of the checks underneath, passed on).
    """

    def __init__(self, message: str, problem: str | None = None) -> None:
        if problem is not None:
            super().__init__(message, problem)
            return
        field, sep, rest = message.partition(": ")
        self.field, self.problem = (field, rest) if sep else ("", message)
        ValueError.__init__(self, message)


def check_field(condition: bool, name: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<name>: <message>"`` unless ``condition``."""
    require(condition, name, message, error=ConfigError)


def check_known_keys(cfg: Any, schema: type) -> None:
    """Raise :class:`ConfigError` naming the first key of the composed ``cfg`` that the dataclass ``schema``
    does not declare (a ``+key`` addition or a typo), with the closest declared names as a hint. Fields typed
    as open mappings (e.g. ``algo.kwargs``) take any key; ``hydra`` is Hydra's own node."""
    def visit(node: DictConfig, cls: type, path: str) -> None:
        declared = OmegaConf.structured(cls)
        prefix = f"{path}." if path else ""
        for key in node:
            if key not in declared:
                if not path and key == "hydra":
                    continue
                close = difflib.get_close_matches(str(key), [str(k) for k in declared], n=3, cutoff=0.6)
                hint = f"; did you mean {' or '.join(prefix + c for c in close)}?" if close else ""
                raise ConfigError(f"{prefix}{key}: unknown key (not in the config schema){hint}")
            child, child_cls = node[key], OmegaConf.get_type(declared, str(key))
            if isinstance(child, DictConfig) and child_cls is not None and dataclasses.is_dataclass(child_cls):
                visit(child, child_cls, f"{prefix}{key}")

    visit(cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg), schema, "")


def _walk(node: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """Every ``(dotted path, key, value)`` of a nested mapping/list (OmegaConf containers unresolved)."""
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
        allowed = HYDRA_TARGETS if under_hydra else APP_TARGETS
    elif under_hydra and key in ("class", "()") and re.match(r"hydra\.(job|hydra)_logging\.", path):
        allowed = LOGGING_CALLABLES
    else:
        return None
    if _is_allowed(value, allowed):
        return None
    if not allowed:
        return f"{path}: {value!r} is not allowed (the app config instantiates nothing: no _target_ here)"
    return (f"{path}: {value!r} is not allowed (configs may name only {', '.join(allowed)} here; nothing else "
            "is instantiated from a config)")


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
    check_targets(cfg)
    if HydraConfig.initialized():
        check_targets(HydraConfig.get(), "hydra")


def check_overrides(config_name: str, overrides: list[str], validate: Callable[[Any], None]) -> None:
    """Compose ``configs/<config_name>.yaml`` with the command line's overrides and ``validate`` it, without
    running anything.

    Raises :class:`ConfigError` with Hydra's or the schema's message (an unknown group option, a key not in
    the schema, a value of the wrong type, a value out of range).
    """
    app_overrides = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/", "hydra="))]
    try:
        with initialize_config_module("adaptrx.configs", version_base="1.3"):
            # with Hydra's own node, so that hydra.* overrides are checked too; then the typed app config
            full = compose(config_name, overrides=overrides, return_hydra_config=True)
            cfg = compose(config_name, overrides=app_overrides)
        check_targets(full.hydra, "hydra")
        check_targets(cfg)
        validate(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        causes = [exc, exc.__cause__] if exc.__cause__ is not None else [exc]
        raise ConfigError(": ".join(str(e).strip().splitlines()[0] for e in causes)) from exc


def run_app(prog: str, config_name: str, validate: Callable[[Any], None], app: Callable[[], Any],
            argv: list[str] | None = None) -> None:
    """Console entry point of a Hydra app: the ``_target_`` allowlist is applied to the command line and the
    config folders it names, then a single run's overrides, ``hydra.*`` ones included, are composed and
    checked (exit code 2 with one line on error: unknown keys, bad values, bad ``hydra.*`` overrides); sweeps
    and command lines with options go on to Hydra (the app validates each job)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        check_user_configs(args)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    plain = [a for a in args if not a.startswith("-")]  # overrides, hydra.* ones included
    sweep = any(a in ("-m", "--multirun") for a in args) or any("," in a.split("=", 1)[-1] for a in plain)
    if not sweep and len(plain) == len(args):  # options (config folders, ...) go to Hydra with the job's check
        try:
            check_overrides(config_name, plain, validate)
        except ConfigError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            sys.exit(2)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    app()
