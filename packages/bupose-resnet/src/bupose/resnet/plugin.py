"""The bupose plugin of bupose-resnet: ResNet backbones and torchvision ImageNet weights specs.

Imports no torch: outputs are declared from the torch-free presets in :mod:`bupose.resnet.config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bupose.core import BackboneSpec, WeightsSpec, hookimpl

from .config import PRESETS, SIZE_DIVISIBILITY, output_shapes

_TORCHVISION = "https://download.pytorch.org/models"

# torchvision's ImageNet files per depth: IMAGENET1K_V1 (current name), the older release of the
# same weights, and IMAGENET1K_V2 where it exists. All have the same key layout.
_FILES: dict[str, tuple[str, ...]] = {
    "resnet18": ("resnet18-f37072fd.pth", "resnet18-5c106cde.pth"),
    "resnet34": ("resnet34-b627a593.pth", "resnet34-333f7ec4.pth"),
    "resnet50": ("resnet50-0676ba61.pth", "resnet50-19c8e357.pth", "resnet50-11ad3fa6.pth"),
    "resnet101": ("resnet101-63fe2227.pth", "resnet101-5d3b4d8f.pth", "resnet101-cd907fc2.pth"),
}


def _spec_extras() -> dict[str, Any]:
    """``size_divisibility`` for core versions whose BackboneSpec has that field."""
    names = {f.name for f in dataclasses.fields(BackboneSpec)}
    return {"size_divisibility": SIZE_DIVISIBILITY} if "size_divisibility" in names else {}


@hookimpl
def bupose_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    """``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` (outputs ``c2..c5``)."""
    for name, config in PRESETS.items():
        register(
            BackboneSpec(
                name=name,
                factory=f"bupose.resnet.model:{name}",
                summary=config.description,
                outputs=output_shapes(config),
                **_spec_extras(),
            )
        )


@hookimpl
def bupose_register_weights(register: Callable[[WeightsSpec], None]) -> None:
    """torchvision's ImageNet classification ResNets (``fc`` dropped on conversion)."""
    for name, files in _FILES.items():
        depth = name.removeprefix("resnet")
        register(
            WeightsSpec(
                name=f"{name}_imagenet",
                factory=f"bupose.resnet.pretrained:IMAGENET_RESNET{depth}",
                summary=f"torchvision ImageNet ResNet-{depth} (BSD-3-Clause code; ImageNet terms apply to the weights)",
                backbone=name,
                file_names=files,
                source=f"torchvision: {_TORCHVISION}/{files[0]} (older release: {_TORCHVISION}/{files[1]})",
                role="backbone",
                hash_in_name=True,  # torch.hub names carry the first 8 hex digits of the sha256
                source_page="https://pytorch.org/vision/stable/models.html",
                licence="BSD-3-Clause (torchvision code); ImageNet terms apply to the weights",
            )
        )
