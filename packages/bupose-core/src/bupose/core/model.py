"""Backbone and head base classes and ``build_model``, which composes them by name.

A backbone and a head never import each other: the head is sized from the backbone's declared
outputs (``Backbone.output_shape()``), and they meet only here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .batch import Batch
from .plugins import Registry, get_registry
from .specs import BackboneSpec, FeatureShape, HeadSpec, LayoutSpec

__all__ = [
    "DEFAULT_AUGMENTATION",
    "TRAIN_DEFAULT_KEYS",
    "Backbone",
    "ConcatInput",
    "Head",
    "LayoutMismatchError",
    "ParamGroupRule",
    "PoseModel",
    "build_backbone",
    "build_head",
    "build_model",
    "concat_at_finest",
]


class LayoutMismatchError(ValueError):
    """A head was asked for a layout it does not support."""


class Backbone(nn.Module):
    """A feature extractor returning named feature maps (``dict[str, Tensor]``).

    ``size_divisibility``: input height and width must be multiples of it (detectron2's rule);
    :func:`build_backbone` sets it from ``BackboneSpec.size_divisibility``.
    """

    size_divisibility: int = 1

    def output_shape(self) -> dict[str, FeatureShape]:
        """Channels and stride of every output, by name."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


DEFAULT_AUGMENTATION = "bupose.core.data.transforms:BottomUpRandomAffine"
"""The training augmentation a head gets unless it names another (the bottom-up random affine + flip)."""

TRAIN_DEFAULT_KEYS = ("optimizer", "lr", "weight_decay", "lr_schedule", "lr_milestones", "lr_factor")
"""The keys a head's ``train_defaults`` may set (the same-named ``TrainConfig`` settings win)."""


@dataclass(frozen=True)
class ParamGroupRule:
    """How the optimiser treats the parameters whose PoseModel name starts with ``prefix``
    (``"backbone."``, ``"head.transformer."``); the first matching rule wins.

    ``lr_scale`` multiplies the run's learning rate; ``weight_decay`` replaces the run's weight
    decay (``None``: keep it); ``frozen`` removes the parameters from training
    (``requires_grad=False``); ``freeze_bn`` keeps the batch-norm layers under ``prefix`` in eval
    mode during training (running statistics fixed) and freezes their affine parameters.
    """

    prefix: str
    lr_scale: float = 1.0
    weight_decay: float | None = None
    frozen: bool = False
    freeze_bn: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or not self.prefix:
            raise ValueError(f"ParamGroupRule: prefix must be a non-empty string, got {self.prefix!r}")
        if not self.lr_scale > 0:
            raise ValueError(f"ParamGroupRule {self.prefix!r}: lr_scale must be > 0, got {self.lr_scale}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"ParamGroupRule {self.prefix!r}: weight_decay must be >= 0, got {self.weight_decay}")

    def matches(self, name: str) -> bool:
        """Whether the parameter (or ``module_name + "."``) ``name`` falls under this rule."""
        return name.startswith(self.prefix)


class Head(nn.Module):
    """A pose head: named feature maps in, named output fields out.

    Subclasses are built as ``Head(input_shapes, layout, **kwargs)`` and implement ``forward``
    (features [+ the :class:`~bupose.core.batch.Batch`] -> dict of output tensors) and ``loss``
    (outputs, batch -> dict of named scalar losses whose sum is optimised; the key ``"loss"`` must
    not be used).

    Training pieces a head declares as class attributes (read without building the head):

    - ``augmentation``: ``"module:attr"`` of the training transform factory, called as
      ``factory(input_size, layout=LayoutSpec, output_sizes=codec.output_sizes(input_size),
      **TrainConfig.augment)`` and returning ``transform(sample, rng=...)`` (default: core's
      ``BottomUpRandomAffine``);
    - ``train_defaults``: optimiser and schedule defaults (keys of :data:`TRAIN_DEFAULT_KEYS`);
    - :meth:`param_group_rules`: per-module learning rates, frozen parts and frozen batch norm.
    """

    augmentation: ClassVar[str] = DEFAULT_AUGMENTATION
    train_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, input_shapes: Mapping[str, FeatureShape], layout: LayoutSpec) -> None:
        super().__init__()
        self.input_shapes = dict(input_shapes)
        self.layout = layout

    def forward(
        self, features: Mapping[str, torch.Tensor], batch: Batch | None = None
    ) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """Output fields from the backbone's features; ``batch`` carries the pad mask, metas and (in
        training) the instances."""
        raise NotImplementedError

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Batch
    ) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        """Named scalar losses of ``outputs`` against ``batch.targets`` / ``batch.instances``."""
        raise NotImplementedError

    def param_group_rules(self) -> list[ParamGroupRule]:
        """Optimiser rules over PoseModel parameter names (first match wins); none by default."""
        return []

    def export_parts(self) -> dict[str, torch.Tensor]:
        """Learned sub-modules the head's pipeline runs outside :meth:`forward` (during decoding), for
        ONNX export: attribute name -> an example input (its first dimension varies). Each must be a
        module taking one tensor and returning one; ``bupose export`` writes it as a second graph in
        the same file and the onnxruntime backend puts it back in its place. None by default."""
        return {}


def concat_at_finest(features: Mapping[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """Concatenate feature maps after bilinear resizing (align_corners=False) to the first one's size.

    This is HRNet's stride-4 concatenation and the generic fallback for heads that want one map.
    """
    first = features[names[0]]
    size = first.shape[-2:]
    maps = [first]
    for n in names[1:]:
        f = features[n]
        if f.shape[-2:] != size:
            f = nn.functional.interpolate(f, size=size, mode="bilinear", align_corners=False)
        maps.append(f)
    return torch.cat(maps, dim=1)


class ConcatInput:
    """The one feature map a dense head reads: the backbone's declared ``concat`` output when there is
    one (HRNet), else every declared output resized to the finest stride and concatenated.

    ``names``, ``channels`` and ``stride`` are known from the declared shapes, before any forward.
    """

    def __init__(self, input_shapes: Mapping[str, FeatureShape], who: str) -> None:
        if not input_shapes:
            raise ValueError(f"{who}: the backbone declares no outputs")
        self.who = who
        if "concat" in input_shapes:
            self.names = ["concat"]
        else:
            self.names = sorted(input_shapes, key=lambda n: input_shapes[n].stride)
        self.channels = sum(input_shapes[n].channels for n in self.names)
        self.stride = input_shapes[self.names[0]].stride

    def __call__(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [n for n in self.names if n not in features]
        if missing:
            raise KeyError(f"{self.who}: backbone features lack {missing}; got {sorted(features)}")
        if len(self.names) == 1:
            return features[self.names[0]]
        return concat_at_finest(features, self.names)


class PoseModel(nn.Module):
    """Backbone + head, with the names they were built from."""

    def __init__(
        self,
        backbone: Backbone,
        head: Head,
        *,
        head_name: str,
        backbone_name: str,
        layout: LayoutSpec,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.head_name = head_name
        self.backbone_name = backbone_name
        self.layout = layout
        self.config: dict[str, Any] = dict(config or {})

    def forward(self, batch: Batch | torch.Tensor) -> dict[str, torch.Tensor]:
        """A :class:`~bupose.core.batch.Batch` (or normalised images (B,3,H,W), wrapped as
        ``Batch(images=x)``) -> the head's output fields."""
        if isinstance(batch, torch.Tensor):
            batch = Batch(images=batch)
        return self.head(self.backbone(batch.images), batch)

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """The head's named losses of ``outputs`` against ``batch``."""
        return self.head.loss(outputs, batch)

    def param_group_rules(self) -> list[ParamGroupRule]:
        """The head's optimiser rules (over this model's parameter names)."""
        return list(self.head.param_group_rules())

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint needs to rebuild this model."""
        return {
            "head": self.head_name,
            "backbone": self.backbone_name,
            "layout": self.layout.name,
            "config": self.config,
        }


def _layout(registry: Registry, spec: HeadSpec, layout: str | LayoutSpec | None) -> LayoutSpec:
    if isinstance(layout, LayoutSpec):
        name = layout.name
    else:
        name = layout or spec.layouts[0]
    if name not in spec.layouts:
        raise LayoutMismatchError(
            f"head {spec.name!r} does not support layout {name!r}; it supports: "
            f"{', '.join(spec.layouts)}"
        )
    if isinstance(layout, LayoutSpec):
        return layout
    found = registry.get("layouts", name)
    assert isinstance(found, LayoutSpec)
    return found


def build_backbone(name: str, *, registry: Registry | None = None, **kwargs: Any) -> Backbone:
    """Build a registered backbone by name; ``kwargs`` override the spec's defaults."""
    registry = registry or get_registry()
    spec = registry.get("backbones", name)
    assert isinstance(spec, BackboneSpec)
    backbone = spec.load()(**{**spec.kwargs, **kwargs})
    own = getattr(type(backbone), "size_divisibility", 1)
    if own not in (1, spec.size_divisibility):
        raise ValueError(
            f"backbone {name!r}: the module declares size_divisibility {own}, its spec {spec.size_divisibility}"
        )
    backbone.size_divisibility = spec.size_divisibility
    return backbone


def build_head(
    name: str,
    input_shapes: Mapping[str, FeatureShape],
    layout: str | LayoutSpec | None = None,
    *,
    registry: Registry | None = None,
    **kwargs: Any,
) -> Head:
    """Build a registered head sized for ``input_shapes``."""
    registry = registry or get_registry()
    spec = registry.get("heads", name)
    assert isinstance(spec, HeadSpec)
    lay = _layout(registry, spec, layout)
    return spec.load()(input_shapes, lay, **{**spec.kwargs, **kwargs})


def build_model(
    head: str,
    backbone: str,
    layout: str | LayoutSpec | None = None,
    *,
    head_kwargs: Mapping[str, Any] | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> PoseModel:
    """Compose a registered backbone and head: ``build_model(head="dekr", backbone="hrnet_w32")``.

    ``layout`` defaults to the head's first supported layout. Unknown names raise
    :class:`~bupose.core.plugins.UnknownComponentError` with suggestions; an unsupported layout
    raises :class:`LayoutMismatchError`.
    """
    registry = registry or get_registry()
    head_spec = registry.get("heads", head)
    assert isinstance(head_spec, HeadSpec)
    registry.get("backbones", backbone)  # fail on an unknown backbone before building anything
    lay = _layout(registry, head_spec, layout)
    bb = build_backbone(backbone, registry=registry, **dict(backbone_kwargs or {}))
    hd = build_head(head, bb.output_shape(), lay, registry=registry, **dict(head_kwargs or {}))
    return PoseModel(
        bb,
        hd,
        head_name=head,
        backbone_name=backbone,
        layout=lay,
        config={
            "head_kwargs": dict(head_kwargs or {}),
            "backbone_kwargs": dict(backbone_kwargs or {}),
        },
    )
