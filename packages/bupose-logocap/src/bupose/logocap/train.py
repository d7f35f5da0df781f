"""LOGO-CAP training: dense targets, pose-pool supervision of the KAM and the refined heatmaps, and
the four loss terms.

Dense targets are DEKR-style (Gaussian heatmaps sigma 2, centre sigma 4, background weight 0.1,
offsets in a radius-4 window around the truncated centre) with LOGO-CAP's differences: one shared
heatmap weight channel, an area-based offset weight (``1 / sqrt(area)`` with the instance area at
input resolution: segmentation area when the data has one, else the box area), and the centre as
the mean of the visible joints. Built from :mod:`bupose.core.algorithms.targets`.

Pose-pool supervision (:func:`pose_pool_losses`): the decoder's centre NMS and initial poses run on
the *detached* centre map and offsets; every centre's 11x11 KEM grid is scored against every
ground-truth person by per-joint OKS (COCO sigmas). OKS is invariant to a similarity transform
when the area is transformed with it, so it is computed in network-input pixels with input-pixel
areas, which equals the official image-coordinate computation for the scale/rotation/flip
augmentation. Each centre is assigned the person with the best window OKS; centres whose best OKS
is below 0.5 are dropped (the best one is always kept). Targets: the per-joint OKS over the 11x11
window (KAM) and ``exp(−d² / (2·4²))`` around the ground-truth joint over the 97x97 global window
(refined heatmap). Both MSE losses are weighted per joint by (best window OKS − grid-centre OKS),
clamped at 0, zero for persons below 0.5, and normalised by the number of supervised centres.

Official factors: heatmap 1.0, offset 0.01, KAM (``OKS``) 0.01, refined heatmap (``HM``) 1.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bupose.core.algorithms.targets import displacement_targets, gaussian_heatmaps, instance_centers

from .decode import COCO_SIGMAS, clamped_bilinear, kem_grid

__all__ = [
    "LOSS_FACTORS",
    "LogoCapTargetConfig",
    "dense_loss",
    "encode_dense",
    "joint_oks",
    "logocap_losses",
    "pose_pool_losses",
    "upsampled_windows",
]

LOSS_FACTORS: dict[str, float] = {"heatmap": 1.0, "offset": 0.01, "kam": 0.01, "refine": 1.0}
"""``LOSS_FACTORS.{HEATMAP, REGRESSION, OKS, HM}`` of the official configs."""


@dataclass(frozen=True)
class LogoCapTargetConfig:
    """Target settings (official COCO values)."""

    stride: int = 4
    sigma: float = 2.0
    center_sigma: float = 4.0
    bg_weight: float = 0.1
    offset_radius: int = 4


def encode_dense(
    keypoints: np.ndarray,
    areas: np.ndarray | None,
    input_hw: tuple[int, int],
    num_joints: int,
    config: LogoCapTargetConfig | None = None,
) -> dict[str, np.ndarray]:
    """Dense targets of one augmented sample.

    ``keypoints`` (N, J, 3) in input pixels (v > 0 labelled), ``areas`` (N,) instance areas in
    input pixels² (``None``: keypoint-box w·h). Returns ``heatmap`` (J+1, h, w) with the centre
    last, ``heatmap_weight`` (1, h, w), ``offset`` (2J, h, w) pixel − joint in output pixels and
    ``offset_weight`` (2J, h, w), h, w = input / stride.
    """
    config = config or LogoCapTargetConfig()
    j = int(num_joints)
    kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, j, 3)
    s = config.stride
    h, w = input_hw[0] // s, input_hw[1] // s
    out = kps.copy()
    out[..., :2] = out[..., :2] / s
    centers, has = instance_centers(out, "mean_visible")
    ctr = np.concatenate([centers, has[:, None].astype(np.float64)], axis=1)
    joints_c = np.concatenate([out, ctr[:, None, :]], axis=1)  # (N, J+1, 3)
    sigmas = [config.sigma] * j + [config.center_sigma]
    hm, weight = gaussian_heatmaps(joints_c, (h, w), sigmas, bg_weight=config.bg_weight)
    shared = weight.max(axis=0, keepdims=True)  # 1 inside any joint/centre window, bg elsewhere
    if areas is None:
        x, y, v = kps[..., 0], kps[..., 1], kps[..., 2] > 0
        wbox = np.where(v, x, -np.inf).max(axis=1) - np.where(v, x, np.inf).min(axis=1)
        hbox = np.where(v, y, -np.inf).max(axis=1) - np.where(v, y, np.inf).min(axis=1)
        area = np.where(v.any(axis=1), wbox * hbox, 0.0) if kps.shape[0] else np.zeros(0)
    else:
        area = np.asarray(areas, dtype=np.float64).reshape(-1)
    area = np.maximum(area, 1.0)  # degenerate boxes must not give infinite weights
    offset, off_w = displacement_targets(out, ctr, area, (h, w), config.offset_radius)
    return {"heatmap": hm, "heatmap_weight": shared.astype(np.float32), "offset": offset, "offset_weight": off_w}


def _smooth_l1(pred: torch.Tensor, gt: torch.Tensor, beta: float = 1.0 / 9) -> torch.Tensor:
    diff = torch.abs(pred - gt)
    return torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)


def dense_loss(outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Heatmap MSE with the shared weight channel and offset smooth-L1 (beta 1/9, normalised by
    the count of positive weights), unscaled."""
    missing = [k for k in ("heatmap", "heatmap_weight", "offset", "offset_weight") if k not in targets]
    if missing:
        raise KeyError(f"LOGO-CAP loss: targets lack {missing}; got {sorted(targets)}")
    dt = outputs["heatmap"].dtype
    hm = (((outputs["heatmap"] - targets["heatmap"].to(dt)) ** 2) * targets["heatmap_weight"].to(dt)).mean()
    ow = targets["offset_weight"].to(dt)
    num_pos = max(int((ow > 0).sum()), 1)
    off = (_smooth_l1(outputs["offset"], targets["offset"].to(dt)) * ow).sum() / num_pos
    return {"heatmap_loss": hm, "offset_loss": off}


def joint_oks(pred: torch.Tensor, gt: torch.Tensor, area: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Per-joint OKS ``exp(−d² / (2·area·(2σ)²))`` of (..., J, 2) ``pred`` against (J, 2) ``gt``
    with (scalar) ``area``."""
    var = (2 * torch.as_tensor(sigmas, dtype=pred.dtype, device=pred.device)) ** 2
    d2 = ((pred - gt) ** 2).sum(-1)
    return torch.exp(-d2 / (2 * var * (area + torch.finfo(pred.dtype).eps)))


def _sampling_matrix(pos: torch.Tensor, radius: int, length: int, dtype: torch.dtype) -> torch.Tensor:
    """(M, 2r+1, length) matrix of :func:`clamped_bilinear` along one axis at ``pos + g``, g = −r..r."""
    g = torch.arange(-radius, radius + 1, device=pos.device, dtype=dtype)
    x = pos.to(dtype)[:, None] + g  # (M, S)
    x0f = torch.floor(x).clamp(0, length - 1)
    x1f = (x0f + 1).clamp(0, length - 1)
    w0 = (x1f - x).clamp(0, 1)
    w1 = (x - x0f).clamp(0, 1)
    m = torch.zeros(*x.shape, length, device=pos.device, dtype=dtype)
    m.scatter_add_(2, x0f.long()[..., None], w0[..., None])
    m.scatter_add_(2, x1f.long()[..., None], w1[..., None])
    return m


def _upsample_matrix(size_in: int, size_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(size_out, size_in) matrix of 1-D linear up-sampling with ``align_corners=False``."""
    eye = torch.eye(size_in, device=device, dtype=dtype)[:, None, :]
    return F.interpolate(eye, size=size_out, mode="linear", align_corners=False)[:, 0, :].T


def upsampled_windows(
    heatmaps: torch.Tensor, poses: torch.Tensor, input_hw: tuple[int, int], radius: int
) -> torch.Tensor:
    """(N, J, S, S) windows, S = 2·radius+1, of the (J, h, w) heatmaps bilinearly up-sampled to
    ``input_hw`` (``align_corners=False``) read by :func:`clamped_bilinear` at ``pose + (dx, dy)``
    for integer dx, dy in [−radius, radius] (window[n, j, a, b] at x + b − radius, y + a − radius).

    Equal to ``clamped_bilinear(F.interpolate(heatmaps[None], input_hw, ...)[0], x, y, channel)``
    up to float rounding: both the up-sampling and the sampler are separable linear maps, so the
    window is ``Ry @ heatmap @ Rxᵀ`` with small (S, h) / (S, w) matrices (far cheaper to train
    through than a gather over N·J·S² points of the full-resolution map).
    """
    j, h, w = heatmaps.shape
    n = poses.shape[0]
    big_h, big_w = int(input_hw[0]), int(input_hw[1])
    dt = heatmaps.dtype
    uy = _upsample_matrix(h, big_h, heatmaps.device, dt)
    ux = _upsample_matrix(w, big_w, heatmaps.device, dt)
    ry = _sampling_matrix(poses[..., 1].reshape(-1), radius, big_h, dt) @ uy  # (N·J, S, h)
    rx = _sampling_matrix(poses[..., 0].reshape(-1), radius, big_w, dt) @ ux  # (N·J, S, w)
    maps = heatmaps[None].expand(n, j, h, w).reshape(n * j, h, w)
    return (ry @ maps @ rx.transpose(1, 2)).reshape(n, j, 2 * radius + 1, 2 * radius + 1)


def pose_pool_losses(
    head: Any,
    outputs: Mapping[str, torch.Tensor],
    instances: Sequence[Mapping[str, torch.Tensor]],
    input_hw: tuple[int, int],
    *,
    max_people: int = 30,
    kem_radius: int = 5,
    global_radius: int = 48,
    global_sigma: float = 16.0,
    target_sigma: float = 4.0,
    oks_threshold: float = 0.5,
    sigmas: Sequence[float] = COCO_SIGMAS,
) -> dict[str, torch.Tensor]:
    """KAM and refined-heatmap MSE losses (unscaled) of a batch, from the decoder's pose pool.

    ``head`` provides ``joints_mlp`` and ``stride``; ``outputs`` the head's batched ``heatmap``,
    ``offset`` and ``embedding``; ``instances`` per image ``keypoints`` (N, J, 3) in input pixels
    and ``areas`` (N,) (keypoint-box area when absent).
    """
    from .decode import LogoCapDecoder

    heat, offs, emb = outputs["heatmap"], outputs["offset"], outputs["embedding"]
    dev, dt = heat.device, heat.dtype
    stride = int(getattr(head, "stride", 4))
    j = offs.shape[1] // 2
    layout = head.layout
    dec = LogoCapDecoder(layout, max_people=max_people, kem_radius=kem_radius, stride=stride)
    size = 2 * global_radius + 1
    kam_num = heat.new_zeros(())
    ref_num = heat.new_zeros(())
    count = 0
    r = torch.arange(-global_radius, global_radius + 1, device=dev, dtype=dt)
    gy, gx = torch.meshgrid(r, r, indexing="ij")
    prior = torch.exp(-(gx * gx + gy * gy) / (2 * global_sigma**2))
    prior = torch.where(prior < 1e-4, torch.zeros_like(prior), prior)
    for b, inst in enumerate(instances):
        gt = inst.get("keypoints")
        if gt is None or gt.shape[0] == 0:
            continue
        gt = gt.to(dev, dt)
        vis = gt[..., 2] > 0
        if "areas" in inst:
            area = inst["areas"].to(dev, dt).reshape(-1)
        else:
            x = torch.where(vis, gt[..., 0], torch.nan)
            y = torch.where(vis, gt[..., 1], torch.nan)
            area = ((x.nan_to_num(-1e9).amax(1) - x.nan_to_num(1e9).amin(1))
                    * (y.nan_to_num(-1e9).amax(1) - y.nan_to_num(1e9).amin(1))).clamp(min=1.0)
        with torch.no_grad():
            hr_c = F.interpolate(heat[b : b + 1, -1:].detach(), size=input_hw, mode="bilinear", align_corners=False)[0, 0]
            top, _ = dec.centers(hr_c)
            init = dec.initial_poses(offs[b].detach(), top)  # (K, J, 2)
            cand = kem_grid(init, sigmas, kem_radius)  # (K, k, k, J, 2)
            k = cand.shape[1]
            # (K, G, k, k, J) per-joint OKS of every candidate against every person
            oks = torch.stack(
                [joint_oks(cand, gt[g, :, :2], area[g], sigmas) for g in range(gt.shape[0])], dim=1
            )
            v = vis[None, :, None, None, :].to(dt)
            win_best = (oks * v).flatten(2, 3).amax(2)  # (K, G, J) best window OKS per joint
            nvis = vis.sum(1).clamp(min=1).to(dt)  # (G,)
            person_score = win_best.sum(-1) / nvis  # (K, G)
            best, assign = person_score.max(dim=1)  # (K,)
            keep = best >= oks_threshold
            if not bool(keep.any()):
                keep[int(best.argmax())] = True
            idx = torch.nonzero(keep).flatten()
            g_idx = assign[idx]
            tgt_kam = oks[idx, g_idx].permute(0, 3, 1, 2)  # (n, J, k, k)
            centre_oks = oks[idx, g_idx, kem_radius, kem_radius]  # (n, J)
            weight = (win_best[idx, g_idx] - centre_oks).clamp(min=0) * vis[g_idx].to(dt)
            weight = weight * (best[idx] >= oks_threshold).to(dt)[:, None]
            gt_j = gt[g_idx, :, :2]  # (n, J, 2)
            pj = init[idx]  # (n, J, 2)
            wx = pj[..., 0, None, None] + gx  # (n, J, S, S)
            wy = pj[..., 1, None, None] + gy
            d2 = (wx - gt_j[..., 0, None, None]) ** 2 + (wy - gt_j[..., 1, None, None]) ** 2
            tgt_ref = torch.exp(-d2 / (2 * target_sigma**2))
        n = idx.numel()
        sel = cand[idx]
        s = float(stride)
        vals = clamped_bilinear(emb[b], sel[..., 0] / s, sel[..., 1] / s)  # (D, n, k, k, J)
        x = vals.permute(1, 4, 0, 2, 3).reshape(n, j * emb.shape[1], k, k)
        kam = head.joints_mlp(x)  # (n, J, k, k), raw
        kam_num = kam_num + (((kam - tgt_kam) ** 2).mean(dim=(2, 3)) * weight).sum()
        window = upsampled_windows(heat[b, :j], pj, input_hw, global_radius) * prior
        kernel = torch.flip(kam.clamp(0, 1), dims=(-2, -1)).reshape(n * j, 1, k, k)
        # channels-last: the same sums, ~3x faster forward + backward for this depthwise 11x11 conv on CPU
        win = window.reshape(1, n * j, size, size).contiguous(memory_format=torch.channels_last)
        kernel = kernel.contiguous(memory_format=torch.channels_last)
        resp = F.conv2d(win, kernel, padding=k // 2, groups=n * j).contiguous() / float(k * k)
        resp = resp.reshape(n, j, size, size)
        ref_num = ref_num + (((resp - tgt_ref) ** 2).mean(dim=(2, 3)) * weight).sum()
        count += int((best[idx] >= oks_threshold).sum())
    denom = float(max(count, 1))
    return {"kam_loss": kam_num / denom, "refine_loss": ref_num / denom}


def logocap_losses(
    head: Any,
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    instances: Sequence[Mapping[str, torch.Tensor]],
    input_hw: tuple[int, int],
    factors: Mapping[str, float] = LOSS_FACTORS,
    **pool_options: Any,
) -> dict[str, torch.Tensor]:
    """The four LOGO-CAP loss terms with their factors: ``heatmap_loss``, ``offset_loss``,
    ``kam_loss``, ``refine_loss``. ``pool_options`` go to :func:`pose_pool_losses`."""
    dense = dense_loss(outputs, targets)
    pool = pose_pool_losses(head, outputs, instances, input_hw, **pool_options)
    return {
        "heatmap_loss": dense["heatmap_loss"] * factors["heatmap"],
        "offset_loss": dense["offset_loss"] * factors["offset"],
        "kam_loss": pool["kam_loss"] * factors["kam"],
        "refine_loss": pool["refine_loss"] * factors["refine"],
    }
