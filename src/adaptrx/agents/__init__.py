"""RL agents for the AdaptRx environments (training, shipped policies: planned). Today: reading the tuned
RL Zoo3 hyperparameters (:mod:`adaptrx.agents.zoo`)."""
