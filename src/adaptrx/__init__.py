"""adaptrx: a reinforcement-learning simulator for adaptive exercise progression in chronic pain.

Importing the package registers the Gymnasium ids ``AdaptRx/Progression-v0`` and
``AdaptRx/ProgressionDiscrete-v0`` (safe to import any number of times) without importing Gymnasium itself:
if Gymnasium is not imported yet, the ids are registered the moment it is (:mod:`adaptrx.registration`), so
``import adaptrx.patient`` stays free of Gymnasium and torch.
"""

from adaptrx.registration import register_on_gymnasium_import

__version__ = "0.1.0"

register_on_gymnasium_import()
