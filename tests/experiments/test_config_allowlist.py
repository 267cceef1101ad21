"""The ``_target_`` allowlist of the Hydra apps (adaptrx.experiments.hydra_cli): a config a user brings in cannot
make Hydra instantiate anything outside adaptrx, Hydra's own plugins and logging handlers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from adaptrx.experiments.hydra_cli import ConfigError, check_targets, check_user_configs

REFUSED_OVERRIDES = [
    ["+policy._target_=os.system"],
    ["hydra.launcher={_target_:builtins.exec}"],
    ["-m", "seed=0,1", "hydra.launcher._target_=hydra_plugins.x.Launcher,os.system"],  # one choice of a sweep
    ["hydra.callbacks.x._target_=hydra.utils.call"],  # a gadget that would call anything
    ["hydra.job_logging.handlers.console.class=os.system"],
    ["+algo.kwargs.policy={a: [{_target_: subprocess.run}]}"],  # nested in a list
]


@pytest.mark.parametrize("args", REFUSED_OVERRIDES, ids=[" ".join(a) for a in REFUSED_OVERRIDES])
def test_overrides_naming_other_callables_are_refused(args: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"is not allowed \(configs may name only"):
        check_user_configs(args)


def test_an_override_hydra_cannot_parse_is_refused_not_skipped() -> None:
    with pytest.raises(ConfigError, match=r"not a valid override"):
        check_user_configs(["hydra.job_logging.handlers.console={'()': logging.config.fileConfig}"])


@pytest.mark.parametrize("args", [
    ["preset=quick", "seed=3"],
    ["-m", "seed=0,1", "hydra/launcher=joblib"],
    ["hydra.launcher._target_=hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"],
    ["hydra.callbacks.log._target_=hydra.experimental.callbacks.LogJobReturnCallback"],
    ["hydra.job_logging.handlers.file.class=logging.FileHandler"],
    ["+x._target_=adaptrx.protocols.get"],
    ["policies=[none,pain_monitoring]", "stats.reference=none"],
])
def test_ordinary_command_lines_pass(args: list[str]) -> None:
    check_user_configs(args)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(("relative", "text", "where"), [
    ("experiment/evil.yaml", "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: os.system\n",
     "hydra.callbacks.x._target_"),
    ("hydra/launcher/evil.yaml", "_target_: builtins.eval\n", "hydra.launcher._target_"),
    ("hydra/job_logging/evil.yaml", "version: 1\nhandlers:\n  h:\n    class: os.system\n",
     "hydra.job_logging.handlers.h.class"),
    ("algo/evil.yaml", "name: ppo\nkwargs:\n  thing:\n    _target_: os.system\n", "kwargs.thing._target_"),
])
@pytest.mark.parametrize("option", ["--config-dir", "-cp", "hydra.searchpath"])
def test_config_folders_a_user_names_are_scanned(tmp_path: Path, relative: str, text: str, where: str,
                                                 option: str) -> None:
    _write(tmp_path / "ok.yaml", "seed: 1\n")
    _write(tmp_path / relative, text)
    args = ([f"hydra.searchpath=[file://{tmp_path}]"] if option == "hydra.searchpath"
            else [option, str(tmp_path)])
    with pytest.raises(ConfigError, match=rf"{relative}: {where.replace('.', '[.]')}: "):
        check_user_configs(args)
    _write(tmp_path / relative, "seed: 2\n")  # the same folder without the callable passes
    check_user_configs(args)


def test_composed_configs_are_checked_in_the_job() -> None:
    check_targets(OmegaConf.create({"a": {"_target_": "adaptrx.protocols.get"}, "b": [1, {"c": 2}]}))
    with pytest.raises(ConfigError, match=r"^b\[1\]\._target_: 'os\.system'"):
        check_targets(OmegaConf.create({"b": [1, {"_target_": "os.system"}]}))
    hydra_node = {"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
                  "job_logging": {"handlers": {"console": {"class": "logging.StreamHandler"}}}}
    check_targets(OmegaConf.create(hydra_node), "hydra")
    hydra_node["job_logging"]["handlers"]["console"]["class"] = "os.system"
    with pytest.raises(ConfigError, match=r"^hydra\.job_logging\.handlers\.console\.class"):
        check_targets(OmegaConf.create(hydra_node), "hydra")


@pytest.mark.parametrize("app", ["adaptrx.experiments.train", "adaptrx.experiments.trial"])
def test_the_apps_exit_2_before_hydra_starts(app: str, tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    code = f"import sys; from {app} import main; main(sys.argv[1:])"
    run = subprocess.run([sys.executable, "-c", code, f"hydra.run.dir={tmp_path / 'run'}",
                          "+hydra.callbacks.x._target_=pathlib.Path.touch", f"+hydra.callbacks.x.self={marker}"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "hydra.callbacks.x._target_: 'pathlib.Path.touch' is not allowed" in run.stderr
    assert "Traceback" not in run.stderr and not marker.exists() and not (tmp_path / "run").exists()
