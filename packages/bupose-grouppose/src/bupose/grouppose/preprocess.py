"""The official val preprocessing: DETR resize with Pillow, ImageNet normalisation, padded batches.

``RandomResize([800], max_size=1333)`` -> ``ToTensor`` -> ``Normalize`` (``datasets/coco.py``,
``datasets/transforms.py``): the size rule is core's :func:`~bupose.core.algorithms.geometry.
short_side_resize_size` (Python ``round`` half to even, truncated long side); the pixels come from
Pillow's bilinear resize (what torchvision's ``F.resize`` runs on a PIL image, antialiased when
shrinking), so results match the official pipeline exactly for the same Pillow version.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from bupose.core.algorithms.geometry import short_side_resize_size
from bupose.core.algorithms.image import normalize_images
from bupose.core.batch import Batch, collate

__all__ = ["DEFAULT_MAX_SIZE", "DEFAULT_SHORT_SIDE", "default_max_size", "pad_batch", "resize_image", "to_network_input"]

DEFAULT_SHORT_SIDE = 800
DEFAULT_MAX_SIZE = 1333


def default_max_size(short_side: int) -> int:
    """1333 for the official 800; scaled in proportion for other short sides."""
    return DEFAULT_MAX_SIZE if short_side == DEFAULT_SHORT_SIDE else round(short_side * DEFAULT_MAX_SIZE / DEFAULT_SHORT_SIDE)


def resize_image(image: np.ndarray, size: int, max_size: int | None) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> resized by the DETR rule with Pillow bilinear (unchanged when the
    short side already equals the target)."""
    from PIL import Image

    h, w = image.shape[:2]
    rh, rw = short_side_resize_size((h, w), size, max_size)
    if (rh, rw) == (h, w):
        return np.ascontiguousarray(image)
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((rw, rh), Image.Resampling.BILINEAR))


def to_network_input(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> normalised float32 (3, H, W) (ToTensor + ImageNet Normalize)."""
    return normalize_images([image], device)[0].contiguous()


def pad_batch(tensors: Sequence[torch.Tensor], metas: Sequence[dict] | None = None) -> Batch:
    """(3, h_i, w_i) tensors -> one Batch padded bottom-right with zeros to the largest h and w, with
    the pad mask (True = padding): ``nested_tensor_from_tensor_list``. Equal sizes give an all-False mask."""
    items = [{"image": t, "pad_mask": torch.zeros(t.shape[1:], dtype=torch.bool)} for t in tensors]
    if metas is not None:
        for item, meta in zip(items, metas, strict=True):
            item["meta"] = dict(meta)
    return collate(items)
