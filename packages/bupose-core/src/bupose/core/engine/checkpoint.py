"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only, so it loads with
``torch.load(weights_only=True)``: model, optimiser, scheduler, grad-scaler and EMA state dicts,
the step, the best metric so far, the run's configuration (JSON text) and the random states of
every rank (Python's ``random``, NumPy's global generator and torch's CPU/CUDA generators, each
stored as tensors and numbers rather than pickled objects).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..weights import CheckpointError, atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_rng_state",
    "clean_stale_temp_files",
    "read_training_checkpoint",
    "restore_rng_state",
    "write_training_checkpoint",
]

CHECKPOINT_FORMAT = "bupose-train-v1"


def capture_rng_state() -> dict[str, Any]:
    """This process's random states as tensors and numbers (``weights_only``-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python_version": int(py_version),
        "python_state": torch.tensor(py_state, dtype=torch.int64),
        "python_gauss": py_gauss,
        "numpy_name": str(np_name),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set this process's random states from :func:`capture_rng_state`'s output."""
    random.setstate(
        (int(state["python_version"]), tuple(int(v) for v in state["python_state"].tolist()), state["python_gauss"])
    )
    np.random.set_state(
        (
            state["numpy_name"],
            state["numpy_keys"].numpy().astype(np.uint32),
            int(state["numpy_pos"]),
            int(state["numpy_has_gauss"]),
            float(state["numpy_gauss"]),
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def clean_stale_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the hidden temporary files a killed writer left behind; returns what was removed."""
    removed = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def write_training_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` (plus the format tag) atomically: readers only ever see complete files."""
    payload = {"format": CHECKPOINT_FORMAT, **state}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint written by :func:`write_training_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no training checkpoint to resume from")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read as a training checkpoint ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a bupose training checkpoint (expected format {CHECKPOINT_FORMAT})")
    if isinstance(obj.get("config"), str):
        obj["config"] = json.loads(obj["config"])
    return obj
