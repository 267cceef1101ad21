"""The Gymnasium ids of adaptrx, registered on ``import adaptrx`` without importing Gymnasium there.

``import adaptrx`` promises the ids ``AdaptRx/Progression-v0`` and ``AdaptRx/ProgressionDiscrete-v0``
(``DESIGN.md`` section 3; RL Zoo3's ``--gym-packages adaptrx`` relies on it), but the patient model below
the envs must import without Gymnasium (or torch). So :func:`register_on_gymnasium_import` registers the ids
at once when Gymnasium is already imported, and otherwise the moment it is: a one-shot import hook on
``sys.meta_path`` runs :func:`register_envs` right after Gymnasium's package module has executed. Either
way ``import adaptrx; import gymnasium as gym; gym.make("AdaptRx/Progression-v0")`` works, in any order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

#: Env id -> entry point (module:class), registered by :func:`register_envs`.
ENV_IDS: dict[str, str] = {
    "AdaptRx/Progression-v0": "adaptrx.envs.progression:ProgressionEnv",
    "AdaptRx/ProgressionDiscrete-v0": "adaptrx.envs.progression:ProgressionDiscreteEnv",
}


def register_envs() -> None:
    """Register the AdaptRx env ids with Gymnasium (imported if it is not yet); calling it again does nothing."""
    gym = sys.modules.get("gymnasium") or importlib.import_module("gymnasium")
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)


class _RegisteringLoader(importlib.abc.Loader):
    """Gymnasium's own loader, followed by :func:`register_envs` once its package module has run."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        register_envs()

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, get_code, ...: the real loader's
        return getattr(self._loader, name)


class _GymnasiumImportHook(importlib.abc.MetaPathFinder):
    """Finds Gymnasium with the other finders and wraps its loader (once; then leaves ``sys.meta_path``)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        if fullname != "gymnasium":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


def register_on_gymnasium_import() -> None:
    """Register the ids now if Gymnasium is imported, else when it is (idempotent)."""
    if "gymnasium" in sys.modules:
        register_envs()
    elif not any(isinstance(finder, _GymnasiumImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _GymnasiumImportHook())
