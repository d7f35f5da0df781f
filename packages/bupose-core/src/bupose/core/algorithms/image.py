"""Network-input images: batching uint8 images and mean/std normalisation.

The one definition of the ImageNet statistics (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`, RGB
order, in [0, 1] units) lives here. :func:`normalize_images` gives the same float32 values as
torchvision's ``ToTensor()`` followed by ``Normalize(mean, std)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "batch_images", "normalize", "normalize_images"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
"""ImageNet channel means (RGB, images scaled to [0, 1])."""
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
"""ImageNet channel standard deviations (RGB, images scaled to [0, 1])."""

ChannelOrder = Literal["rgb", "bgr"]


def batch_images(images: Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """Stack equally sized (H, W, 3) arrays into one (B, 3, H, W) tensor of their dtype on ``device``."""
    if len(images) == 0:
        raise ValueError("batch_images needs at least one image")
    shapes = {np.shape(im) for im in images}
    if len(shapes) != 1:
        raise ValueError(f"batch_images: images must share one size, got shapes {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"batch_images: expected (H, W, 3) images, got shape {shape}")
    arr = torch.from_numpy(np.ascontiguousarray(np.stack(images, axis=0))).to(device)
    return arr.permute(0, 3, 1, 2)


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    *,
    divide: float | None = 255.0,
    input_order: ChannelOrder = "rgb",
    output_order: ChannelOrder = "rgb",
) -> torch.Tensor:
    """(B, 3, H, W) (or (3, H, W)) images -> float32 ``(x / divide - mean) / std``.

    ``mean``/``std`` are in ``output_order`` channel order; ``None`` skips that step (SimplePose
    only divides by 255). ``input_order != output_order`` swaps the channels first.
    """
    if x.shape[-3] != 3:
        raise ValueError(f"normalize: expected 3 channels at dim -3, got shape {tuple(x.shape)}")
    if input_order != output_order:
        x = x.flip(-3)
    y = x.to(torch.float32)
    if y.data_ptr() == x.data_ptr():
        y = y.clone()
    if divide is not None:
        y.div_(float(divide))
    view = (3, 1, 1)
    if mean is not None:
        y.sub_(torch.tensor(tuple(mean), dtype=torch.float32, device=y.device).view(view))
    if std is not None:
        y.div_(torch.tensor(tuple(std), dtype=torch.float32, device=y.device).view(view))
    return y


def normalize_images(
    images: Sequence[np.ndarray],
    device: torch.device | str = "cpu",
    *,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    divide: float | None = 255.0,
    input_order: ChannelOrder = "rgb",
    output_order: ChannelOrder = "rgb",
) -> torch.Tensor:
    """Equally sized uint8 (H, W, 3) arrays -> one normalised float32 (B, 3, H, W) batch
    (:func:`batch_images` then :func:`normalize`)."""
    if len(images) == 0:
        raise ValueError("normalize_images needs at least one image")
    x = batch_images(images, device)
    return normalize(x, mean, std, divide=divide, input_order=input_order, output_order=output_order)
