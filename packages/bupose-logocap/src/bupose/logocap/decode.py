"""LOGO-CAP decoding: everything between the network outputs and the final poses.

Semantics follow the official eval path (cherubicXN/logocap ``Model.forward`` with flip test,
``Decoder`` and ``LogoCapInference``), quirks included:

- flip merge without a pixel shift: heatmaps flipped back and re-indexed with the layout's flip
  index plus the centre; offsets flipped back, joints permuted, dx negated; both averaged; the
  embedding comes from the unflipped image only;
- heatmaps bilinearly up-sampled (``align_corners=False``) to the network-input size;
- centre NMS: 3x3 max-pool of the clamped (>= 0) centre map compared with the unclamped one,
  top-``max_people``, no threshold; centres with score >= ``center_threshold`` kept (at least one);
- initial poses ``(c/4 − offset)·4`` with the offset read at the truncated ``c/4`` pixel;
- local KEM: an 11x11 grid per joint stepped by ``sigma_j / min(sigma)`` (COCO OKS sigmas);
- KAM: the embedding sampled at every candidate with the repository's clamped bilinear scheme,
  fed joint-major to the head's ``joints_mlp``, clamped to [0, 1];
- adaptation ``full``: a 97x97 window of the joint's heatmap around the initial joint, times a
  Gaussian prior (sigma 16, cut at 1e-4), convolved with the flipped KAM / 121, top-2 blended
  0.75/0.25 in position and value; ``partial``: the KEM candidate at the KAM argmax; ``none``:
  the initial pose with the heatmap value there;
- joint values times the centre score, pose score = mean, poses with score <= 0 dropped;
- back-projection to image pixels, pose NMS ranked by pose score (radius
  ``0.05·sqrt(w² + h²)`` of the row pose, more than 8 joints), top ``max_people``.

Shared pieces (flip maps, peak NMS, back-projection, pose NMS) come from
:mod:`bupose.core.algorithms`; the LOGO-CAP-specific ones live here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from bupose.core.algorithms.geometry import WarpMeta, back_project
from bupose.core.algorithms.maps import find_peaks, flat_to_xy
from bupose.core.algorithms.nms import pose_nms
from bupose.core.algorithms.tta import flip_back, flip_back_offsets
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec

__all__ = [
    "ADAPTATION_LEVELS",
    "COCO_SIGMAS",
    "DecodeTrace",
    "KamFn",
    "LogoCapDecoder",
    "clamped_bilinear",
    "global_adaptation",
    "kem_grid",
    "merge_flip",
]

ADAPTATION_LEVELS = ("full", "partial", "none")
Adaptation = Literal["full", "partial", "none"]
COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087,
    0.087, 0.089, 0.089,
)
"""COCO OKS sigmas (the official ``PERSON_SIGMA_DICT['coco']``)."""

KamFn = Callable[[torch.Tensor], torch.Tensor]
"""(N, J·D, k, k) joint-major sampled embeddings -> (N, J, k, k) raw KAM maps (the decoder clamps
them to [0, 1]); ``lambda x: head.kam(x, clamp=False)``."""


def clamped_bilinear(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor, channel: torch.Tensor | None = None) -> torch.Tensor:
    """LOGO-CAP's bilinear sampler on (C, H, W) ``maps`` at pixel coordinates ``x``, ``y``.

    ``x0 = clamp(floor x, 0, W−1)``, ``x1 = clamp(x0 + 1, 0, W−1)``, weights ``clamp(x1 − x, 0, 1)``
    and ``clamp(x − x0, 0, 1)`` (same for y): negative coordinates replicate the first row/column, a
    point exactly on the last row/column gets weight 0 on both neighbours. Not ``grid_sample``.

    Without ``channel`` every channel is sampled at every point: (C, *x.shape). With ``channel``
    (same shape as ``x``, long) point ``i`` reads only its channel: x.shape.
    """
    c, h, w = maps.shape
    x = x.to(maps.dtype)
    y = y.to(maps.dtype)
    x0f = torch.floor(x).clamp(0, w - 1)
    y0f = torch.floor(y).clamp(0, h - 1)
    x1f = (x0f + 1).clamp(0, w - 1)
    y1f = (y0f + 1).clamp(0, h - 1)
    wx0 = (x1f - x).clamp(0, 1)
    wx1 = (x - x0f).clamp(0, 1)
    wy0 = (y1f - y).clamp(0, 1)
    wy1 = (y - y0f).clamp(0, 1)
    x0, x1, y0, y1 = x0f.long(), x1f.long(), y0f.long(), y1f.long()
    if channel is None:
        flat = maps.reshape(c, h * w)

        def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
            return flat[:, (yy * w + xx).reshape(-1)].reshape(c, *x.shape)
    else:
        flat = maps.reshape(-1)
        base = channel.long() * (h * w)

        def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
            return flat[base + yy * w + xx]

    ia, ib, ic, id_ = at(y0, x0), at(y1, x0), at(y0, x1), at(y1, x1)
    return wx0 * wy0 * ia + wx0 * wy1 * ib + wx1 * wy0 * ic + wx1 * wy1 * id_


def kem_grid(poses: torch.Tensor, sigmas: Sequence[float], radius: int = 5) -> torch.Tensor:
    """Local keypoint expansion: (N, J, 2) poses -> (N, k, k, J, 2) candidates, k = 2·radius+1.

    Joint j is expanded by offsets ``(b − radius, a − radius)·sigma_j / min(sigma)`` at grid index
    [a, b] (row a = dy, column b = dx).
    """
    s = torch.as_tensor(sigmas, dtype=poses.dtype, device=poses.device)
    step = s / s.min()
    r = torch.arange(-radius, radius + 1, dtype=poses.dtype, device=poses.device)
    dy, dx = torch.meshgrid(r, r, indexing="ij")  # (k, k)
    off = torch.stack([dx, dy], dim=-1)[:, :, None, :] * step[None, None, :, None]  # (k, k, J, 2)
    return poses[:, None, None, :, :] + off[None]


def merge_flip(
    heatmap: torch.Tensor,
    offset: torch.Tensor,
    heatmap_flip: torch.Tensor | None,
    offset_flip: torch.Tensor | None,
    flip_index: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The flip-test average of (J+1, h, w) heatmaps and (2J, h, w) offsets (no pixel shift)."""
    if heatmap_flip is None or offset_flip is None:
        return heatmap, offset
    hm_index = (*flip_index, len(flip_index))
    hm = (heatmap + flip_back(heatmap_flip, hm_index)) / 2
    of = (offset + flip_back_offsets(offset_flip, flip_index)) / 2
    return hm, of


def global_adaptation(
    heatmaps_hr: torch.Tensor,
    poses: torch.Tensor,
    kam: torch.Tensor,
    *,
    radius: int = 48,
    sigma: float = 16.0,
    cut: float = 1e-4,
    trace: DecodeTrace | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global KEM + adaptation of (N, J, 2) initial poses at input resolution.

    Returns refined joints (N, J, 2) and their values (N, J). ``heatmaps_hr`` is (J+1, H, W) (only
    the joint channels are read), ``kam`` (N, J, k, k) the clamped KAM maps.
    """
    n, j, _ = poses.shape
    size = 2 * radius + 1
    k = kam.shape[-1]
    dev, dt = poses.device, heatmaps_hr.dtype
    r = torch.arange(-radius, radius + 1, device=dev, dtype=dt)
    gy, gx = torch.meshgrid(r, r, indexing="ij")  # window[a, b] = (x + b − radius, y + a − radius)
    prior = torch.exp(-(gx * gx + gy * gy) / (2 * sigma * sigma))
    prior = torch.where(prior < cut, torch.zeros_like(prior), prior)
    px = poses[..., 0].to(dt)[:, :, None, None] + gx
    py = poses[..., 1].to(dt)[:, :, None, None] + gy
    channel = torch.arange(j, device=dev)[None, :, None, None].expand(n, j, size, size)
    window = clamped_bilinear(heatmaps_hr, px, py, channel) * prior  # (N, J, S, S)
    weight = torch.flip(kam, dims=(-2, -1)).reshape(n * j, 1, k, k).to(dt)
    resp = F.conv2d(window.reshape(1, n * j, size, size), weight, padding=k // 2, groups=n * j) / float(k * k)
    flat = resp.reshape(n, j, size * size)
    top = flat.topk(3 if trace is not None else 2, dim=-1)
    if trace is not None:
        trace.global_top3_value = top.values
        trace.global_top3_index = top.indices
    v = top.values[..., :2]
    idx = top.indices[..., :2]
    xs = (idx % size).to(dt)
    ys = torch.div(idx, size, rounding_mode="floor").to(dt)
    bx = 0.75 * xs[..., 0] + 0.25 * xs[..., 1] - radius
    by = 0.75 * ys[..., 0] + 0.25 * ys[..., 1] - radius
    value = 0.75 * v[..., 0] + 0.25 * v[..., 1]
    refined = torch.stack([poses[..., 0] + bx, poses[..., 1] + by], dim=-1)
    return refined, value


@dataclass
class DecodeTrace:
    """Intermediate values of one decode (for tests and debugging), named as the fixtures."""

    centers_top: torch.Tensor | None = None
    center_mask: torch.Tensor | None = None
    center_poses: torch.Tensor | None = None
    kam_raw: torch.Tensor | None = None
    global_top3_value: torch.Tensor | None = None
    global_top3_index: torch.Tensor | None = None
    out_poses: torch.Tensor | None = None
    out_scores: torch.Tensor | None = None
    out_centers: torch.Tensor | None = None
    out_initial_poses: torch.Tensor | None = None
    nms_keep: list[int] = field(default_factory=list)


class LogoCapDecoder:
    """LOGO-CAP post-processing for one image at a time.

    Args:
        layout: the keypoint layout (its flip index and OKS sigmas are used).
        adaptation: ``full`` (official), ``partial`` or ``none`` (the paper's ablations).
        max_people: centres taken by the centre NMS and poses kept after pose NMS (30).
        center_threshold: centres kept when their score is >= this (0.01).
        nms_ratio, nms_joints: pose-NMS radius factor (0.05) and joint count (> 8).
        kem_radius: half size of the local KEM grid (5 -> 11x11).
        global_radius, global_sigma: half size of the global window (48 -> 97x97) and its prior.
        stride: input pixels per output pixel (4).
        pose_nms: apply the pose NMS (official on).
    """

    def __init__(
        self,
        layout: LayoutSpec,
        *,
        adaptation: Adaptation = "full",
        max_people: int = 30,
        center_threshold: float = 0.01,
        nms_ratio: float = 0.05,
        nms_joints: int = 8,
        kem_radius: int = 5,
        global_radius: int = 48,
        global_sigma: float = 16.0,
        stride: int = 4,
        pose_nms: bool = True,
    ) -> None:
        if adaptation not in ADAPTATION_LEVELS:
            raise ValueError(f"LogoCapDecoder: adaptation must be one of {ADAPTATION_LEVELS}, got {adaptation!r}")
        if max_people < 1:
            raise ValueError(f"LogoCapDecoder: max_people must be >= 1, got {max_people}")
        self.layout = layout
        self.adaptation = adaptation
        self.max_people = int(max_people)
        self.center_threshold = float(center_threshold)
        self.nms_ratio = float(nms_ratio)
        self.nms_joints = int(nms_joints)
        self.kem_radius = int(kem_radius)
        self.global_radius = int(global_radius)
        self.global_sigma = float(global_sigma)
        self.stride = int(stride)
        self.pose_nms = bool(pose_nms)
        self.flip_index = tuple(layout.flip_index)
        self.sigmas = tuple(layout.sigmas)

    # ------------------------------------------------------------------ stages
    def centers(self, center_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top centres (K, 3) (x, y, score) of an input-resolution centre map and the kept mask."""
        w = center_map.shape[-1]
        index, scores = find_peaks(center_map, kernel=3, topk=self.max_people, clamp_min=0.0)
        xs, ys = flat_to_xy(index, w)
        top = torch.stack([xs.to(scores.dtype), ys.to(scores.dtype), scores], dim=1)
        mask = scores >= self.center_threshold
        if not bool(mask.any()):
            mask[0] = True
        return top, mask

    def initial_poses(self, offset: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """(K, J, 2) poses ``(c/s − offset)·s`` read at the truncated centre/s output pixel."""
        s = float(self.stride)
        cx, cy = centers[:, 0] / s, centers[:, 1] / s
        ix, iy = cx.long(), cy.long()
        off = offset[:, iy, ix].T.reshape(-1, self.layout.num_keypoints, 2)  # (K, J, (dx, dy))
        return torch.stack([(cx[:, None] - off[..., 0]) * s, (cy[:, None] - off[..., 1]) * s], dim=-1)

    def kam_input(self, embedding: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """(N, J·D, k, k) joint-major embeddings sampled at (N, k, k, J, 2) candidates / stride."""
        s = float(self.stride)
        n, k, _, j, _ = candidates.shape
        d = embedding.shape[0]
        vals = clamped_bilinear(embedding, candidates[..., 0] / s, candidates[..., 1] / s)  # (D, N, k, k, J)
        return vals.permute(1, 4, 0, 2, 3).reshape(n, j * d, k, k)

    # ------------------------------------------------------------------ decode
    def decode_network(
        self,
        heatmap: torch.Tensor,
        offset: torch.Tensor,
        embedding: torch.Tensor,
        kam_fn: KamFn,
        input_hw: tuple[int, int],
        heatmap_flip: torch.Tensor | None = None,
        offset_flip: torch.Tensor | None = None,
        trace: DecodeTrace | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Poses (M, J, 3) (x, y, value·centre score) in network-input pixels and scores (M,), as
        the official ``Model.forward`` returns them (poses with score > 0, centre order)."""
        heatmap = heatmap.float()
        offset = offset.float()
        embedding = embedding.float()
        hm, of = merge_flip(
            heatmap, offset,
            None if heatmap_flip is None else heatmap_flip.float(),
            None if offset_flip is None else offset_flip.float(),
            self.flip_index,
        )
        hr = F.interpolate(hm[None], size=tuple(input_hw), mode="bilinear", align_corners=False)[0]
        top, mask = self.centers(hr[-1])
        init_all = self.initial_poses(of, top)
        if trace is not None:
            trace.centers_top, trace.center_mask, trace.center_poses = top, mask, init_all
        centers = top[mask]
        init = init_all[mask]
        if self.adaptation == "none":
            j = init.shape[1]
            ch = torch.arange(j, device=init.device)[None].expand(init.shape[0], j)
            value = clamped_bilinear(hr, init[..., 0], init[..., 1], ch)
            joints = init
        else:
            cand = kem_grid(init, self.sigmas, self.kem_radius)  # (N, k, k, J, 2)
            x = self.kam_input(embedding, cand)
            kam_raw = kam_fn(x)
            if trace is not None:
                trace.kam_raw = kam_raw
            kam = kam_raw.clamp(0.0, 1.0)
            if self.adaptation == "partial":
                n, j, k, _ = kam.shape
                best, arg = kam.reshape(n, j, k * k).max(dim=-1)
                c = cand.permute(0, 3, 1, 2, 4).reshape(n, j, k * k, 2)
                joints = torch.gather(c, 2, arg[..., None, None].expand(n, j, 1, 2))[:, :, 0]
                value = best
            else:
                joints, value = global_adaptation(
                    hr, init, kam, radius=self.global_radius, sigma=self.global_sigma, trace=trace
                )
        value = value * centers[:, 2:3]
        scores = value.mean(dim=1)
        poses = torch.cat([joints, value[..., None]], dim=-1)
        keep = scores > 0
        if trace is not None:
            trace.out_poses, trace.out_scores = poses[keep], scores[keep]
            trace.out_centers, trace.out_initial_poses = centers, init[keep]
        return poses[keep], scores[keep]

    def finalize(self, poses: torch.Tensor, scores: torch.Tensor, meta: WarpMeta, trace: DecodeTrace | None = None) -> Poses:
        """Network-input poses -> image pixels (back-projection of the test warp ``meta``), then
        :meth:`finalize_points`."""
        if poses.shape[0] == 0:
            return Poses.empty(self.layout.num_keypoints, self.layout.name)
        pts = back_project(poses.detach().cpu().numpy().astype(np.float32), meta)
        return self.finalize_points(pts, scores.detach().cpu().numpy(), trace)

    def finalize_points(self, points: np.ndarray, scores: np.ndarray, trace: DecodeTrace | None = None) -> Poses:
        """Image-pixel poses (M, J, 3) and scores (M,) -> pose NMS ranked by pose score, top
        ``max_people`` (by score when more are kept)."""
        j = self.layout.num_keypoints
        pts = np.asarray(points)
        sc = np.asarray(scores)
        if pts.shape[0] == 0:
            if trace is not None:
                trace.nms_keep = []
            return Poses.empty(j, self.layout.name)
        if self.pose_nms:
            keep = pose_nms(torch.from_numpy(np.ascontiguousarray(pts[:, :, :2])), torch.from_numpy(sc),
                            ratio=self.nms_ratio, min_joints=self.nms_joints, skip_empty=True)
        else:
            keep = list(range(pts.shape[0]))
        if len(keep) > self.max_people:
            order = np.argsort(-sc[keep], kind="stable")[: self.max_people]
            keep = [keep[i] for i in order]
        if trace is not None:
            trace.nms_keep = list(keep)
        return Poses(pts[keep].astype(np.float64), sc[keep].astype(np.float64), self.layout.name)

    def decode(
        self,
        heatmap: torch.Tensor,
        offset: torch.Tensor,
        embedding: torch.Tensor,
        kam_fn: KamFn,
        meta: WarpMeta,
        heatmap_flip: torch.Tensor | None = None,
        offset_flip: torch.Tensor | None = None,
        trace: DecodeTrace | None = None,
    ) -> Poses:
        """Poses in image pixels for one image's (J+1|2J|D, h, w) network outputs at the input size
        of ``meta`` (flip outputs optional)."""
        w_in, h_in = meta.size_wh
        poses, scores = self.decode_network(
            heatmap, offset, embedding, kam_fn, (h_in, w_in), heatmap_flip, offset_flip, trace
        )
        return self.finalize(poses, scores, meta, trace)

    def options(self) -> dict[str, Any]:
        """The decoder's settings (JSON-able)."""
        return {
            "adaptation": self.adaptation, "max_people": self.max_people,
            "center_threshold": self.center_threshold, "nms_ratio": self.nms_ratio,
            "nms_joints": self.nms_joints, "kem_radius": self.kem_radius,
            "global_radius": self.global_radius, "global_sigma": self.global_sigma, "stride": self.stride,
            "pose_nms": self.pose_nms,
        }
