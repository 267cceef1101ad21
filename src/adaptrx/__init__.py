"""adaptrx: a reinforcement-learning simulator for adaptive exercise progression in chronic pain.

Importing the package registers the Gymnasium ids ``AdaptRx/Progression-v0`` and
``AdaptRx/ProgressionDiscrete-v0`` (safe to import any number of times).
"""

from adaptrx.envs import register_envs

__version__ = "0.1.0"

register_envs()
