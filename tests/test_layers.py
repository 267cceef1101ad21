"""The package's layers (``DESIGN.md``, architecture): data flows one way,
common -> patient -> envs -> protocols -> agents -> (experiments, clinic) -> demo.

Read from the source with ``ast`` (no imports): every ``import`` of an adaptrx module, at module level or in a
function, is an edge of the module graph. The graph has no circles, no module imports a higher layer, and no
adaptrx module is imported inside a function (the usual way of hiding a circle). Third-party imports inside
functions are allowed only for the heavy optional libraries below, which keep torch, SB3 and the web server
off the clinic's and the patient model's import paths.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Layer of each top-level part of the package (lower layers never import higher ones).
LAYERS: dict[str, int] = {
    "adaptrx": 0, "adaptrx.registration": 0, "adaptrx.common": 0,
    "adaptrx.patient": 1,
    "adaptrx.envs": 2,
    "adaptrx.protocols": 3,
    "adaptrx.agents": 4,
    "adaptrx.experiments": 5, "adaptrx.clinic": 5,
    "adaptrx.demo": 6,
}
#: Third-party modules that may be imported inside a function, and why.
LAZY_ALLOWED: dict[str, str] = {
    "torch": "the clinic runs exported policies in numpy; torch only when a policy is trained or loaded in torch",
    "safetensors.torch": "as torch",
    "torch.utils.tensorboard": "as torch",
    "torch.utils.tensorboard.summary": "as torch",
    "uvicorn": "only `adaptrx serve` needs the web server",
    "matplotlib.backends.backend_agg": "only rgb_array rendering draws a figure",
    "matplotlib.figure": "as matplotlib.backends.backend_agg",
}
#: adaptrx modules that may be imported inside a function (a lazy attribute or command), and why: both pull a
#: heavy library, and neither is part of a circle (the graph test sees these edges too).
LAZY_ADAPTRX: dict[str, str] = {
    "adaptrx.envs.vec_env": "PatientVecEnv is an SB3 VecEnv: `from adaptrx.envs import PatientVecEnv` imports torch",
    "adaptrx.clinic.web": "FastAPI and the worker pool, only for `adaptrx serve`",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "adaptrx").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[best]


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to (``""`` for the package root)."""
    return [*module.split("."), ""][1]


def _imports(module: str) -> Iterator[tuple[str, bool]]:
    """``(imported module, inside a function)`` for every import statement of ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            yield name, id(node) in in_function


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for name, _ in _imports(module):
            while name not in MODULES and "." in name:
                name = name.rpartition(".")[0]
            if name in MODULES and name != module:
                graph[module].add(name)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_module_graph_has_no_circles() -> None:
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_a_higher_layer() -> None:
    upward = sorted(f"{module} -> {name}" for module, names in _graph().items() for name in names
                    if _layer(name) > _layer(module))
    assert upward == []


def test_experiments_and_clinic_do_not_import_each_other() -> None:
    crossing = sorted(f"{module} -> {name}" for module, names in _graph().items() for name in names
                      if {_part(module), _part(name)} == {"experiments", "clinic"})
    assert crossing == []


def test_the_trial_app_does_not_import_the_training_app() -> None:
    graph = _graph()
    assert not [(m, n) for m in graph if m.startswith("adaptrx.experiments.trial")
                for n in graph[m] if n.startswith("adaptrx.experiments.train")]


def test_imports_inside_functions_are_only_heavy_optional_libraries() -> None:
    hidden = sorted(f"{module}: {name}" for module in MODULES for name, inside in _imports(module)
                    if inside and name not in LAZY_ALLOWED and name not in LAZY_ADAPTRX)
    assert hidden == []


@pytest.mark.parametrize("module", ["adaptrx", "adaptrx.patient", "adaptrx.patient.calibration"])
def test_the_patient_model_imports_without_gymnasium_or_torch(module: str) -> None:
    heavy = ("gymnasium", "torch", "stable_baselines3")
    code = f"import sys, {module}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize("order", ["import adaptrx; import gymnasium as gym",
                                   "import gymnasium as gym; import adaptrx",
                                   "import adaptrx.patient; from gymnasium import spaces; import gymnasium as gym"])
def test_import_adaptrx_registers_the_env_ids_in_any_order(order: str) -> None:
    code = (f"{order}; env = gym.make('AdaptRx/ProgressionDiscrete-v0'); env.reset(seed=0); "
            "import importlib.resources as r; assert (r.files('gymnasium') / 'core.py').is_file(); "  # loader intact
            "print(sorted(i for i in gym.registry if i.startswith('AdaptRx/')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "['AdaptRx/Progression-v0', 'AdaptRx/ProgressionDiscrete-v0']"
