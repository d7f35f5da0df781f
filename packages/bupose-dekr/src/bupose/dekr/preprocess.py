"""DEKR test-time geometry: the multi-scale resize rule, the affine warp and its inverse.

The rule (official ``get_multi_scale_size`` with ``min_scale = 1``): the short side goes to
``input_size * s``; the long side to ``floor((input_size / short * long + 63) / 64) * 64 * s``;
the image centre is rounded half up; ``scale`` is in 200-pixel units. The warp is the HRNet
centre/scale affine (built from float32 points with ``cv2.getAffineTransform``), applied with
``cv2.warpAffine`` (bilinear, zero border). Back-projection applies the inverse affine built for
the scale-1 network-input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WarpMeta",
    "affine_matrix",
    "back_project",
    "multi_scale_size",
    "normalize_images",
    "warp_image",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WarpMeta:
    """Geometry of one image at one test scale.

    ``size_wh`` is the network-input size, ``center`` the image centre (x, y) in image pixels and
    ``scale`` (sw, sh) the source extent in 200-pixel units.
    """

    image_hw: tuple[int, int]
    size_wh: tuple[int, int]
    center: tuple[float, float]
    scale: tuple[float, float]


def multi_scale_size(
    image_hw: tuple[int, int], input_size: int, scale_factor: float = 1.0, *, multiple: int = 64
) -> WarpMeta:
    """Network-input size, centre and scale of an ``(h, w)`` image at ``scale_factor``; sides are
    rounded to ``multiple`` (official: 64)."""
    h, w = int(image_hw[0]), int(image_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got (h, w) = ({h}, {w})")
    if input_size <= 0 or scale_factor <= 0:
        raise ValueError(f"input_size and scale_factor must be positive, got {input_size}, {scale_factor}")
    center = (float(int(w / 2.0 + 0.5)), float(int(h / 2.0 + 0.5)))
    m = int(multiple)
    base = int((input_size + m - 1) // m * m)
    if w < h:
        w_out = int(base * scale_factor)
        h_out = int(int((base / w * h + m - 1) // m * m) * scale_factor)
        sw = w / 200.0
        sh = h_out / w_out * w / 200.0
    else:
        h_out = int(base * scale_factor)
        w_out = int(int((base / h * w + m - 1) // m * m) * scale_factor)
        sh = h / 200.0
        sw = w_out / h_out * h / 200.0
    return WarpMeta(image_hw=(h, w), size_wh=(w_out, h_out), center=center, scale=(sw, sh))


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def affine_matrix(
    center: tuple[float, float] | np.ndarray,
    scale: tuple[float, float] | np.ndarray,
    size_wh: tuple[int, int],
    inverse: bool = False,
) -> np.ndarray:
    """The 2x3 image -> network-input affine (``inverse=True``: network input -> image)."""
    c = np.asarray(center, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64) * 200.0
    dst_w, dst_h = float(size_wh[0]), float(size_wh[1])
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = c
    src[1] = c + np.array([0.0, s[0] * -0.5])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0.0, dst_w * -0.5], dtype=np.float32)
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inverse:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def warp_image(image: np.ndarray, meta: WarpMeta) -> np.ndarray:
    """Warp an (H, W, 3) uint8 image to the network input described by ``meta``."""
    trans = affine_matrix(meta.center, meta.scale, meta.size_wh)
    return cv2.warpAffine(image, trans, (int(meta.size_wh[0]), int(meta.size_wh[1])))


def back_project(points: np.ndarray, meta: WarpMeta) -> np.ndarray:
    """Map (..., >=2) points from network-input pixels (of ``meta.size_wh``) to image pixels.

    Columns beyond x, y are kept. The dtype of ``points`` is kept (float32 poses round like the
    official ``transform_preds``).
    """
    pts = np.asarray(points)
    out = pts.copy()
    if pts.size == 0:
        return out
    trans = affine_matrix(meta.center, meta.scale, meta.size_wh, inverse=True)
    xy = pts[..., :2].astype(np.float64)
    out[..., 0] = trans[0, 0] * xy[..., 0] + trans[0, 1] * xy[..., 1] + trans[0, 2]
    out[..., 1] = trans[1, 0] * xy[..., 0] + trans[1, 1] * xy[..., 1] + trans[1, 2]
    return out


def normalize_images(images: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """Stack equally sized RGB uint8 (H, W, 3) arrays into a normalised float32 (B, 3, H, W) batch.

    Same values as ``ToTensor()`` followed by ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``.
    """
    if not images:
        raise ValueError("normalize_images needs at least one image")
    arr = torch.from_numpy(np.ascontiguousarray(np.stack(images, axis=0))).to(device)
    x = arr.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)
