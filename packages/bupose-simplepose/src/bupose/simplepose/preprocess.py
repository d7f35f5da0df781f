"""SimplePose test-time preprocessing and multi-scale + flip fusion, as the official ``evaluate.py``.

Scale search: multiplier = scale * boxsize / image height, capped so that the resized image fits in
2600 x 3800 (h x w); OpenCV cubic resize; pad right/bottom with 128 to a multiple of 64; BGR / 255
with no mean/std; the horizontal mirror as the second image of the pair. Fusion: flipped outputs
mirrored back and channel-reindexed, averaged with the original, cubic x4 upsampling, padding cropped,
cubic resize to the image, averaged over scales in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .config import FLIP_HEAT_ORDER, FLIP_LIMB_ORDER, NUM_LIMBS

__all__ = [
    "MAX_HEIGHT",
    "MAX_WIDTH",
    "ScalePlan",
    "fuse_outputs",
    "output_to_image",
    "plan_scales",
    "prepare_input",
]

MAX_HEIGHT = 2600
MAX_WIDTH = 3800
PAD_VALUE = 128
MAX_DOWNSAMPLE = 64
STRIDE = 4


@dataclass(frozen=True)
class ScalePlan:
    """One scale of the search: the multiplier asked for and used, resized and padded sizes."""

    scale: float
    multiplier: float
    multiplier_used: float
    shrunk: bool
    resized_wh: tuple[int, int]
    padded_wh: tuple[int, int]
    pad_bottom: int
    pad_right: int


def _pad_to(n: int) -> int:
    return 0 if n % MAX_DOWNSAMPLE == 0 else MAX_DOWNSAMPLE - n % MAX_DOWNSAMPLE


def plan_scales(height: int, width: int, scale_search: Sequence[float], boxsize: int = 512) -> list[ScalePlan]:
    """The official scale rule for an image of ``height`` x ``width``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    plans = []
    for s in scale_search:
        m = float(s) * boxsize / height
        used = m
        shrunk = m * height > MAX_HEIGHT or m * width > MAX_WIDTH
        if shrunk:
            used = min(MAX_HEIGHT / height, MAX_WIDTH / width)
        rw, rh = int(np.rint(width * used)), int(np.rint(height * used))
        pb, pr = _pad_to(rh), _pad_to(rw)
        plans.append(ScalePlan(float(s), m, used, shrunk, (rw, rh), (rw + pr, rh + pb), pb, pr))
    return plans


def prepare_input(image_bgr: np.ndarray, multiplier: float, flip: bool = True) -> tuple[np.ndarray, int, int]:
    """The network input for one scale: (2 or 1, Hp, Wp, 3) float32 BGR / 255 (image and its mirror),
    plus pad_bottom and pad_right."""
    img = cv2.resize(image_bgr, (0, 0), fx=multiplier, fy=multiplier, interpolation=cv2.INTER_CUBIC)
    h, w = img.shape[:2]
    pb, pr = _pad_to(h), _pad_to(w)
    padded = cv2.copyMakeBorder(img, 0, pb, 0, pr, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    x = padded.astype(np.float32) / 255
    batch = np.stack([x, x[:, ::-1]]) if flip else x[None]
    return np.ascontiguousarray(batch), pb, pr


def _resize(maps: np.ndarray, size_wh: tuple[int, int] | None = None, factor: float | None = None) -> np.ndarray:
    """cv2 cubic resize of an (H, W, C) map, any C (OpenCV handles at most 512 channels per call)."""
    out = []
    for c0 in range(0, maps.shape[2], 512):
        part = np.ascontiguousarray(maps[:, :, c0 : c0 + 512])
        if factor is not None:
            r = cv2.resize(part, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        else:
            assert size_wh is not None
            r = cv2.resize(part, size_wh, interpolation=cv2.INTER_CUBIC)
        out.append(r.reshape(r.shape[0], r.shape[1], -1))
    return np.concatenate(out, axis=2)


def fuse_outputs(
    outputs: Sequence[np.ndarray], pads: Sequence[tuple[int, int]], image_hw: tuple[int, int], flip: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse per-scale network outputs back to the image: returns (heatmaps (H, W, 20), limbs (H, W, 30))
    in float64.

    ``outputs[i]`` is (2, 50, Hp/4, Wp/4) = [original, mirrored] (or (1, ...) without flip) for scale i,
    ``pads[i]`` its (pad_bottom, pad_right).
    """
    h, w = image_hw
    heat_avg = np.zeros((h, w, 50 - NUM_LIMBS))
    limb_avg = np.zeros((h, w, NUM_LIMBS))
    n = len(outputs)
    for out, (pb, pr) in zip(outputs, pads, strict=True):
        o = np.asarray(out, dtype=np.float32).transpose(0, 2, 3, 1)
        limb, heat = o[0, :, :, :NUM_LIMBS], o[0, :, :, NUM_LIMBS:]
        if flip:
            if o.shape[0] != 2:
                raise ValueError(f"fuse_outputs: flip needs (2, 50, h, w) outputs, got {tuple(np.shape(out))}")
            limb = (limb + o[1, :, ::-1, :NUM_LIMBS][:, :, list(FLIP_LIMB_ORDER)]) / 2
            heat = (heat + o[1, :, ::-1, NUM_LIMBS:][:, :, list(FLIP_HEAT_ORDER)]) / 2
        for maps, avg in ((heat, heat_avg), (limb, limb_avg)):
            up = _resize(maps, factor=STRIDE)
            up = up[: up.shape[0] - pb, : up.shape[1] - pr, :]
            avg += _resize(up, size_wh=(w, h)) / n
    return heat_avg, limb_avg


def output_to_image(uv: np.ndarray, orig_wh: tuple[int, int], resized_wh: tuple[int, int]) -> np.ndarray:
    """Map network-output pixels (u, v) of one scale to original-image (x, y), OpenCV pixel centres:
    x = (4u + 2) w / W_s - 0.5, y = (4v + 2) h / H_s - 0.5."""
    uv = np.asarray(uv, dtype=np.float64)
    w, h = orig_wh
    ws, hs = resized_wh
    x = (STRIDE * uv[..., 0] + STRIDE / 2) * w / ws - 0.5
    y = (STRIDE * uv[..., 1] + STRIDE / 2) * h / hs - 0.5
    return np.stack([x, y], axis=-1)
