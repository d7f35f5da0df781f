"""bupose-swin: Swin Transformer backbones (Swin-T, Swin-L) in the official key layout.

Importing ``bupose.swin`` is cheap (no torch); the names below load on first access.

- Models: :class:`SwinTransformer`, :func:`build_swin`, :func:`swin_t`, :func:`swin_l`, the presets
  in :data:`PRESETS` / :class:`SwinConfig`; building blocks :class:`WindowAttention`,
  :class:`SwinBlock`, :class:`PatchMerging`, :func:`relative_position_index`,
  :func:`shifted_window_mask`.
- Original ImageNet files (:mod:`bupose.swin.pretrained`): :func:`convert_imagenet`,
  :func:`load_imagenet_pretrained`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PRESETS": "bupose.swin.config",
    "SwinConfig": "bupose.swin.config",
    "output_shapes": "bupose.swin.config",
    "swin_config": "bupose.swin.config",
    "PatchMerging": "bupose.swin.model",
    "SwinBlock": "bupose.swin.model",
    "SwinTransformer": "bupose.swin.model",
    "WindowAttention": "bupose.swin.model",
    "build_swin": "bupose.swin.model",
    "relative_position_index": "bupose.swin.model",
    "shifted_window_mask": "bupose.swin.model",
    "swin_l": "bupose.swin.model",
    "swin_t": "bupose.swin.model",
    "SwinImageNetConverter": "bupose.swin.pretrained",
    "convert_imagenet": "bupose.swin.pretrained",
    "expected_shapes": "bupose.swin.pretrained",
    "load_imagenet_pretrained": "bupose.swin.pretrained",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bupose.swin' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
