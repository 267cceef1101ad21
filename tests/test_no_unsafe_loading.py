"""Nothing on a user-reachable path unpickles or evaluates: the source of adaptrx is scanned for the calls that
would (pickle / cloudpickle / dill / marshal / shelve / joblib loads, torch.load without weights_only=True,
numpy loads allowing pickles, yaml.load without a safe loader, SB3's pickle-based ``.load`` / replay-buffer
loader, eval / exec)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "adaptrx"
FILES = sorted(SRC.rglob("*.py"))

#: Call names (dotted, as written) that deserialise with pickle or evaluate code.
FORBIDDEN_CALLS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cloudpickle.load", "cloudpickle.loads", "dill.load",
    "dill.loads", "marshal.load", "marshal.loads", "shelve.open", "joblib.load", "eval", "exec",
    "load_from_pkl", "yaml.unsafe_load", "yaml.full_load",
}
#: SB3 loaders that unpickle (``BaseAlgorithm.load`` reads cloudpickled data; the replay buffer is a pickle).
FORBIDDEN_METHODS = {"load_replay_buffer"}
SB3_ALGORITHMS = {"PPO", "A2C", "SAC", "TD3", "DQN", "DDPG", "RecurrentPPO", "TQC", "TRPO", "ARS", "QRDQN",
                  "algorithm_class", "BaseAlgorithm"}


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_name(node.func)}()"
    return "?"


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _problems(source: str, label: str) -> list[str]:
    tree = ast.parse(source, filename=label)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        where = f"{label}:{node.lineno}"
        if name in FORBIDDEN_CALLS or name.rsplit(".", 1)[-1] in FORBIDDEN_METHODS:
            found.append(f"{where}: {name}(...)")
        elif name in ("torch.load", "th.load"):
            flag = _keyword(node, "weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{where}: torch.load without weights_only=True")
        elif name in ("np.load", "numpy.load"):
            flag = _keyword(node, "allow_pickle")
            if not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(f"{where}: np.load without allow_pickle=False")
        elif name == "yaml.load":
            loader = _keyword(node, "Loader")
            if loader is None or "Safe" not in _name(loader):
                found.append(f"{where}: yaml.load without a SafeLoader")
        elif name.endswith(".load") and name.split(".")[0].split("(")[0] in SB3_ALGORITHMS:
            found.append(f"{where}: {name}(...) (SB3's loader unpickles its data)")
        elif name in ("pd.read_pickle", "pandas.read_pickle"):
            found.append(f"{where}: {name}(...)")
    return found


def test_the_scan_catches_what_it_looks_for() -> None:
    code = ("import pickle, torch, numpy as np, yaml\n"
            "pickle.loads(b'')\ntorch.load('x')\ntorch.load('x', weights_only=False)\nnp.load('x')\n"
            "yaml.load('a')\nalgorithm_class('ppo').load('m.zip')\nPPO.load('m.zip')\nmodel.load_replay_buffer('b')\n"
            "eval('1')\ntorch.load('x', weights_only=True)\nnp.load('x', allow_pickle=False)\n"
            "yaml.load('a', Loader=yaml.SafeLoader)\n")
    problems = _problems(code, "sample.py")
    assert [re.sub(r"^.*?:(\d+): ", r"\1 ", p) for p in problems] == [
        "2 pickle.loads(...)", "3 torch.load without weights_only=True", "4 torch.load without weights_only=True",
        "5 np.load without allow_pickle=False", "6 yaml.load without a SafeLoader",
        "7 algorithm_class().load(...) (SB3's loader unpickles its data)",
        "8 PPO.load(...) (SB3's loader unpickles its data)", "9 model.load_replay_buffer(...)", "10 eval(...)"]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(SRC)) for p in FILES])
def test_no_unsafe_deserialisation_in_the_source(path: Path) -> None:
    assert not _problems(path.read_text(), str(path.relative_to(SRC.parent)))
