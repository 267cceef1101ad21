"""``adaptrx-train``: the Hydra app that trains an RL agent on the virtual patients (``DESIGN.md`` 7).

Config tree: ``configs/train.yaml`` (schema :class:`~adaptrx.experiments.train_config.TrainConfig`) with the
groups ``algo`` (ppo, a2c, sac, td3, recurrent_ppo), ``env`` (one per condition), ``policy/net`` (small,
medium, large) and ``experiment`` (quick, paper). What a run writes: :mod:`adaptrx.experiments.training`.

Examples::

    adaptrx-train experiment=quick
    adaptrx-train algo=recurrent_ppo env=fibromyalgia policy/net=small seed=2
    adaptrx-train -m algo=ppo,a2c seed=0,1,2          # a sweep (one run directory each)
    adaptrx-train experiment=quick resume=true        # continue the latest run of the same name

A bad config value is reported as ``adaptrx-train: error: <field>: <why>`` with exit code 2.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from adaptrx.experiments.train_config import ConfigError, register_schema

register_schema()


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def _app(cfg: DictConfig) -> float:
    from adaptrx.experiments.training import train

    try:
        result = train(cfg, HydraConfig.get().runtime.output_dir)
    except ValueError as exc:  # a ConfigError of validate() (sweeps skip check_overrides), or nothing to resume
        print(f"adaptrx-train: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if result.test:
        from adaptrx.experiments.policy_card import differences_table

        print(f"\nPaired comparison on {result.test['numbers']['test_patients']} test patients "
              "(agent minus protocol, 95 % CI; lower is better):")
        print(differences_table(result.test["differences"]), end="\n\n")
    print(result.summary_line())
    return float(result.val_metrics["return"])


def check_overrides(overrides: list[str]) -> None:
    """Compose the config with the command line's overrides and validate it, without running anything.

    Raises :class:`ConfigError` with Hydra's or the schema's message (an unknown group option, a key not in
    the schema, a value of the wrong type, a value out of range).
    """
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from adaptrx.experiments.train_config import validate

    try:
        with initialize_config_module("adaptrx.configs", version_base="1.3"):
            cfg = compose("train", overrides=overrides)
        validate(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        causes = [exc, exc.__cause__] if exc.__cause__ is not None else [exc]
        raise ConfigError(": ".join(str(e).strip().splitlines()[0] for e in causes)) from exc


def main(argv: list[str] | None = None) -> None:
    """Console entry point of ``adaptrx-train``: bad overrides exit with code 2 before Hydra starts a run."""
    args = sys.argv[1:] if argv is None else argv
    plain = [a for a in args if not a.startswith(("-", "hydra.", "+hydra.", "~hydra."))]
    sweep = any(a in ("-m", "--multirun") for a in args) or any("," in a.split("=", 1)[-1] for a in plain)
    if not sweep and len(plain) == len(args):
        try:
            check_overrides(plain)
        except ConfigError as exc:
            print(f"adaptrx-train: error: {exc}", file=sys.stderr)
            sys.exit(2)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    _app()


if __name__ == "__main__":
    main()
