"""Official SimplePose checkpoints <-> bupose.

The official training script saves ``{'weights': state_dict, 'optimizer_weight', 'train_loss',
'epoch'}`` (``PoseNet_52_epoch.pth``); the Google Drive release holds the weights only. The state_dict
is ``NetworkEval(bn=True)``'s: 1848 keys under ``posenet.`` (``pre``, ``hourglass``, ``features``,
``outs``, ``merge_features``, ``merge_preds``). In bupose the same tensors live under ``backbone.``
(IMHN owns the prediction convs; the ``simplepose`` head has no parameters on IMHN).

Handled explicitly: the ``weights`` wrapper (or ``state_dict``/``model``), a ``module.`` prefix on every
key (DataParallel/DDP) and the ``posenet.`` prefix. A ``bn=False`` file (1504 keys) is rejected with
a message saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from bupose.core.weights import CheckpointError, CheckpointMismatchError, unwrap_checkpoint

__all__ = ["OFFICIAL", "SimplePoseConverter", "expected_keys", "from_official", "to_official", "unwrap"]

PREFIX = "posenet."
GROUPS = ("pre", "hourglass", "features", "outs", "merge_features", "merge_preds")
NUM_KEYS_BN = 1848
NUM_KEYS_NO_BN = 1504


def unwrap(obj: Mapping[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor state_dict inside an official file (core's :func:`~bupose.core.weights.unwrap_checkpoint`:
    the ``weights`` wrapper of SimplePose's training files opened, ``module.`` removed)."""
    return unwrap_checkpoint(obj, where, wrappers=("weights", "state_dict", "model"))


def _looks_official(sd: Mapping[str, Any]) -> bool:
    w = sd.get("posenet.pre.conv1.weight")
    return (
        isinstance(w, torch.Tensor)
        and tuple(w.shape[1:]) == (3, 7, 7)
        and "posenet.hourglass.0.hg.0.0.convBlock.0.weight" in sd
        and "posenet.outs.0.0.conv.weight" in sd
    )


def expected_keys() -> dict[str, tuple[int, ...]]:
    """Every key and shape of the official ``NetworkEval(bn=True)`` state_dict, in official order."""
    from .model import IMHN

    with torch.device("meta"):
        model = IMHN()
    return {PREFIX + k: tuple(v.shape) for k, v in model.state_dict().items()}


def from_official(sd: Mapping[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Official SimplePose state_dict (possibly wrapped) -> bupose ``backbone.*`` keys, strictly checked."""
    sd = unwrap(sd, where)
    if not _looks_official(sd):
        raise CheckpointError(
            f"{where}: not an official SimplePose file (needs posenet.pre.conv1.weight (64, 3, 7, 7), "
            f"posenet.hourglass.* and posenet.outs.* keys)"
        )
    expected = expected_keys()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k} {tuple(sd[k].shape)} vs {v}" for k, v in expected.items() if k in sd and tuple(sd[k].shape) != v
    ]
    if missing or unexpected or shapes:
        if len(sd) == NUM_KEYS_NO_BN and missing:
            where += " (this looks like a bn=False model; the official evaluation builds NetworkEval(bn=True))"
        raise CheckpointMismatchError(f"{where} (SimplePose IMHN)", missing, unexpected, shapes)
    return {"backbone." + k[len(PREFIX) :]: sd[k] for k in expected}


def to_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """bupose ``simplepose`` on ``imhn`` state_dict -> the official ``posenet.*`` layout."""
    bad = [k for k in sd if not k.startswith("backbone.")]
    if bad:
        raise CheckpointMismatchError("bupose SimplePose state_dict (only backbone.* keys expected)", [], bad)
    return {PREFIX + k[len("backbone.") :]: v for k, v in sd.items()}


class SimplePoseConverter:
    """WeightsSpec converter for the official IMHN checkpoint (``{'weights': ...}`` or bare)."""

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        try:
            return _looks_official(unwrap(state_dict))
        except CheckpointError:
            return False

    def convert(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return from_official(state_dict, "SimplePose checkpoint")

    def __call__(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self.convert(state_dict)

    def __repr__(self) -> str:
        return "SimplePoseConverter()"


OFFICIAL = SimplePoseConverter()
