"""bupose-dekr: DEKR (Disentangled Keypoint Regression) for bupose.

``bupose.dekr.model`` (DEKRHead, AdaptBlock, PredictOKSNet), ``bupose.dekr.convert`` (official
checkpoints), ``bupose.dekr.targets`` / ``bupose.dekr.codec`` (training targets and loss),
``bupose.dekr.decode`` / ``bupose.dekr.pipeline`` (inference). Submodules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "DEKRHead": "bupose.dekr.model",
    "AdaptBlock": "bupose.dekr.model",
    "PredictOKSNet": "bupose.dekr.model",
    "dekr_loss": "bupose.dekr.model",
    "DEKRCodec": "bupose.dekr.codec",
    "from_official": "bupose.dekr.convert",
    "to_official": "bupose.dekr.convert",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bupose.dekr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
