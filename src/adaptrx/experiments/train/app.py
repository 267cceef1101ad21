"""``adaptrx-train``: the Hydra app that trains an RL agent on the virtual patients (``DESIGN.md`` 7).

Config tree: ``configs/train.yaml`` (schema :class:`~adaptrx.experiments.train.config.TrainConfig`) with the
groups ``algo`` (ppo, a2c, sac, td3, recurrent_ppo), ``env`` (one per condition), ``policy/net`` (small,
medium, large) and ``experiment`` (quick, paper). What a run writes: :mod:`adaptrx.experiments.train.training`.

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

from adaptrx.experiments.hydra_cli import check_job, run_app
from adaptrx.experiments.hydra_cli import check_overrides as _check_overrides
from adaptrx.experiments.train.config import register_schema, validate
from adaptrx.experiments.train.policy_card import differences_table, standing_table
from adaptrx.experiments.train.training import train

register_schema()


@hydra.main(version_base="1.3", config_path="../../configs", config_name="train")
def _app(cfg: DictConfig) -> float:
    try:
        check_job(cfg)
        result = train(cfg, HydraConfig.get().runtime.output_dir)
    except ValueError as exc:  # a ConfigError of validate() (sweeps skip check_overrides), or nothing to resume
        print(f"adaptrx-train: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if result.test:
        n = result.test["numbers"]["test_patients"]
        print(f"\nWhere the agent stands on {n} paired test patients (means per patient):")
        print(standing_table(result.test["summary"]), end="\n\n")
        print("Paired differences, agent minus each comparator (95 % CI; the return is better higher, pain, "
              "flares and dropout lower):")
        print(differences_table(result.test["differences"]), end="\n\n")
    print(result.summary_line())
    return float(result.val_metrics["return"])


def check_overrides(overrides: list[str]) -> None:
    """Compose ``configs/train.yaml`` with ``overrides`` and validate it; :class:`ConfigError` names the field."""
    _check_overrides("train", overrides, validate)


def main(argv: list[str] | None = None) -> None:
    """Console entry point of ``adaptrx-train``: bad overrides exit with code 2 before Hydra starts a run."""
    run_app("adaptrx-train", "train", validate, _app, argv)


if __name__ == "__main__":
    main()
