"""Image geometry shared by bottom-up methods: test-time resize rule, centre/scale affine, warps.

Conventions: points are (x, y) in pixels; ``size_wh`` is (width, height); ``scale`` is in
``pixel_std``-pixel units (HRNet's 200); affines are 2x3 (or 3x3) float64 matrices mapping source
pixels to destination pixels.

- :func:`multi_scale_size`: the test-time input size of an image at one scale (short side to
  ``input_size`` rounded to ``multiple``, long side keeping the aspect ratio rounded to
  ``multiple``), its centre and scale. The rounding rules are arguments: the HRNet family
  (HigherHRNet, DEKR, LOGO-CAP) rounds with ``floor((x + m - 1) / m) * m`` and the centre half up;
  mmpose (CenterGroup) uses a true ceiling and Python's ``round`` (half to even).
- :func:`center_scale_affine`: the HRNet ``get_affine_transform`` (three float32 points,
  ``cv2.getAffineTransform``), optionally rotated, and its inverse.
- :func:`crop_affine`: the training crop of ``RandomAffineTransform`` (3x3, with the scale product
  the targets' areas are multiplied by), :func:`rotate_affine` its rotation about a point.
- :func:`warp_image` / :func:`warp_affine` / :func:`warp_mask`: ``cv2.warpAffine`` (bilinear, zero
  border); masks as uint8 x255, then ``> 0.5``.
- :func:`back_project` (network input -> image, dtype kept) and :func:`apply_affine`.
- :func:`short_side_resize_size` (DETR's ``RandomResize`` rule: short side to ``size`` unless the
  long side would pass ``max_size``) and :func:`pad_to_multiple` (SimplePose pads right/bottom to a
  multiple of 64 with value 128).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

__all__ = [
    "MAX_ASPECT_RATIO",
    "PIXEL_STD",
    "WarpMeta",
    "apply_affine",
    "back_project",
    "center_scale_affine",
    "crop_affine",
    "multi_scale_size",
    "pad_to_multiple",
    "rotate_affine",
    "round_to_multiple",
    "short_side_resize_size",
    "warp_affine",
    "warp_image",
    "warp_mask",
]

PIXEL_STD = 200.0
"""HRNet's scale unit: ``scale`` 1.0 spans 200 source pixels."""

MAX_ASPECT_RATIO = 32.0
"""Longest side / shortest side :func:`multi_scale_size` accepts: beyond it the short-side rule would
make a network input of millions of pixels on one side (a 1x3000 image at 512 -> 512x1536000)."""

Rounding = Literal["add_floor", "ceil"]
CenterRounding = Literal["half_up", "half_even"]


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


def round_to_multiple(x: float, multiple: int, rounding: Rounding = "add_floor") -> int:
    """``x`` rounded up to a multiple of ``multiple``.

    ``"add_floor"`` is ``floor((x + multiple - 1) / multiple) * multiple`` (the HRNet-family rule: a
    non-integer ``x`` just above a multiple rounds down to it); ``"ceil"`` is the true ceiling.
    """
    if multiple <= 0:
        raise ValueError(f"multiple must be positive, got {multiple}")
    if rounding == "add_floor":
        return int((x + multiple - 1) // multiple * multiple)
    if rounding == "ceil":
        return math.ceil(x / multiple) * multiple
    raise ValueError(f"rounding must be 'add_floor' or 'ceil', got {rounding!r}")


def multi_scale_size(
    image_hw: tuple[int, int],
    input_size: int,
    scale_factor: float = 1.0,
    *,
    multiple: int = 64,
    rounding: Rounding = "add_floor",
    center_rounding: CenterRounding = "half_up",
    pixel_std: float = PIXEL_STD,
) -> WarpMeta:
    """Network-input size, centre and scale of an ``(h, w)`` image at ``scale_factor``.

    The short side goes to ``round_to_multiple(input_size) * scale_factor``, the long side to
    ``round_to_multiple(input_size / short * long) * scale_factor`` (both truncated to int); the
    scale covers the whole short side. The defaults are the HRNet-family rule (``multiple`` 64,
    ``"add_floor"``, centre rounded half up); mmpose/CenterGroup use ``"ceil"`` and ``"half_even"``.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got (h, w) = ({h}, {w})")
    if input_size <= 0 or scale_factor <= 0:
        raise ValueError(f"input_size and scale_factor must be positive, got {input_size}, {scale_factor}")
    if max(h, w) > MAX_ASPECT_RATIO * min(h, w):
        raise ValueError(
            f"image of {w}x{h} pixels: its aspect ratio {max(h, w) / min(h, w):.0f}:1 is beyond the "
            f"{MAX_ASPECT_RATIO:.0f}:1 this input rule supports (the short side goes to {input_size}); "
            "crop or pad the image"
        )
    if center_rounding == "half_up":
        center = (float(int(w / 2.0 + 0.5)), float(int(h / 2.0 + 0.5)))
    elif center_rounding == "half_even":
        center = (float(round(w / 2.0)), float(round(h / 2.0)))
    else:
        raise ValueError(f"center_rounding must be 'half_up' or 'half_even', got {center_rounding!r}")
    base = round_to_multiple(input_size, multiple, rounding)
    if w < h:
        w_out = int(base * scale_factor)
        h_out = int(round_to_multiple(base / w * h, multiple, rounding) * scale_factor)
        sw = w / pixel_std
        sh = h_out / w_out * w / pixel_std
    else:
        h_out = int(base * scale_factor)
        w_out = int(round_to_multiple(base / h * w, multiple, rounding) * scale_factor)
        sh = h / pixel_std
        sw = w_out / h_out * h / pixel_std
    return WarpMeta(image_hw=(h, w), size_wh=(w_out, h_out), center=center, scale=(sw, sh))


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def center_scale_affine(
    center: Sequence[float] | np.ndarray,
    scale: Sequence[float] | np.ndarray,
    size_wh: tuple[int, int],
    *,
    inverse: bool = False,
    rotation: float = 0.0,
    pixel_std: float = PIXEL_STD,
) -> np.ndarray:
    """The 2x3 HRNet affine: ``scale[0] * pixel_std`` source pixels around ``center`` span the
    destination width ``size_wh[0]``, rotated by ``rotation`` degrees (``inverse=True``:
    destination -> source). Built from three float32 point pairs like the official code."""
    c = np.asarray(center, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64) * pixel_std
    dst_w, dst_h = float(size_wh[0]), float(size_wh[1])
    src_dir = np.array([0.0, s[0] * -0.5])
    if rotation != 0:
        r = math.pi * rotation / 180.0
        sn, cs = math.sin(r), math.cos(r)
        src_dir = np.array([src_dir[0] * cs - src_dir[1] * sn, src_dir[0] * sn + src_dir[1] * cs])
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = c
    src[1] = c + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0.0, dst_w * -0.5], dtype=np.float32)
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inverse:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def rotate_affine(matrix: np.ndarray, rotation: float, center: Sequence[float]) -> np.ndarray:
    """``matrix`` (3x3) followed by a rotation of ``rotation`` degrees about ``center`` (x, y) in its
    destination frame (counter-clockwise on screen for positive angles, like the official crop)."""
    r = -rotation * math.pi / 180.0
    sn, cs = math.sin(r), math.cos(r)
    rot_mat = np.array([[cs, -sn, 0.0], [sn, cs, 0.0], [0.0, 0.0, 1.0]])
    t_mat = np.eye(3)
    t_mat[0, 2] = -float(center[0])
    t_mat[1, 2] = -float(center[1])
    t_inv = t_mat.copy()
    t_inv[:2, 2] *= -1
    return t_inv @ (rot_mat @ (t_mat @ np.asarray(matrix, dtype=np.float64)))


def crop_affine(
    center: Sequence[float], scale: float, res: int, rotation: float = 0.0, *, pixel_std: float = PIXEL_STD
) -> tuple[np.ndarray, float]:
    """The (3, 3) training-crop matrix mapping source pixels to a ``res`` x ``res`` output where
    ``pixel_std * scale`` source pixels span the output, centred on ``center``, rotated by
    ``rotation`` degrees about the output centre; and the scale product t00 * t11 before rotation
    (what the bottom-up targets multiply annotation areas by)."""
    h = pixel_std * scale
    t = np.zeros((3, 3))
    t[0, 0] = float(res) / h
    t[1, 1] = float(res) / h
    t[0, 2] = res * (-float(center[0]) / h + 0.5)
    t[1, 2] = res * (-float(center[1]) / h + 0.5)
    t[2, 2] = 1.0
    scale_product = t[0, 0] * t[1, 1]
    if rotation != 0:
        t = rotate_affine(t, rotation, (res / 2, res / 2))
    return t, float(scale_product)


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., 2) points mapped by a 2x3 or 3x3 affine, float64."""
    pts = np.asarray(points, dtype=np.float64)
    flat = pts.reshape(-1, 2)
    out = np.concatenate([flat, np.ones((flat.shape[0], 1))], axis=1) @ np.asarray(matrix, np.float64)[:2].T
    return out.reshape(pts.shape)


def warp_affine(
    image: np.ndarray,
    matrix: np.ndarray,
    size_wh: tuple[int, int],
    *,
    interpolation: int = cv2.INTER_LINEAR,
    border_value: float = 0,
) -> np.ndarray:
    """``cv2.warpAffine`` of ``image`` by a 2x3 (or 3x3) ``matrix`` to ``size_wh``, constant border."""
    return cv2.warpAffine(
        image,
        np.asarray(matrix, dtype=np.float64)[:2],
        (int(size_wh[0]), int(size_wh[1])),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )


def warp_image(image: np.ndarray, meta: WarpMeta, *, border_value: float = 0) -> np.ndarray:
    """Warp an (H, W, C) image to the network input described by ``meta`` (bilinear)."""
    trans = center_scale_affine(meta.center, meta.scale, meta.size_wh)
    return warp_affine(image, trans, meta.size_wh, border_value=border_value)


def warp_mask(mask: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """An (H, W) 0/1 mask warped by a 2x3/3x3 ``matrix`` to ``size`` (int: square, or (w, h)):
    uint8 x255, bilinear with zero border, then ``> 0.5``; float32."""
    size_wh = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    mask_u8 = (np.asarray(mask, dtype=np.float64) * 255).astype(np.uint8)
    warped = cv2.warpAffine(
        mask_u8, np.asarray(matrix, dtype=np.float64)[:2], (int(size_wh[0]), int(size_wh[1]))
    )
    return ((warped / 255) > 0.5).astype(np.float32)


def back_project(points: np.ndarray, meta: WarpMeta) -> np.ndarray:
    """Map (..., >=2) points from network-input pixels (of ``meta.size_wh``) to image pixels.

    Columns beyond x, y are kept. The dtype of ``points`` is kept (float32 poses round like the
    official ``transform_preds``).
    """
    pts = np.asarray(points)
    out = pts.copy()
    if pts.size == 0:
        return out
    trans = center_scale_affine(meta.center, meta.scale, meta.size_wh, inverse=True)
    xy = pts[..., :2].astype(np.float64)
    out[..., 0] = trans[0, 0] * xy[..., 0] + trans[0, 1] * xy[..., 1] + trans[0, 2]
    out[..., 1] = trans[1, 0] * xy[..., 0] + trans[1, 1] * xy[..., 1] + trans[1, 2]
    return out


def short_side_resize_size(
    image_hw: tuple[int, int], size: int, max_size: int | None = None
) -> tuple[int, int]:
    """The (h, w) an image is resized to when its short side goes to ``size``, unless the long side
    would then exceed ``max_size`` (then the long side goes to about ``max_size``); DETR's rule
    (GroupPose test input: ``size`` 800, ``max_size`` 1333). Sides are truncated to int."""
    h, w = int(image_hw[0]), int(image_hw[1])
    if h <= 0 or w <= 0 or size <= 0:
        raise ValueError(f"short_side_resize_size: sizes must be positive, got image {(h, w)}, size {size}")
    if max_size is not None:
        short, long = float(min(h, w)), float(max(h, w))
        if long / short * size > max_size:
            size = max(1, round(max_size * short / long))  # an extreme aspect ratio keeps >= 1 pixel
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def pad_to_multiple(
    image: np.ndarray, multiple: int, *, value: float = 0
) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` (H, W, ...) padded on the right and bottom with ``value`` so that H and W are
    multiples of ``multiple``; and the (bottom, right) padding added."""
    if multiple <= 0:
        raise ValueError(f"pad_to_multiple: multiple must be positive, got {multiple}")
    h, w = image.shape[:2]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return image.copy(), (0, 0)
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode="constant", constant_values=value), (pad_h, pad_w)
