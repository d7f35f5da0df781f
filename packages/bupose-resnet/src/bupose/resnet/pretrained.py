"""torchvision ImageNet ResNet files (``resnet50-0676ba61.pth``...) as backbone initialisations.

The files hold a classification ResNet's state_dict: the backbone keys of this package plus the
classifier ``fc.weight`` / ``fc.bias``. Users bring the file; nothing is downloaded.

Conversion rules, all by name, everything else strict (a missing, unexpected or mis-shaped key is a
:class:`~bupose.core.weights.CheckpointMismatchError` that lists it and names the file):

- ``fc.*`` is dropped;
- ``*.num_batches_tracked`` (a BatchNorm step counter, absent from torchvision's older files) is
  dropped for a ``frozen_bn`` backbone, which has none, and set to 0 where a ``bn`` backbone needs it
  and the file has none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch

from bupose.core.weights import (
    CheckpointMismatchError,
    load_state_dict_strict,
    read_checkpoint,
    unwrap_checkpoint,
)

from .config import ResNetConfig, resnet_config
from .model import ResNet

__all__ = [
    "IMAGENET_RESNET18",
    "IMAGENET_RESNET34",
    "IMAGENET_RESNET50",
    "IMAGENET_RESNET101",
    "TORCHVISION_DROPPED",
    "TorchvisionResNetConverter",
    "convert_torchvision",
    "expected_shapes",
    "load_imagenet_pretrained",
]

TORCHVISION_DROPPED: tuple[str, ...] = ("fc",)
"""Top-level modules of the torchvision classifier that the backbone does not have."""

_COUNTER = "num_batches_tracked"


@lru_cache(maxsize=16)
def _shapes(config: ResNetConfig, norm: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        model = ResNet(config, norm=norm)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def expected_shapes(config: ResNetConfig | str, norm: str = "bn") -> dict[str, tuple[int, ...]]:
    """Every state_dict key of a backbone built from ``config`` with ``norm``, with its shape, in order."""
    if isinstance(config, str):
        config = resnet_config(config)
    return dict(_shapes(config, norm))


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def convert_torchvision(
    state_dict: Mapping[str, Any],
    config: ResNetConfig | str = "resnet50",
    *,
    norm: str = "bn",
    where: str = "torchvision ResNet checkpoint",
) -> dict[str, torch.Tensor]:
    """A torchvision classification ResNet state_dict -> the bare keys of a backbone (``config``, ``norm``).

    Drops ``fc.*`` by name and handles ``num_batches_tracked`` as the module docstring says; raises
    :class:`~bupose.core.weights.CheckpointMismatchError` listing every other missing, unexpected or
    mis-shaped key.
    """
    if isinstance(config, str):
        config = resnet_config(config)
    sd = unwrap_checkpoint(state_dict, where)
    own = expected_shapes(config, norm)
    kept: dict[str, Any] = {}
    for key, value in sd.items():
        if key.split(".", 1)[0] in TORCHVISION_DROPPED:
            continue
        if key.endswith("." + _COUNTER) and norm == "frozen_bn":
            continue
        kept[key] = value
    if norm == "bn":
        for key in own:
            if key.endswith("." + _COUNTER) and key not in kept:
                kept[key] = torch.tensor(0, dtype=torch.long)
    missing = [k for k in own if k not in kept]
    unexpected = [k for k in kept if k not in own]
    shapes = [
        f"{k} {_shape(kept[k]) if _shape(kept[k]) is not None else type(kept[k]).__name__} vs {own[k]}"
        for k in own
        if k in kept and _shape(kept[k]) != own[k]
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"{where} (after dropping {', '.join(m + '.*' for m in TORCHVISION_DROPPED)})",
            missing,
            unexpected,
            shapes,
        )
    return {k: kept[k] for k in own}


def load_imagenet_pretrained(backbone: ResNet, source: str | os.PathLike[str] | Mapping[str, Any]) -> ResNet:
    """Initialise ``backbone`` (any ``norm``/``frozen_stages``) from a torchvision ImageNet file or state_dict.

    Files are read with ``torch.load(weights_only=True)``. Returns ``backbone``.
    """
    if isinstance(source, Mapping):
        where, sd = "ImageNet state_dict", source
    else:
        where = os.fspath(source)
        sd, _ = read_checkpoint(source)
    converted = convert_torchvision(sd, backbone.config, norm=backbone.norm, where=where)
    load_state_dict_strict(backbone, converted, where)
    return backbone


class TorchvisionResNetConverter:
    """Converter object of a registered ImageNet weights spec (``detect`` / ``convert`` / ``build``).

    ``detect`` recognises a torchvision classification ResNet of this depth (exactly the backbone keys,
    counters optional, plus ``fc``); ``convert`` returns the bare keys of the preset backbone with
    trainable BatchNorm (the registered backbone's default); ``build`` loads them into that backbone.
    """

    def __init__(self, backbone: str) -> None:
        self.backbone = backbone

    def _core_keys(self) -> set[str]:
        return {k for k in expected_shapes(self.backbone, "bn") if not k.endswith("." + _COUNTER)}

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        """Whether ``state_dict`` is a torchvision ImageNet ResNet of this depth."""
        try:
            sd = unwrap_checkpoint(state_dict)
        except ValueError:
            return False
        if "fc.weight" not in sd:
            return False
        keys = {
            k
            for k in sd
            if isinstance(k, str)
            and k.split(".", 1)[0] not in TORCHVISION_DROPPED
            and not k.endswith("." + _COUNTER)
        }
        return keys == self._core_keys()

    def convert(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Bare backbone keys for the ``backbone`` preset with ``norm="bn"`` (strict; ``fc`` dropped)."""
        return convert_torchvision(
            state_dict, self.backbone, norm="bn", where=f"torchvision {self.backbone} checkpoint"
        )

    def build(self, state_dict: Mapping[str, torch.Tensor]) -> ResNet:
        """The preset backbone with ``state_dict`` (the output of :meth:`convert`) loaded strictly."""
        from .model import build_resnet

        backbone = build_resnet(self.backbone)
        load_state_dict_strict(backbone, state_dict, f"converted torchvision {self.backbone}")
        return backbone

    def __call__(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Same as :meth:`convert` (a WeightsSpec factory may also be called as a function)."""
        return self.convert(state_dict)

    def __repr__(self) -> str:
        return f"TorchvisionResNetConverter({self.backbone!r})"


IMAGENET_RESNET18 = TorchvisionResNetConverter("resnet18")
IMAGENET_RESNET34 = TorchvisionResNetConverter("resnet34")
IMAGENET_RESNET50 = TorchvisionResNetConverter("resnet50")
IMAGENET_RESNET101 = TorchvisionResNetConverter("resnet101")
