"""The Hydra config tree of adaptrx (a package so that Hydra finds it as ``pkg://adaptrx.configs``, from a
clone through the ``src/adaptrx/configs`` link and from an installed wheel)."""
