"""Dense training targets: Gaussian heatmaps, displacement (offset) fields, instance centres/areas.

Joints are (N, K, 3) arrays (x, y, v) in target-map pixels; a joint is drawn when ``v > 0`` and it
lies in ``[0, W) x [0, H)``. Method rules are arguments:

- heatmaps: one sigma per channel (DEKR: 2 for joints, 4 for the centre, by channel index), the
  HRNet window ``[floor(x - t*s - 1), ceil(x + t*s + 2))`` with ``truncate`` t = 3 or the whole map
  (``truncate=None``), a background ``weight`` outside every window, values below ``min_value``
  zeroed (SimplePose 0.015);
- displacements: the (2r)x(2r) window at the truncated centre, pixel - joint, weight 1/sqrt(area),
  overlaps resolved in favour of the smaller instance (DEKR, LOGO-CAP);
- centres: mean of the visible joints (LOGO-CAP, CenterGroup, optionally in-map only) or DEKR's sum
  of all joint coordinates over the number of visible joints; areas: keypoint-box squared diagonal
  (DEKR) or box area.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = ["displacement_targets", "gaussian_heatmaps", "instance_area", "instance_centers"]


def _size_hw(output_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(output_size, (int, np.integer)):
        return int(output_size), int(output_size)
    return int(output_size[0]), int(output_size[1])


def gaussian_heatmaps(
    joints: np.ndarray,
    output_size: int | tuple[int, int],
    sigmas: float | Sequence[float],
    *,
    bg_weight: float = 1.0,
    truncate: float | None = 3.0,
    min_value: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) float32 unnormalised Gaussians (peak 1 at the joint, max over instances) and the
    (K, H, W) weight: 1 inside any drawn window, ``bg_weight`` elsewhere.

    ``joints`` (N, K, 3) in map pixels, ``output_size`` an int (square) or (h, w), ``sigmas`` one
    value or one per channel. ``truncate`` t draws integer pixels of
    ``[floor(x - t*s - 1), ceil(x + t*s + 2))`` (HRNet's window); ``None`` draws the whole map.
    Values below ``min_value`` are set to 0.
    """
    h_out, w_out = _size_hw(output_size)
    jts = np.asarray(joints, dtype=np.float64)
    k = jts.shape[1]
    sig = np.broadcast_to(np.asarray(sigmas, dtype=np.float64), (k,))
    hms = np.zeros((k, h_out, w_out), dtype=np.float32)
    ignored = np.full((k, h_out, w_out), 2.0, dtype=np.float32)
    for p in jts:
        for idx in range(k):
            x, y, v = p[idx]
            if not (v > 0 and 0 <= x < w_out and 0 <= y < h_out):  # also skips NaN coordinates
                continue
            s = float(sig[idx])
            if truncate is None:
                aa, bb, cc, dd = 0, h_out, 0, w_out
            else:
                x0, y0 = int(np.floor(x - truncate * s - 1)), int(np.floor(y - truncate * s - 1))
                x1, y1 = int(np.ceil(x + truncate * s + 2)), int(np.ceil(y + truncate * s + 2))
                cc, dd = max(0, x0), min(x1, w_out)
                aa, bb = max(0, y0), min(y1, h_out)
            sy = np.arange(aa, bb, dtype=np.float64)[:, None]
            sx = np.arange(cc, dd, dtype=np.float64)[None, :]
            g = np.exp(-((sx - x) ** 2 + (sy - y) ** 2) / (2 * s**2))
            if min_value > 0:
                g[g < min_value] = 0.0
            hms[idx, aa:bb, cc:dd] = np.maximum(hms[idx, aa:bb, cc:dd], g)
            ignored[idx, aa:bb, cc:dd] = 1.0
    ignored[ignored == 2] = bg_weight
    return hms, ignored


def displacement_targets(
    joints: np.ndarray,
    centers: np.ndarray,
    areas: np.ndarray,
    output_size: int | tuple[int, int],
    radius: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """(2J, H, W) float32 displacements (dx_j, dy_j) = pixel - joint and their weights 1/sqrt(area),
    written in ``[int(c) - r, int(c) + r)`` around each instance's truncated centre.

    ``joints`` (N, J, 3) and ``centers`` (N, 3) (x, y, v; v >= 1 and in-map to be drawn) in map
    pixels, ``areas`` (N,). A pixel already holding a displacement for a joint is overwritten only
    by an instance whose area is <= the area stored there (smaller instances win).
    """
    h_out, w_out = _size_hw(output_size)
    jts = np.asarray(joints, dtype=np.float64)
    ctr = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    area = np.asarray(areas, dtype=np.float64).reshape(-1)
    if not (jts.shape[0] == ctr.shape[0] == area.shape[0]):
        raise ValueError(
            f"displacement_targets: {jts.shape[0]} instances, {ctr.shape[0]} centres, {area.shape[0]} areas"
        )
    nj = jts.shape[1]
    offset = np.zeros((2 * nj, h_out, w_out), dtype=np.float32)
    weight = np.zeros((2 * nj, h_out, w_out), dtype=np.float32)
    area_map = np.zeros((h_out, w_out), dtype=np.float32)
    for pid, p in enumerate(jts):
        ct_x, ct_y, ct_v = int(ctr[pid, 0]), int(ctr[pid, 1]), int(ctr[pid, 2])
        if not (ct_v >= 1 and 0 <= ct_x < w_out and 0 <= ct_y < h_out):  # also skips NaN centres
            continue
        a = area[pid]
        x0, y0 = max(ct_x - radius, 0), max(ct_y - radius, 0)
        x1, y1 = min(ct_x + radius, w_out), min(ct_y + radius, h_out)
        pos_x = np.arange(x0, x1, dtype=np.float64)[None, :]
        pos_y = np.arange(y0, y1, dtype=np.float64)[:, None]
        w = np.float32(1.0 / np.sqrt(a)) if a > 0 else np.float32(np.inf)
        for idx in range(nj):
            x, y, v = p[idx]
            if not (v > 0 and 0 <= x < w_out and 0 <= y < h_out):  # also skips NaN coordinates
                continue
            ox = offset[2 * idx, y0:y1, x0:x1]
            oy = offset[2 * idx + 1, y0:y1, x0:x1]
            am = area_map[y0:y1, x0:x1]
            write = ~(((ox != 0) | (oy != 0)) & (am < a))
            ox[write] = np.broadcast_to(pos_x - x, ox.shape)[write]
            oy[write] = np.broadcast_to(pos_y - y, oy.shape)[write]
            weight[2 * idx, y0:y1, x0:x1][write] = w
            weight[2 * idx + 1, y0:y1, x0:x1][write] = w
            am[write] = a
    return offset, weight


def instance_area(
    joints: np.ndarray,
    rule: Literal["diagonal_squared", "box"] = "diagonal_squared",
    *,
    visible_only: bool = False,
) -> np.ndarray:
    """(N,) float64 area of each instance's keypoint box from ``joints`` (N, K, >=2):
    ``"diagonal_squared"`` (w^2 + h^2, DEKR's ``cal_area_2_torch``) or ``"box"`` (w * h).

    ``visible_only`` uses joints with v > 0 only (needs a v column; instances without one get 0);
    otherwise every row counts, unlabelled (0, 0) rows included (the official DEKR quirk).
    """
    j = np.asarray(joints, dtype=np.float64)
    if j.shape[0] == 0:
        return np.zeros((0,), dtype=np.float64)
    x, y = j[:, :, 0], j[:, :, 1]
    if visible_only:
        vis = j[:, :, 2] > 0
        any_vis = vis.any(axis=1)
        w = np.where(vis, x, -np.inf).max(axis=1) - np.where(vis, x, np.inf).min(axis=1)
        h = np.where(vis, y, -np.inf).max(axis=1) - np.where(vis, y, np.inf).min(axis=1)
        w, h = np.where(any_vis, w, 0.0), np.where(any_vis, h, 0.0)
    else:
        w = x.max(axis=1) - x.min(axis=1)
        h = y.max(axis=1) - y.min(axis=1)
    if rule == "diagonal_squared":
        return w * w + h * h
    if rule == "box":
        return w * h
    raise ValueError(f"instance_area: rule must be 'diagonal_squared' or 'box', got {rule!r}")


def instance_centers(
    joints: np.ndarray,
    rule: Literal["mean_visible", "sum_over_visible"] = "mean_visible",
    *,
    in_map: tuple[int, int] | None = None,
    empty: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Instance centres (N, 2) float64 and whether each has one (N,) bool, from ``joints`` (N, K, 3).

    ``"mean_visible"``: mean of the joints with v > 0 (and inside ``in_map`` (h, w) when given;
    LOGO-CAP, CenterGroup). ``"sum_over_visible"``: the sum of **all** joint coordinates divided by
    the number of visible joints (DEKR's rule: unlabelled rows are usually (0, 0)). Instances
    without a counted joint get ``empty`` and False.
    """
    j = np.asarray(joints, dtype=np.float64)
    vis = j[:, :, 2] > 0
    if in_map is not None:
        h, w = in_map
        vis &= (j[:, :, 0] >= 0) & (j[:, :, 1] >= 0) & (j[:, :, 0] < w) & (j[:, :, 1] < h)
    num = vis.sum(axis=1)
    if rule == "mean_visible":
        total = (j[:, :, :2] * vis[:, :, None]).sum(axis=1)
    elif rule == "sum_over_visible":
        total = j[:, :, :2].sum(axis=1)
    else:
        raise ValueError(f"instance_centers: rule must be 'mean_visible' or 'sum_over_visible', got {rule!r}")
    has = num > 0
    centre = np.where(has[:, None], total / np.maximum(num, 1)[:, None], np.asarray(empty, dtype=np.float64))
    return centre, has
