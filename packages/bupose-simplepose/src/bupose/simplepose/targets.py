"""SimplePose training targets (official ``py_cocodata_server/py_data_heatmapper.py``, ``Heatmapper``).

50 maps at stride 4 over the training canvas: 30 limb maps (Gaussian of the distance to the line
through the two joints, sigma 7 input pixels, float32, inside the limbs' cell box; values <= 0.015 become 0.01;
people averaged where they overlap), 18 CMU keypoint maps (separable Gaussian, sigma 9, inside +-7
cells, computed in float32 like the official code, max over people; the fixture shows no 0.015 cut
inside the window), the eroded person mask and the reverse keypoint
map (max over the keypoint maps); everything clipped to [0, 1].

Joint visibility uses the repository's internal convention: 0 = labelled but occluded, 1 = visible,
2 = not labelled (COCO v 2 -> 1, 1 -> 0, 0 -> 2); joints with v < 2 are drawn.
"""

from __future__ import annotations

import cv2
import numpy as np

from .config import COCO_FROM_CMU, LIMBS, MASK_CHANNEL, NUM_KEYPOINTS, NUM_LIMBS, NUM_OUTPUTS, REVERSE_CHANNEL

__all__ = ["coco_to_internal18", "create_heatmaps"]

SIGMA = 9.0
LIMB_SIGMA = 7.0
LIMB_THRE = 0.015
LIMB_FLOOR = 0.01
LIMB_MARGIN = 4.0
WINDOW = 7


def coco_to_internal18(joints: np.ndarray) -> np.ndarray:
    """COCO-17 (N, 17, 3) x, y, COCO v -> CMU-18 (N, 18, 3) with internal v (0 occluded, 1 visible,
    2 unlabelled); the neck is the shoulders' mean when both are labelled, with the smaller v."""
    joints = np.asarray(joints, dtype=np.float64).reshape(-1, 17, 3)
    v_map = {2: 1.0, 1: 0.0, 0: 2.0}
    out = np.zeros((joints.shape[0], NUM_KEYPOINTS, 3))
    out[:, :, 2] = 2.0
    for coco, cmu in enumerate(COCO_FROM_CMU):
        out[:, cmu, :2] = joints[:, coco, :2]
        out[:, cmu, 2] = [v_map.get(int(v), 2.0) for v in joints[:, coco, 2]]
    rs, ls = out[:, 2], out[:, 5]
    both = (rs[:, 2] < 2) & (ls[:, 2] < 2)
    out[both, 1, :2] = (rs[both, :2] + ls[both, :2]) / 2
    out[both, 1, 2] = np.minimum(rs[both, 2], ls[both, 2])
    return out


def create_heatmaps(
    joints18: np.ndarray,
    mask_all: np.ndarray,
    stride: int = 4,
    *,
    sigma: float = SIGMA,
    limb_sigma: float = LIMB_SIGMA,
) -> np.ndarray:
    """The (50, h, w) float32 targets for people ``joints18`` (N, 18, 3) in canvas pixels (internal v)
    and the person mask ``mask_all`` (h, w) at target resolution. ``sigma`` / ``limb_sigma`` are in
    canvas pixels (official 9 / 7 on the 512 canvas)."""
    mask_all = np.asarray(mask_all)
    h, w = mask_all.shape
    joints18 = np.asarray(joints18, dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    gx = stride * np.arange(w) + stride / 2 - 0.5
    gy = stride * np.arange(h) + stride / 2 - 0.5
    gx32, gy32 = gx.astype(np.float32), gy.astype(np.float32)
    maps = np.zeros((NUM_OUTPUTS, h, w), dtype=np.float64)
    # keypoints: separable float32 Gaussian in a +-7 cell window, max over people
    for person in joints18:
        for k in range(NUM_KEYPOINTS):
            x, y, v = person[k]
            if v >= 2:
                continue
            cx, cy = round(x / stride), round(y / stride)
            x0, x1 = max(cx - WINDOW, 0), min(cx + WINDOW + 1, w)
            y0, y1 = max(cy - WINDOW, 0), min(cy + WINDOW + 1, h)
            if x0 >= x1 or y0 >= y1:
                continue
            two_s2 = np.float32(2 * sigma**2)
            ex = np.exp(-((gx32[x0:x1] - np.float32(x)) ** 2) / two_s2)
            ey = np.exp(-((gy32[y0:y1] - np.float32(y)) ** 2) / two_s2)
            g = np.outer(ey, ex)
            ch = NUM_LIMBS + k
            maps[ch, y0:y1, x0:x1] = np.maximum(maps[ch, y0:y1, x0:x1], g)
    # limbs: Gaussian distance to the line through the joints, inside the cell box, averaged over people
    for k, (a, b) in enumerate(LIMBS):
        total = np.zeros((h, w), dtype=np.float32)
        count = np.zeros((h, w), dtype=np.float32)
        for person in joints18:
            if person[a, 2] >= 2 or person[b, 2] >= 2:
                continue
            xa, ya = person[a, :2]
            xb, yb = person[b, :2]
            x0 = max(round((min(xa, xb) - LIMB_MARGIN) / stride), 0)
            x1 = min(round((max(xa, xb) + LIMB_MARGIN) / stride), w - 1)
            y0 = max(round((min(ya, yb) - LIMB_MARGIN) / stride), 0)
            y1 = min(round((max(ya, yb) + LIMB_MARGIN) / stride), h - 1)
            if x0 > x1 or y0 > y1:
                continue
            xa32, ya32, xb32, yb32 = (np.float32(v) for v in (xa, ya, xb, yb))
            dx, dy = xb32 - xa32, yb32 - ya32
            norm = np.sqrt(dx * dx + dy * dy)
            if norm == 0:
                continue
            px = gx32[None, x0 : x1 + 1] - xa32
            py = gy32[y0 : y1 + 1, None] - ya32
            dist = np.abs(px * dy - py * dx) / norm
            g = np.exp(-(dist**2) / np.float32(2 * limb_sigma**2))
            g[g <= LIMB_THRE] = np.float32(LIMB_FLOOR)
            total[y0 : y1 + 1, x0 : x1 + 1] += g
            count[y0 : y1 + 1, x0 : x1 + 1] += 1
        maps[k] = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    maps[MASK_CHANNEL] = cv2.erode(mask_all.astype(np.uint8), np.ones((3, 3), np.uint8))
    maps[REVERSE_CHANNEL] = maps[NUM_LIMBS:MASK_CHANNEL].max(axis=0)
    return np.clip(maps, 0, 1).astype(np.float32)
