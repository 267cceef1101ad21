"""``adaptrx.protocols.get``, configs, and the population_best search and its stored result."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
from omegaconf import OmegaConf

from adaptrx.protocols import NAMES, from_config, get
from adaptrx.protocols.clinical import PROTOCOLS, Constant
from adaptrx.protocols.population_best import Candidate, best_protocol, candidate_grid, search, stored_results


def test_get_builds_every_clinical_protocol_and_names_bad_input() -> None:
    for name in PROTOCOLS:
        assert type(get(name)) is PROTOCOLS[name]
    assert get("constant", load=0.7).load == 0.7
    with pytest.raises(ValueError, match="unknown protocol 'magic'"):
        get("magic")
    with pytest.raises(ValueError, match=r"constant: unknown parameter\(s\) \['weight'\]"):
        get("constant", weight=1.0)
    with pytest.raises(ValueError, match="oracle: needs the env"):
        get("oracle")
    assert {"population_best", "oracle"} <= set(NAMES)


def test_every_shipped_protocol_config_builds_its_policy() -> None:
    folder = resources.files("adaptrx") / "configs" / "policy" / "protocol"
    names = sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert set(PROTOCOLS) | {"population_best"} <= set(names)
    for name in names:
        config = OmegaConf.to_container(OmegaConf.load(str(folder / f"{name}.yaml")))
        if name == "oracle":
            continue  # needs the env at run time
        policy = from_config(config)
        assert hasattr(policy, "predict")


def test_population_best_is_stored_for_every_condition_and_loads() -> None:
    from adaptrx.patient import conditions

    stored = stored_results()
    for condition in conditions():
        name, params = best_protocol(condition)
        assert name in PROTOCOLS and stored[condition]["candidates"] == len(candidate_grid())
        policy = get("population_best", condition=condition)
        assert isinstance(policy, PROTOCOLS[name]) and policy.params() == {**PROTOCOLS[name]().params(), **params}
    with pytest.raises(ValueError, match="condition"):
        best_protocol("gout")
    with pytest.raises(ValueError, match="unknown parameter"):
        get("population_best", load=0.5)


def test_search_ranks_by_mean_return_on_paired_patients() -> None:
    candidates = [Candidate("none", {}), Candidate("constant", {"load": 0.5, "sessions": 3, "delivery": "home"}),
                  Candidate("aggressive", {})]
    table = search("knee_oa", n=120, seed=3, weeks=12, candidates=candidates)
    assert list(table["return_mean"]) == sorted(table["return_mean"], reverse=True)
    assert table.iloc[0]["protocol"] == "constant"  # exercise beats no exercise; abrupt loading loses
    assert table.set_index("protocol").loc["aggressive", "dropout"] > table.set_index("protocol").loc[
        "constant", "dropout"]
    assert np.isfinite(table["return_se"]).all()
    again = search("knee_oa", n=120, seed=3, weeks=12, candidates=candidates)
    assert table.equals(again)


def test_constant_protocol_params_round_trip() -> None:
    assert get("constant", **Constant(load=0.4, sessions=2, delivery="remote").params()).params() == {
        "load": 0.4, "sessions": 2, "delivery": "remote"}
