"""adaptrx: a reinforcement-learning simulator for adaptive exercise progression in chronic pain."""

__version__ = "0.1.0"
