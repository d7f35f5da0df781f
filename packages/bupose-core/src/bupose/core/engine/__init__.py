"""The training engine: configuration, the DDP training loop, checkpoints and model evaluation.

``bupose train`` and ``bupose eval`` (model mode) are thin wrappers over this package::

    from bupose.core.engine import load_config, train
    cfg = load_config("run.toml", ["head=dekr", "backbone=hrnet_w18_small", "data=...", "out=runs/a"])
    result = train(cfg)

Names are loaded on first access so that importing the package is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "ConfigError": "bupose.core.engine.config",
    "TrainConfig": "bupose.core.engine.config",
    "load_config": "bupose.core.engine.config",
    "apply_overrides": "bupose.core.engine.config",
    "Trainer": "bupose.core.engine.trainer",
    "TrainComponents": "bupose.core.engine.trainer",
    "TrainResult": "bupose.core.engine.trainer",
    "build_components": "bupose.core.engine.build",
    "check_config": "bupose.core.engine.build",
    "train": "bupose.core.engine.build",
    "evaluate_model": "bupose.core.engine.evaluation",
    "predict_dataset": "bupose.core.engine.evaluation",
}

__all__ = [
    "ConfigError",
    "TrainComponents",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_overrides",
    "build_components",
    "check_config",
    "evaluate_model",
    "load_config",
    "predict_dataset",
    "train",
]

if TYPE_CHECKING:  # pragma: no cover
    from .build import build_components, check_config, train
    from .config import ConfigError, TrainConfig, apply_overrides, load_config
    from .evaluation import evaluate_model, predict_dataset
    from .trainer import TrainComponents, Trainer, TrainResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bupose.core.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
