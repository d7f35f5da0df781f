"""From a :class:`TrainConfig` to the pieces the loop trains on, checking everything first.

:func:`check_config` opens the datasets, resolves the head, backbone, layout, codec and
augmentation, and turns every problem into a one-line :class:`ConfigError` before any training.

The head class supplies the training pieces it declares (``augmentation``, ``train_defaults``; its
``param_group_rules()`` are applied by the trainer once the model exists); the codec is built as
``Codec(layout=..., input_size=..., **codec_kwargs)`` and sizes the augmentation through
``output_sizes``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..codec import Codec
from ..model import DEFAULT_AUGMENTATION, TRAIN_DEFAULT_KEYS, PoseModel, build_model
from ..plugins import Registry, UnknownComponentError, get_registry
from ..specs import HeadSpec, import_object
from .config import ConfigError, TrainConfig
from .trainer import TrainComponents, Trainer, TrainResult

__all__ = ["TrainPlan", "build_components", "check_config", "train"]


@dataclass
class TrainPlan:
    """The checked, resolved parts of a configuration."""

    config: TrainConfig
    head_spec: HeadSpec
    layout: str
    train_set: Any
    val_set: Any | None
    codec: Any
    transform: Any
    augmentation: str = DEFAULT_AUGMENTATION
    train_defaults: dict[str, Any] | None = None
    size_divisibility: int = 1
    """The backbone's ``BackboneSpec.size_divisibility``: training batches are padded to it."""


def _open_dataset(spec: str, key: str, layout: str | None) -> Any:
    from ..data.dataset import load_dataset, resolve_spec

    try:
        ann = Path(resolve_spec(spec)["annotations"])
    except ValueError as exc:
        raise ConfigError(f"config: {key}: {exc}") from None
    if not ann.is_file():
        raise ConfigError(f"config: {key}: dataset annotations {ann} not found (from {key}={spec!r})")
    try:
        dataset = load_dataset(spec, layout=layout)
    except (ValueError, OSError, KeyError) as exc:
        raise ConfigError(f"config: {key}: {exc}".replace("\n", " ")) from None
    missing = [(i, dataset.image_path(i)) for i in dataset.image_ids if not dataset.image_path(i).is_file()]
    if missing:  # found now, not at the first batch that needs one of them
        iid, path = missing[0]
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ConfigError(
            f"config: {key}: {dataset.path}: image id {iid}: image file {path} is missing{more} "
            f"({len(missing)} of {len(dataset.image_ids)} images)"
        )
    return dataset


def check_config(cfg: TrainConfig, *, registry: Registry | None = None) -> TrainPlan:
    """Resolve and check everything a run needs; :class:`ConfigError` (one line) on any problem."""
    cfg.validate()
    registry = registry or get_registry()
    try:
        head_spec = registry.get("heads", cfg.head)
        backbone_spec = registry.get("backbones", cfg.backbone)
        if cfg.layout is not None:
            registry.get("layouts", cfg.layout)
    except UnknownComponentError as exc:
        raise ConfigError(f"config: {exc}") from None
    assert isinstance(head_spec, HeadSpec)
    if head_spec.codec is None:
        raise ConfigError(f"config: head {cfg.head!r} declares no codec, so it cannot be trained")
    if cfg.init_weights is not None and not Path(cfg.init_weights).is_file():
        raise ConfigError(f"config: init_weights {cfg.init_weights} not found")
    if cfg.init_backbone is not None and not Path(cfg.init_backbone).is_file():
        raise ConfigError(f"config: init_backbone {cfg.init_backbone} not found")
    if cfg.init_weights is not None and cfg.init_backbone is not None:
        raise ConfigError("config: set init_weights (whole model) or init_backbone (backbone only), not both")

    train_set = _open_dataset(cfg.data, "data", cfg.layout)
    layout = train_set.layout.name
    if layout not in head_spec.layouts:
        raise ConfigError(
            f"config: head {cfg.head!r} does not support layout {layout!r} (of data {cfg.data}); "
            f"it supports: {', '.join(head_spec.layouts)}"
        )
    val_set = None
    if cfg.val_data is not None:
        if head_spec.pipeline is None:
            raise ConfigError(f"config: head {cfg.head!r} has no inference pipeline, so val_data cannot be used")
        val_set = _open_dataset(cfg.val_data, "val_data", layout)
        if val_set.layout.name != layout:
            raise ConfigError(
                f"config: val_data has layout {val_set.layout.name!r} but data has {layout!r}"
            )
    head_cls = _import(head_spec.factory, f"head {cfg.head!r}")
    augmentation = str(getattr(head_cls, "augmentation", DEFAULT_AUGMENTATION))
    train_defaults = dict(getattr(head_cls, "train_defaults", {}) or {})
    unknown = sorted(set(train_defaults) - set(TRAIN_DEFAULT_KEYS))
    if unknown:
        raise ConfigError(
            f"config: head {cfg.head!r} declares train_defaults {', '.join(unknown)}; "
            f"known: {', '.join(TRAIN_DEFAULT_KEYS)}"
        )
    if cfg.param_groups is not None:
        from .params import parse_rules

        parse_rules(cfg.param_groups)
    try:
        codec = _import(head_spec.codec, f"head {cfg.head!r} codec")(
            layout=layout, input_size=cfg.input_size, **cfg.codec_kwargs
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"config: codec_kwargs for {head_spec.codec}: {exc}") from None
    if not isinstance(codec, Codec):
        missing = [a for a in ("layout", "sample_keys", "output_fields", "output_sizes", "encode", "decode")
                   if not hasattr(codec, a)]
        raise ConfigError(
            f"config: the codec {head_spec.codec} of head {cfg.head!r} does not implement "
            f"bupose.core.codec.Codec (it lacks {', '.join(missing)})"
        )
    factory = _import(augmentation, f"head {cfg.head!r} augmentation")
    try:
        sizes = dict(codec.output_sizes(cfg.input_size))
        transform = factory(cfg.input_size, layout=train_set.layout, output_sizes=sizes, **cfg.augment)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config: augment: {exc} (augmentation {augmentation})") from None
    return TrainPlan(
        cfg,
        head_spec,
        layout,
        train_set,
        val_set,
        codec,
        transform,
        augmentation,
        train_defaults,
        size_divisibility=int(getattr(backbone_spec, "size_divisibility", 1) or 1),
    )


def _import(path: str, what: str) -> Any:
    try:
        return import_object(path)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"config: {what}: cannot import {path} ({type(exc).__name__}: {exc})") from None


def _make_model(cfg: TrainConfig, layout: str) -> PoseModel:
    model = build_model(
        cfg.head, cfg.backbone, layout, head_kwargs=cfg.head_kwargs, backbone_kwargs=cfg.backbone_kwargs
    )
    model.config["input_size"] = cfg.input_size
    if cfg.init_weights is not None:
        from ..inference import load_weights

        load_weights(model, cfg.init_weights)
    if cfg.init_backbone is not None:
        from ..inference import load_backbone_weights

        load_backbone_weights(model, cfg.init_backbone)
    return model


def _evaluate(model: PoseModel, *, val_set: Any, cfg: TrainConfig) -> dict[str, float]:
    from .evaluation import evaluate_model

    _, metrics = evaluate_model(
        model,
        val_set,
        pipeline_kwargs=cfg.pipeline_kwargs,
        batch_size=cfg.eval_batch_size,
        max_images=cfg.max_val_images,
        progress=cfg.progress,
    )
    return metrics


def build_components(plan: TrainPlan) -> TrainComponents:
    """The model factory, data, codec, augmentation and evaluator of a checked plan."""
    from ..data.transforms import to_tensor

    cfg = plan.config
    evaluator = (
        functools.partial(_evaluate, val_set=plan.val_set, cfg=cfg) if plan.val_set is not None else None
    )
    return TrainComponents(
        model_factory=functools.partial(_make_model, cfg, plan.layout),
        train_set=plan.train_set,
        encode=plan.codec.encode,
        to_tensor=to_tensor,
        transform=plan.transform,
        evaluator=evaluator,
        train_defaults=dict(plan.train_defaults or {}),
        sample_keys=tuple(plan.codec.sample_keys),
        size_divisibility=plan.size_divisibility,
    )


def train(cfg: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Check ``cfg``, build everything and train (one process, or this rank of a torchrun job)."""
    plan = check_config(cfg)
    return Trainer(cfg, build_components(plan), resume=resume).fit()
