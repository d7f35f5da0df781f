"""bupose-logocap: LOGO-CAP (Local-Global Contextual Adaptation) for bupose.

``bupose.logocap.model`` (LogoCapHead, AttnBatchNorm2d), ``bupose.logocap.convert`` (official
checkpoints), ``bupose.logocap.decode`` / ``bupose.logocap.pipeline`` (inference).
Submodules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "LogoCapHead": "bupose.logocap.model",
    "AttnBatchNorm2d": "bupose.logocap.model",
    "from_official": "bupose.logocap.convert",
    "to_official": "bupose.logocap.convert",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bupose.logocap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
