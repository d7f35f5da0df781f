"""Object keypoint similarity (OKS), with pycocotools' ``computeOks`` rules, numpy and torch.

``OKS = mean_j exp(-d_j^2 / (2 * area * (2 * sigma_j)^2))`` over the ground truth's labelled joints
(v > 0); a ground truth without labelled joints uses every joint, with ``d`` the distance to its box
grown by the box size on every side (pycocotools' rule; needs ``boxes``). ``area`` is
``area_scale * area + eps`` (``eps = np.spacing(1)``): CenterGroup matches with box area x 0.53.

:func:`oks_pairs` is the evaluation engine's implementation (same float64 operations in the same
order as pycocotools, so values are bit-identical); :func:`oks_matrix` is its (D, G) form and
:func:`oks_torch` the differentiable twin (any broadcastable batch shape), for matching and losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported by the torch twin only: the numpy OKS (evaluation) stays torch-free
    import torch

__all__ = ["EPS", "oks_matrix", "oks_matrix_torch", "oks_pairs", "oks_torch"]

EPS = float(np.spacing(1))
"""pycocotools' area epsilon."""


def oks_pairs(
    det_x: np.ndarray,
    det_y: np.ndarray,
    gt_x: np.ndarray,
    gt_y: np.ndarray,
    gt_visible: np.ndarray,
    gt_areas: np.ndarray,
    sigmas: Sequence[float] | np.ndarray,
    gt_boxes: np.ndarray | None = None,
    *,
    area_scale: float = 1.0,
) -> np.ndarray:
    """(P,) OKS of P (detection, ground truth) pairs: ``det_x``/``det_y``/``gt_x``/``gt_y`` (P, K),
    ``gt_visible`` (P, K) bool (v > 0), ``gt_areas`` (P,), ``gt_boxes`` (P, 4) xywh (needed only for
    ground truths without labelled joints; without boxes those pairs score 0). float64,
    bit-identical to pycocotools (the evaluation engine's kernel: coordinates as separate arrays)."""
    sig = np.asarray(sigmas, dtype=np.float64)
    k = sig.shape[0]
    vis = np.asarray(gt_visible, dtype=bool)
    total = vis.shape[0]
    oks = np.empty(total, dtype=np.float64)
    if total == 0:
        return oks
    k1 = vis.sum(axis=1)
    dx = np.asarray(det_x, dtype=np.float64) - np.asarray(gt_x, dtype=np.float64)
    dy = np.asarray(det_y, dtype=np.float64) - np.asarray(gt_y, dtype=np.float64)
    unl = np.nonzero(k1 == 0)[0]
    no_box = np.zeros(0, dtype=np.int64)
    if len(unl):  # no labelled joint: distance to the GT box grown by its size on every side
        if gt_boxes is None:
            no_box = unl
        else:
            box = np.asarray(gt_boxes, dtype=np.float64)[unl]
            x0 = (box[:, 0] - box[:, 2])[:, None]
            x1 = (box[:, 0] + box[:, 2] * 2)[:, None]
            y0 = (box[:, 1] - box[:, 3])[:, None]
            y1 = (box[:, 1] + box[:, 3] * 2)[:, None]
            zero = np.zeros((len(unl), k))
            xu = np.asarray(det_x, dtype=np.float64)[unl]
            yu = np.asarray(det_y, dtype=np.float64)[unl]
            dx[unl] = np.maximum(zero, x0 - xu) + np.maximum(zero, xu - x1)
            dy[unl] = np.maximum(zero, y0 - yu) + np.maximum(zero, yu - y1)
    area = np.asarray(gt_areas, dtype=np.float64)
    if area_scale != 1.0:
        area = area * area_scale
    variances = (sig * 2) ** 2
    e = dx**2
    e += dy**2
    del dx, dy
    e /= variances
    e /= (area + np.spacing(1))[:, None]
    e /= 2
    np.negative(e, out=e)
    ex = np.exp(e, out=e)
    # k1 == 0: all k terms; k1 == n: the n labelled terms in joint order (same summation order)
    for n in np.unique(k1):
        rows = np.nonzero(k1 == n)[0]
        if n == 0 or n == k:
            oks[rows] = ex[rows].sum(axis=1) / k
        else:
            vals = np.ascontiguousarray(ex[rows][vis[rows]].reshape(len(rows), int(n)))
            oks[rows] = vals.sum(axis=1) / int(n)
    oks[no_box] = 0.0
    return oks


def oks_matrix(
    dets: np.ndarray,
    gt_keypoints: np.ndarray,
    gt_areas: np.ndarray,
    gt_boxes: np.ndarray | None,
    sigmas: Sequence[float] | np.ndarray,
    *,
    area_scale: float = 1.0,
) -> np.ndarray:
    """(D, G) OKS of detections (D, K, >=2) against ground truths (G, K, 3) (:func:`oks_pairs`)."""
    d = np.asarray(dets, dtype=np.float64)
    g = np.asarray(gt_keypoints, dtype=np.float64)
    nd, ng = d.shape[0], g.shape[0]
    if nd == 0 or ng == 0:
        return np.zeros((nd, ng))
    di = np.repeat(np.arange(nd), ng)
    gi = np.tile(np.arange(ng), nd)
    boxes = None if gt_boxes is None else np.asarray(gt_boxes, dtype=np.float64).reshape(ng, 4)[gi]
    areas = np.asarray(gt_areas, dtype=np.float64).reshape(ng)[gi]
    gk = g[gi]
    out = oks_pairs(
        d[di, :, 0],
        d[di, :, 1],
        gk[:, :, 0],
        gk[:, :, 1],
        gk[:, :, 2] > 0,
        areas,
        sigmas,
        boxes,
        area_scale=area_scale,
    )
    return out.reshape(nd, ng)


def oks_torch(
    pred: torch.Tensor,
    gt_keypoints: torch.Tensor,
    gt_areas: torch.Tensor,
    sigmas: Sequence[float] | torch.Tensor,
    gt_boxes: torch.Tensor | None = None,
    *,
    area_scale: float = 1.0,
) -> torch.Tensor:
    """Differentiable OKS with :func:`oks_pairs`' rules: ``pred`` (..., K, >=2), ``gt_keypoints``
    (..., K, 3), ``gt_areas`` (...), ``gt_boxes`` (..., 4), all broadcast together -> (...)."""
    import torch

    sig = torch.as_tensor(sigmas, dtype=pred.dtype, device=pred.device)
    k = sig.shape[0]
    vis = gt_keypoints[..., 2] > 0
    dx = pred[..., 0] - gt_keypoints[..., 0]
    dy = pred[..., 1] - gt_keypoints[..., 1]
    none_vis = ~vis.any(dim=-1)
    if gt_boxes is not None:
        bx, by, bw, bh = (gt_boxes[..., i : i + 1] for i in range(4))
        x0, x1, y0, y1 = bx - bw, bx + bw * 2, by - bh, by + bh * 2
        zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
        bdx = torch.maximum(zero, x0 - pred[..., 0]) + torch.maximum(zero, pred[..., 0] - x1)
        bdy = torch.maximum(zero, y0 - pred[..., 1]) + torch.maximum(zero, pred[..., 1] - y1)
        dx = torch.where(none_vis[..., None], bdx, dx)
        dy = torch.where(none_vis[..., None], bdy, dy)
    area = gt_areas * area_scale if area_scale != 1.0 else gt_areas
    e = (dx**2 + dy**2) / ((sig * 2) ** 2) / (area + EPS)[..., None] / 2
    ex = torch.exp(-e)
    use = vis | none_vis[..., None]
    total = torch.where(use, ex, torch.zeros_like(ex)).sum(dim=-1)
    count = torch.where(none_vis, torch.full_like(total, float(k)), vis.sum(dim=-1).to(total.dtype))
    out = total / count
    if gt_boxes is None:
        out = torch.where(none_vis, torch.zeros_like(out), out)
    return out


def oks_matrix_torch(
    dets: torch.Tensor,
    gt_keypoints: torch.Tensor,
    gt_areas: torch.Tensor,
    gt_boxes: torch.Tensor | None,
    sigmas: Sequence[float] | torch.Tensor,
    *,
    area_scale: float = 1.0,
) -> torch.Tensor:
    """(D, G) :func:`oks_torch` of detections (D, K, >=2) against ground truths (G, K, 3)."""
    boxes = None if gt_boxes is None else gt_boxes[None]
    return oks_torch(dets[:, None], gt_keypoints[None], gt_areas[None], sigmas, boxes, area_scale=area_scale)
