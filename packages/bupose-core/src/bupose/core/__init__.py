"""bupose core: plugin host, registry, model composition, inference, data and evaluation.

Importing ``bupose.core`` is cheap: it imports neither torch nor any plugin. The names below are
loaded on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .hookspecs import hookimpl
from .specs import (
    BackboneSpec,
    DatasetSpec,
    FeatureShape,
    GrouperSpec,
    HeadSpec,
    LayoutSpec,
    OpSpec,
    WeightsSpec,
)

__version__ = "0.1.0"

_LAZY = {
    "get_registry": "bupose.core.plugins",
    "reset_registry": "bupose.core.plugins",
    "UnknownComponentError": "bupose.core.plugins",
    "build_model": "bupose.core.model",
    "build_backbone": "bupose.core.model",
    "build_head": "bupose.core.model",
    "Backbone": "bupose.core.model",
    "Head": "bupose.core.model",
    "PoseModel": "bupose.core.model",
    "ParamGroupRule": "bupose.core.model",
    "Batch": "bupose.core.batch",
    "collate": "bupose.core.batch",
    "Codec": "bupose.core.codec",
    "BaseCodec": "bupose.core.codec",
    "Encoded": "bupose.core.codec",
    "load_model": "bupose.core.inference",
    "Estimator": "bupose.core.inference",
    "Pipeline": "bupose.core.inference",
    "Poses": "bupose.core.poses",
    "get_op": "bupose.core.ops",
}

__all__ = [
    "BackboneSpec",
    "DatasetSpec",
    "FeatureShape",
    "GrouperSpec",
    "HeadSpec",
    "LayoutSpec",
    "OpSpec",
    "WeightsSpec",
    "hookimpl",
    *_LAZY,
]

if TYPE_CHECKING:  # pragma: no cover
    from .batch import Batch, collate
    from .codec import BaseCodec, Codec, Encoded
    from .inference import Estimator, Pipeline, load_model
    from .model import Backbone, Head, ParamGroupRule, PoseModel, build_backbone, build_head, build_model
    from .ops import get_op
    from .plugins import UnknownComponentError, get_registry, reset_registry
    from .poses import Poses


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bupose.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
