"""Fixed clinical protocols, the safety shield and the two references (``DESIGN.md`` sections 4-6).

``get(name, **params)`` returns a policy with ``reset()`` and SB3's ``predict``:

* clinical protocols (:mod:`adaptrx.protocols.clinical`): ``none``, ``attention_control``, ``constant``,
  ``linear``, ``acsm``, ``pain_monitoring``, ``graded_activity``, ``rpe_autoregulation``, ``glad``,
  ``start_high``, ``start_low``, ``aggressive``; parameters as in ``configs/policy/protocol/<name>.yaml``;
* ``population_best``: the single best of those on the train cohort
  (:mod:`adaptrx.protocols.population_best`; ``condition=`` picks the stored search, default knee OA);
* ``oracle``: the planner that knows the true parameters and state (:mod:`adaptrx.protocols.oracle`), built
  with the env it controls: ``get("oracle", env=env)``.
* ``belief_planner``: the oracle's planner over posterior particles of the env's belief filter instead of
  the true patient (:class:`adaptrx.protocols.oracle.BeliefPlanner`), built with an env with ``belief=True``:
  ``get("belief_planner", env=env)``.

:class:`~adaptrx.protocols.safety_rules.SafetyRules` is the shield of section 4 and
:class:`~adaptrx.protocols.safety_rules.ShieldedPolicy` puts it around any policy.
"""

from __future__ import annotations

from adaptrx.protocols.base import Policy, Protocol
from adaptrx.protocols.registry import NAMES, from_config, get
from adaptrx.protocols.safety_rules import RULES, SafetyRules, ShieldedPolicy

__all__ = ["NAMES", "RULES", "Policy", "Protocol", "SafetyRules", "ShieldedPolicy", "from_config", "get"]
