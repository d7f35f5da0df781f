"""bupose-hrnet: HRNet and HigherHRNet backbones that load the official weights.

Importing ``bupose.hrnet`` is cheap (no torch); the names below load on first access.

- Models: :class:`HRNet`, :func:`build_hrnet`, the presets in :data:`PRESETS`
  (``hrnet_w18``, ``hrnet_w18_small``, ``hrnet_w32``, ``hrnet_w48``, ``higherhrnet_w32``,
  ``higherhrnet_w48``), :class:`HRNetConfig` / :class:`StageSpec` for any other variant.
- Official key layouts (:mod:`bupose.hrnet.keys`): :func:`split_backbone`, :func:`convert_official`,
  :func:`find_backbone_prefix` (head packages pass their checkpoint's backbone prefix).
- ImageNet-pretrained classification files (:mod:`bupose.hrnet.pretrained`):
  :func:`convert_imagenet`, :func:`load_imagenet_pretrained`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "HRNetConfig": "bupose.hrnet.config",
    "StageSpec": "bupose.hrnet.config",
    "PRESETS": "bupose.hrnet.config",
    "hrnet_config": "bupose.hrnet.config",
    "output_shapes": "bupose.hrnet.config",
    "HRNet": "bupose.hrnet.model",
    "build_hrnet": "bupose.hrnet.model",
    "backbone_keys": "bupose.hrnet.keys",
    "convert_official": "bupose.hrnet.keys",
    "find_backbone_prefix": "bupose.hrnet.keys",
    "split_backbone": "bupose.hrnet.keys",
    "IMAGENET_EXTRA_MODULES": "bupose.hrnet.pretrained",
    "ImageNetHRNetConverter": "bupose.hrnet.pretrained",
    "convert_imagenet": "bupose.hrnet.pretrained",
    "load_imagenet_pretrained": "bupose.hrnet.pretrained",
    "load_backbone_state_dict": "bupose.hrnet.pretrained",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bupose.hrnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
