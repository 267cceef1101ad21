"""The ``_target_`` allowlist of the Hydra apps (adaptrx.experiments.hydra_cli): a config a user brings in cannot
make Hydra instantiate anything but the exact launchers, sweepers, callbacks and logging handlers the project
ships or documents, whatever the route (overrides, config folders, presets, ``hydra.*`` overrides)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from adaptrx.experiments.hydra_cli import ConfigError, check_targets, check_user_configs
from adaptrx.experiments.train import app as train
from adaptrx.experiments.trial import app as trial

APPS = (train, trial)  # importing the apps registers their config schemas (composed below)
REFUSED_OVERRIDES = [
    ["+policy._target_=os.system"],
    ["hydra.launcher={_target_:builtins.exec}"],
    ["-m", "seed=0,1", "hydra.launcher._target_=hydra_plugins.x.Launcher,os.system"],  # one choice of a sweep
    ["hydra.callbacks.x._target_=hydra.utils.call"],  # a gadget that would call anything
    ["hydra.job_logging.handlers.console.class=os.system"],
    ["+algo.kwargs.policy={a: [{_target_: subprocess.run}]}"],  # nested in a list
    # an adaptrx function that writes files: the old prefix check let it through (adaptrx-trial exited 0)
    ["+hydra.callbacks.x={_target_: adaptrx.common.atomic.write_text, _args_: [/tmp/x, pwned]}"],
    ["hydra.launcher._target_=adaptrx.common.atomic.os.system"],  # starts with adaptrx. but is os.system
    ["+x._target_=adaptrx.protocols.get"],  # the app config instantiates nothing
    ["hydra.launcher._target_=hydra._internal.core_plugins.basic_launcher.os.system"],  # inside an allowed module
    ["hydra.callbacks.x._target_=hydra.experimental.callbacks.PickleJobInfoCallback"],  # real, not allowlisted
    ["hydra.launcher._target_=hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncherX"],  # no object
]


@pytest.mark.parametrize("args", REFUSED_OVERRIDES, ids=[" ".join(a) for a in REFUSED_OVERRIDES])
def test_overrides_naming_other_callables_are_refused(args: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"is not allowed \((configs may name only|the app config instantiates)"):
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
    ["hydra/launcher=local"], ["hydra/launcher=slurm"], ["hydra/launcher=submitit_local"],
    # an alias of an allowed object is the same object
    ["hydra.launcher._target_=hydra._internal.core_plugins.basic_launcher.BasicLauncher"],
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
    check_targets(OmegaConf.create({"a": {"x": 1}, "b": [1, {"c": 2}]}))
    with pytest.raises(ConfigError, match=r"^a\._target_: 'adaptrx\.protocols\.get'"):
        check_targets(OmegaConf.create({"a": {"_target_": "adaptrx.protocols.get"}}))
    with pytest.raises(ConfigError, match=r"^b\[1\]\._target_: 'os\.system'"):
        check_targets(OmegaConf.create({"b": [1, {"_target_": "os.system"}]}))
    hydra_node = {"launcher": {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
                  "job_logging": {"handlers": {"console": {"class": "logging.StreamHandler"}}}}
    check_targets(OmegaConf.create(hydra_node), "hydra")
    hydra_node["job_logging"]["handlers"]["console"]["class"] = "os.system"
    with pytest.raises(ConfigError, match=r"^hydra\.job_logging\.handlers\.console\.class"):
        check_targets(OmegaConf.create(hydra_node), "hydra")


@pytest.mark.slow
@pytest.mark.parametrize("app", ["adaptrx.experiments.train.app", "adaptrx.experiments.trial.app"])
def test_the_apps_exit_2_before_hydra_starts(app: str, tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    code = f"import sys; from {app} import main; main(sys.argv[1:])"
    run = subprocess.run([sys.executable, "-c", code, f"hydra.run.dir={tmp_path / 'run'}",
                          "+hydra.callbacks.x._target_=pathlib.Path.touch", f"+hydra.callbacks.x.self={marker}"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "hydra.callbacks.x._target_: 'pathlib.Path.touch' is not allowed" in run.stderr
    assert "Traceback" not in run.stderr and not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("preset", ["quick", "paper"])
@pytest.mark.parametrize(("config", "group"), [("train", "experiment"), ("trial", "preset")])
def test_shipped_configs_compose_inside_the_allowlist(config: str, group: str, preset: str) -> None:
    """Every shipped preset, with each shipped launcher, composes to a Hydra node the job check accepts."""
    from hydra import compose, initialize_config_module

    for launcher in ("local", "slurm", "submitit_local"):
        with initialize_config_module("adaptrx.configs", version_base="1.3"):
            cfg = compose(config, overrides=[f"{group}={preset}", f"hydra/launcher={launcher}"],
                          return_hydra_config=True)
        check_targets({k: v for k, v in cfg.items() if k != "hydra"})
        check_targets(cfg.hydra, "hydra")


@pytest.mark.slow
def test_the_file_writing_callback_of_the_report_is_refused_end_to_end(tmp_path: Path) -> None:
    """The measured attack: a preset in a --config-dir folder makes Hydra call adaptrx.common.atomic.write_text."""
    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    _write(tmp_path / "cfg" / "preset" / "evil.yaml",
           "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: adaptrx.common.atomic.write_text\n"
           f"      _args_: [{victim}, pwned]\n")
    code = "import sys; from adaptrx.experiments.trial.app import main; main(sys.argv[1:])"
    run = subprocess.run([sys.executable, "-c", code, "--config-dir", str(tmp_path / "cfg"), "preset=evil",
                          f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "adaptrx.common.atomic.write_text" in run.stderr and "Traceback" not in run.stderr
    assert victim.read_text() == "intact"


@pytest.mark.slow
@pytest.mark.parametrize(("app", "args", "message"), [
    ("train", ["+nosuchkey=1"], "nosuchkey: unknown key (not in the config schema)"),
    ("train", ["+budget.total_timestep=1000"], "did you mean budget.total_timesteps?"),
    ("trial", ["+foo=1"], "foo: unknown key (not in the config schema)"),
    ("trial", ["+stats.nboot=3"], "did you mean stats.n_boot?"),
    ("train", ["seed=abc", "hydra.run.dir=RUN"], "seed=abc"),  # a hydra.* override no longer skips the check
    ("trial", ["hydra.run.dri=RUN"], "hydra.run.dri"),
])
def test_unknown_keys_and_bad_hydra_overrides_exit_2_with_one_line(app: str, args: list[str], message: str,
                                                                     tmp_path: Path) -> None:
    code = f"import sys; from adaptrx.experiments.{app}.app import main; main(sys.argv[1:])"
    argv = [a.replace("RUN", str(tmp_path / "run")) for a in args]
    run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"adaptrx-{app}: error: ") and message in lines[0], run.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_open_mappings_take_any_key() -> None:
    """algo.kwargs holds the algorithm's own keyword arguments: any key may be added there."""
    from adaptrx.experiments.hydra_cli import check_overrides
    from adaptrx.experiments.train.config import validate

    check_overrides("train", ["+algo.kwargs.target_kl=0.02"], validate)
