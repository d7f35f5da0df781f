"""bupose-centergroup: CenterGroup (Center-Keypoint Grouping via Attention, ICCV 2021) for bupose.

``bupose.centergroup.model`` (CenterGroupHead), ``.grouping`` (GroupingModel), ``.nodes`` (node
extraction), ``.decode`` (flip merge, pose score, adjust), ``.pipeline`` (inference), ``.convert``
(official checkpoints), ``.train`` (targets and losses), ``.codec``. Submodules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CenterGroupHead": "bupose.centergroup.model",
    "GroupingModel": "bupose.centergroup.grouping",
    "CenterGroupPipeline": "bupose.centergroup.pipeline",
    "from_official": "bupose.centergroup.convert",
    "to_official": "bupose.centergroup.convert",
    "load_detector": "bupose.centergroup.convert",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bupose.centergroup' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
