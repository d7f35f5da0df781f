"""``Batch``: what a model sees — images, their padding mask, per-image metadata, instances, targets.

One object travels from the data loader through ``PoseModel.forward``, ``Head.forward`` and
``Head.loss``, so a head that needs more than dense maps (ground-truth people for matching, the pad
mask for attention, the augmentation affine) gets it without a new argument anywhere.

:func:`collate` builds a Batch from the per-sample items the training dataset yields::

    {"image": (3, H, W) float tensor,          # required
     "pad_mask": (H, W) bool tensor,           # optional, True = padding
     "dense": {name: tensor},                  # fixed-shape targets, stacked over the batch
     "instances": {name: (N_i, ...) tensor},   # per-image, kept as a list (N_i differs)
     "meta": {key: value}}                     # per-image, kept as a list

Any other key is an error naming it (nothing is dropped silently).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["ITEM_KEYS", "Batch", "collate"]

ITEM_KEYS = ("image", "pad_mask", "dense", "instances", "meta")
"""The keys a per-sample item given to :func:`collate` may have."""


def _move(t: torch.Tensor, device: torch.device | str, non_blocking: bool) -> torch.Tensor:
    return t.to(device, non_blocking=non_blocking)


@dataclass
class Batch:
    """A batch of B images and everything a head may need about them.

    - ``images`` (B, 3, H, W) normalised float;
    - ``pad_mask`` (B, H, W) bool, True where a pixel is padding (DETR's convention), or ``None``
      when no image is padded;
    - ``metas`` one dict per image: ``image_id`` (when known), ``image_hw`` (the original image),
      ``input_hw`` (the un-padded network input), ``matrix`` (2, 3) image pixels -> input pixels,
      horizontal flip included (when known), ``flipped``; without any, each image gets
      ``input_hw`` = ``image_hw`` = (H, W) and ``flipped`` False;
    - ``instances`` one dict per image of per-person tensors (``keypoints`` (N, J, 3) in input
      pixels, ``areas`` (N,), ``boxes`` (N, 4)...), kept as a list because N differs; empty at
      inference;
    - ``targets`` dense training targets stacked over the batch (each (B, ...)).
    """

    images: torch.Tensor
    pad_mask: torch.Tensor | None = None
    metas: list[dict[str, Any]] = field(default_factory=list)
    instances: list[dict[str, torch.Tensor]] = field(default_factory=list)
    targets: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.ndim != 4:
            shape = tuple(self.images.shape) if isinstance(self.images, torch.Tensor) else type(self.images).__name__
            raise ValueError(f"Batch.images must be a (B, 3, H, W) tensor, got {shape}")
        b, _, h, w = self.images.shape
        if self.pad_mask is not None and (
            self.pad_mask.dtype != torch.bool or tuple(self.pad_mask.shape) != (b, h, w)
        ):
            raise ValueError(
                f"Batch.pad_mask must be a ({b}, {h}, {w}) bool tensor (True = padding), got "
                f"{self.pad_mask.dtype} {tuple(self.pad_mask.shape)}"
            )
        if not self.metas:
            self.metas = [{"image_hw": (h, w), "input_hw": (h, w), "flipped": False} for _ in range(b)]
        else:
            self.metas = list(self.metas)
        if len(self.metas) != b:
            raise ValueError(f"Batch.metas has {len(self.metas)} entries for {b} images")
        self.instances = list(self.instances)
        if self.instances and len(self.instances) != b:
            raise ValueError(f"Batch.instances has {len(self.instances)} entries for {b} images")
        for name, t in self.targets.items():
            if not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != b:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"Batch.targets[{name!r}] must be a tensor with {b} rows, got {shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy with every tensor (images, mask, instances, targets) on ``device``; metas are shared."""
        return Batch(
            images=_move(self.images, device, non_blocking),
            pad_mask=None if self.pad_mask is None else _move(self.pad_mask, device, non_blocking),
            metas=self.metas,
            instances=[{k: _move(v, device, non_blocking) for k, v in inst.items()} for inst in self.instances],
            targets={k: _move(v, device, non_blocking) for k, v in self.targets.items()},
        )

    def pin_memory(self) -> Batch:
        """Page-locked copies of the tensors (called by ``DataLoader(pin_memory=True)``)."""
        return Batch(
            images=self.images.pin_memory(),
            pad_mask=None if self.pad_mask is None else self.pad_mask.pin_memory(),
            metas=self.metas,
            instances=[{k: v.pin_memory() for k, v in inst.items()} for inst in self.instances],
            targets={k: v.pin_memory() for k, v in self.targets.items()},
        )

    @property
    def device(self) -> torch.device:
        return self.images.device


def _as_tensor(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (bool, int, float)):
        return torch.as_tensor(value)
    raise TypeError(f"collate: {where} must be a tensor or a numeric array, got {type(value).__name__}")


def _pad_to(images: list[torch.Tensor], masks: list[torch.Tensor | None], multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    h = max(int(t.shape[1]) for t in images)
    w = max(int(t.shape[2]) for t in images)
    h = -(-h // multiple) * multiple
    w = -(-w // multiple) * multiple
    out = images[0].new_zeros((len(images), images[0].shape[0], h, w))
    pad = torch.ones((len(images), h, w), dtype=torch.bool)
    for i, (t, m) in enumerate(zip(images, masks, strict=True)):
        ih, iw = t.shape[1:]
        out[i, :, :ih, :iw] = t
        pad[i, :ih, :iw] = False if m is None else m
    return out, pad


def collate(items: Sequence[Mapping[str, Any]], *, size_divisibility: int = 1) -> Batch:
    """Build a :class:`Batch` from per-sample items (see the module docstring).

    Images of one size are stacked (``pad_mask`` is ``None`` unless an item has one); images of
    different sizes, or any size when ``size_divisibility`` > 1, are padded bottom-right with zeros
    to the largest size rounded up to that multiple, and ``pad_mask`` marks the padding. Dense fields
    must have the same shape in every item (else a ``ValueError`` naming the field); instance
    fields stay per-image; every item must have the same dense and instance field names.
    """
    if not items:
        raise ValueError("collate: no items")
    if size_divisibility < 1:
        raise ValueError(f"collate: size_divisibility must be >= 1, got {size_divisibility}")
    images: list[torch.Tensor] = []
    masks: list[torch.Tensor | None] = []
    metas: list[dict[str, Any]] = []
    instances: list[dict[str, torch.Tensor]] = []
    dense: list[dict[str, torch.Tensor]] = []
    dense_names: list[str] | None = None
    inst_names: set[str] | None = None
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(f"collate: item {i} must be a mapping with keys {', '.join(ITEM_KEYS)}")
        unknown = [k for k in item if k not in ITEM_KEYS]
        if unknown:
            raise ValueError(
                f"collate: item {i} has field(s) {', '.join(map(repr, unknown))} that are neither the image, "
                f"its pad_mask, dense targets, instances nor meta; put them under 'dense', 'instances' or 'meta'"
            )
        if "image" not in item:
            raise ValueError(f"collate: item {i} has no 'image'")
        img = _as_tensor(item["image"], f"item {i} 'image'")
        if img.ndim != 3:
            raise ValueError(f"collate: item {i} 'image' must be (C, H, W), got {tuple(img.shape)}")
        images.append(img)
        m = item.get("pad_mask")
        if m is not None:
            m = _as_tensor(m, f"item {i} 'pad_mask'").bool()
            if tuple(m.shape) != tuple(img.shape[1:]):
                raise ValueError(f"collate: item {i} 'pad_mask' is {tuple(m.shape)}, its image {tuple(img.shape[1:])}")
        masks.append(m)
        meta = dict(item.get("meta") or {})
        meta.setdefault("input_hw", (int(img.shape[1]), int(img.shape[2])))
        meta.setdefault("image_hw", meta["input_hw"])
        meta.setdefault("flipped", False)
        metas.append(meta)
        d = {k: _as_tensor(v, f"dense field {k!r} of item {i}") for k, v in dict(item.get("dense") or {}).items()}
        if dense_names is None:
            dense_names = list(d)
        elif set(d) != set(dense_names):
            raise ValueError(f"collate: item {i} has dense fields {sorted(d)}, item 0 has {sorted(dense_names)}")
        dense.append(d)
        inst = {
            k: _as_tensor(v, f"instance field {k!r} of item {i}") for k, v in dict(item.get("instances") or {}).items()
        }
        if inst_names is None:
            inst_names = set(inst)
        elif set(inst) != inst_names:
            raise ValueError(f"collate: item {i} has instance fields {sorted(inst)}, item 0 has {sorted(inst_names)}")
        instances.append(inst)

    targets: dict[str, torch.Tensor] = {}
    for name in dense_names or []:
        values = [d[name] for d in dense]
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) != 1:
            raise ValueError(
                f"collate: dense field {name!r} has different shapes in one batch ({sorted(shapes)}); "
                "the codec must give it a fixed size (or return it as an instance field)"
            )
        targets[name] = torch.stack(values)

    same_size = len({tuple(t.shape) for t in images}) == 1
    if same_size and size_divisibility == 1 and all(m is None for m in masks):
        stacked, pad_mask = torch.stack(images), None
    elif same_size and size_divisibility == 1:
        stacked = torch.stack(images)
        pad_mask = torch.stack([torch.zeros(t.shape[1:], dtype=torch.bool) if m is None else m for t, m in zip(images, masks, strict=True)])
    else:
        if len({t.shape[0] for t in images}) != 1:
            raise ValueError(f"collate: images have different channel counts {sorted({t.shape[0] for t in images})}")
        stacked, pad_mask = _pad_to(images, masks, size_divisibility)
    return Batch(
        images=stacked,
        pad_mask=pad_mask,
        metas=metas,
        instances=instances if any(instances) else [],
        targets=targets,
    )
