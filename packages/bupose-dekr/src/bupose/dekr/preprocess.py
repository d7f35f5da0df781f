"""DEKR test-time geometry: the core HRNet-family rule, with DEKR's values.

DEKR (official ``get_multi_scale_size`` with ``min_scale = 1``) uses
:func:`bupose.core.algorithms.geometry.multi_scale_size` with its defaults: the short side goes to
``input_size * s``, the long side to ``floor((input_size / short * long + 63) / 64) * 64 * s``, the
image centre is rounded half up, ``scale`` is in 200-pixel units. The warp is the HRNet
centre/scale affine applied with ``cv2.warpAffine`` (bilinear, zero border); back-projection applies
the inverse affine built for the scale-1 network-input size; the input is ImageNet-normalised RGB.
Everything here is imported from :mod:`bupose.core.algorithms` (one definition each).
"""

from __future__ import annotations

from bupose.core.algorithms.geometry import WarpMeta, back_project, multi_scale_size, warp_image
from bupose.core.algorithms.image import IMAGENET_MEAN, IMAGENET_STD, normalize_images

SIZE_MULTIPLE = 64
"""DEKR rounds the network-input sides to multiples of 64."""

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SIZE_MULTIPLE",
    "WarpMeta",
    "back_project",
    "multi_scale_size",
    "normalize_images",
    "warp_image",
]
