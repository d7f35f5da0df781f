"""bupose-simplepose: SimplePose (Li, Su, Wang, AAAI 2020) for bupose.

``bupose.simplepose.model`` (IMHN backbone, SimplePoseHead), ``bupose.simplepose.convert`` (official
checkpoint), ``bupose.simplepose.grouping`` (fast limb grouping), ``bupose.simplepose.pipeline``
(official inference), ``bupose.simplepose.targets`` / ``bupose.simplepose.loss`` (training).
Submodules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "IMHN": "bupose.simplepose.model",
    "SimplePoseHead": "bupose.simplepose.model",
    "from_official": "bupose.simplepose.convert",
    "to_official": "bupose.simplepose.convert",
    "group_people": "bupose.simplepose.grouping",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bupose.simplepose' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
