"""SimplePose's training augmentation ranges on core's bottom-up random affine.

The official ``TransformationParams`` (``config/config.py``): scale in [0.7, 1.3] (applied with
probability 0.8, relative to the main person brought to 0.6 of the crop), rotation +-40 degrees, centre
perturbation 50 px, flip 0.5, HSV tint 0.2. Core's :class:`~bupose.core.data.transforms.BottomUpRandomAffine`
takes the scale from the image's short side, always applies it and has no colour jitter, so the ranges
are the official ones and the rest is core's rule.
"""

from __future__ import annotations

from typing import Any

from bupose.core.data.transforms import BottomUpRandomAffine

__all__ = ["OFFICIAL_RANGES", "simplepose_augmentation"]

OFFICIAL_RANGES: dict[str, Any] = {"scale_range": (0.7, 1.3), "max_rotation": 40.0, "max_translate": 50.0, "flip_prob": 0.5}


def simplepose_augmentation(input_size: int, **kwargs: Any) -> BottomUpRandomAffine:
    """The training transform with the official ranges; any keyword (``TrainConfig.augment``) wins."""
    return BottomUpRandomAffine(input_size, **{**OFFICIAL_RANGES, **kwargs})
