"""RL agents for the AdaptRx environments: the oracle planner (:mod:`adaptrx.agents.oracle`, the upper-bound
reference, also ``adaptrx.protocols.get("oracle", env=env)``) and the tuned RL Zoo3 hyperparameters
(:mod:`adaptrx.agents.zoo`). Training and shipped policies: planned."""
