"""bupose-resnet: ResNet-18/34/50/101 backbones in the torchvision key layout.

Importing ``bupose.resnet`` is cheap (no torch); the names below load on first access.

- Models: :class:`ResNet`, :func:`build_resnet`, :func:`resnet18` ... :func:`resnet101`,
  :class:`FrozenBatchNorm2d`, the presets in :data:`PRESETS` / :class:`ResNetConfig`.
- torchvision ImageNet files (:mod:`bupose.resnet.pretrained`): :func:`convert_torchvision`,
  :func:`load_imagenet_pretrained`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PRESETS": "bupose.resnet.config",
    "ResNetConfig": "bupose.resnet.config",
    "output_shapes": "bupose.resnet.config",
    "resnet_config": "bupose.resnet.config",
    "FrozenBatchNorm2d": "bupose.resnet.model",
    "ResNet": "bupose.resnet.model",
    "build_resnet": "bupose.resnet.model",
    "resnet18": "bupose.resnet.model",
    "resnet34": "bupose.resnet.model",
    "resnet50": "bupose.resnet.model",
    "resnet101": "bupose.resnet.model",
    "TorchvisionResNetConverter": "bupose.resnet.pretrained",
    "convert_torchvision": "bupose.resnet.pretrained",
    "expected_shapes": "bupose.resnet.pretrained",
    "load_imagenet_pretrained": "bupose.resnet.pretrained",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bupose.resnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
