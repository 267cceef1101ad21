"""Training checkpoints of ``adaptrx-train``: written atomically, read back without unpickling anything.

A checkpoint is a folder ``<run>/checkpoints/<tag>/`` (``tag``: ``last`` or ``best``)::

    model.zip        SB3's save format; only its tensors are ever read back (see below)
    obs_rms.npz      the VecNormalize observation statistics (if the env normalises observations)
    replay.npz       the replay buffer of an off-policy algorithm (``last`` only; plain arrays, no pickle)
    state.json       counters (timesteps, updates, episodes), the callback's evaluation history and the
                     sha256 of each file above

Atomic: the files are written into a fresh hidden folder, which then replaces the previous checkpoint by two
renames (old -> ``.<tag>.old``, new -> ``<tag>``) before the old one is deleted. A process killed at any
point leaves either a complete ``<tag>`` or a complete ``.<tag>.old``; :func:`find` returns whichever is
complete (hashes checked), so ``resume`` always restarts from a consistent checkpoint.

Safe to read: SB3's ``load`` would unpickle the ``data`` entry of the zip (cloudpickle). Here the model is
rebuilt from the run's config and only the zip's tensors are loaded, through
``set_parameters`` / ``load_from_zip_file(load_data=False)`` (``torch.load(weights_only=True)``); the replay
buffer is read with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.save_util import load_from_zip_file, recursive_getattr
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecNormalize

MODEL, STATS, REPLAY, STATE = "model.zip", "obs_rms.npz", "replay.npz", "state.json"
#: The arrays of an SB3 ReplayBuffer that make up its content (``pos`` and ``full`` go to state.json).
_REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(model: BaseAlgorithm, norm: VecNormalize | None, ckpt_dir: Path, tag: str, state: dict[str, Any],
         replay: bool = False) -> Path:
    """Write checkpoint ``tag`` of ``model`` (+ observation statistics, + replay buffer if ``replay``) and
    ``state`` (JSON-serialisable) atomically; returns its folder."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=ckpt_dir, prefix=f".{tag}.new-"))
    try:
        model.save(tmp / MODEL)
        if norm is not None:
            rms = norm.obs_rms
            np.savez(tmp / STATS, mean=rms.mean, var=rms.var, count=np.array(rms.count))
        state = {**state, "num_timesteps": int(model.num_timesteps), "n_updates": int(getattr(model, "_n_updates", 0)),
                 "episode_num": int(getattr(model, "_episode_num", 0))}
        if replay and getattr(model, "replay_buffer", None) is not None:
            buffer = model.replay_buffer
            np.savez(tmp / REPLAY, **{name: getattr(buffer, name) for name in _REPLAY_ARRAYS})
            state["replay"] = {"pos": int(buffer.pos), "full": bool(buffer.full)}
        state["files"] = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / STATE).write_text(json.dumps(state, indent=1))
        final, old = ckpt_dir / tag, ckpt_dir / f".{tag}.old"
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def complete(folder: Path) -> bool:
    """Whether ``folder`` holds a whole checkpoint: its state.json and every file it lists, hashes matching."""
    try:
        state = json.loads((folder / STATE).read_text())
        files = state["files"]
        return MODEL in files and all(_sha256(folder / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def find(ckpt_dir: Path, tag: str) -> Path | None:
    """The complete checkpoint ``tag`` under ``ckpt_dir`` (or the previous one a killed write left), if any."""
    for folder in (ckpt_dir / tag, ckpt_dir / f".{tag}.old"):
        if complete(folder):
            return folder
    return None


def read_state(folder: Path) -> dict[str, Any]:
    """The ``state.json`` of checkpoint ``folder``."""
    return json.loads((folder / STATE).read_text())


def load_stats(folder: Path) -> RunningMeanStd | None:
    """The observation statistics of checkpoint ``folder`` (``None`` if it has none)."""
    path = folder / STATS
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        rms = RunningMeanStd(shape=data["mean"].shape)
        rms.mean, rms.var, rms.count = data["mean"].copy(), data["var"].copy(), float(data["count"])
    return rms


def load_into(model: BaseAlgorithm, folder: Path, counters: bool = True) -> BaseAlgorithm:
    """Load checkpoint ``folder``'s tensors (policy, optimizers, torch variables such as SAC's entropy
    coefficient) into ``model``, a fresh model built from the same config; with ``counters``, also its
    timestep / update / episode counters and (off-policy) replay buffer. Nothing is unpickled."""
    state = read_state(folder)
    model.set_parameters(str(folder / MODEL), exact_match=True, device="cpu")
    _, _, variables = load_from_zip_file(folder / MODEL, device=get_device("cpu"), load_data=False)
    for name, value in (variables or {}).items():
        recursive_getattr(model, name).data.copy_(value.data)
    if counters:
        model.num_timesteps = int(state["num_timesteps"])
        model._n_updates = int(state.get("n_updates", 0))
        model._episode_num = int(state.get("episode_num", 0))
        replay = folder / REPLAY
        if replay.exists() and getattr(model, "replay_buffer", None) is not None:
            buffer = model.replay_buffer
            with np.load(replay, allow_pickle=False) as data:
                for name in _REPLAY_ARRAYS:
                    target = getattr(buffer, name)
                    if data[name].shape != target.shape:
                        raise ValueError(f"{replay}: {name} has shape {data[name].shape}, the buffer {target.shape}")
                    target[...] = data[name]
            buffer.pos, buffer.full = int(state["replay"]["pos"]), bool(state["replay"]["full"])
    return model
