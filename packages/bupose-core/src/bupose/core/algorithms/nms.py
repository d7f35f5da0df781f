"""Pose NMS: greedy suppression of poses that share enough joints.

Pose ``a`` overlaps pose ``b`` when more than ``min_joints`` joints satisfy
``|p_a,j - p_b,j| < ratio * sqrt(w_a^2 + h_a^2)`` (``w_a``, ``h_a`` the extent of pose a's joints):
the relation is asymmetric (a's own size sets the radius). The greedy walk goes through the poses
in input order, skips suppressed ones, keeps the best-ranked member of the current pose's overlap
set (unless that one is already suppressed) and suppresses the whole set. DEKR ranks by mean heat
value (``ratio`` 0.05, ``min_joints`` 8 COCO / 7 CrowdPose), LOGO-CAP by pose score with
``skip_empty``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["pose_nms", "pose_overlap"]


def pose_overlap(coords: torch.Tensor, *, ratio: float, min_joints: int) -> torch.Tensor:
    """(N, N) bool: ``[a, b]`` when more than ``min_joints`` joints of b lie within
    ``ratio * sqrt(w_a^2 + h_a^2)`` of a's. ``coords`` (N, J, 2)."""
    x, y = coords[:, :, 0], coords[:, :, 1]
    w = x.max(-1)[0] - x.min(-1)[0]
    h = y.max(-1)[0] - y.min(-1)[0]
    thre = ratio * torch.sqrt(w * w + h * h)
    diff = coords[:, None, :, :] - coords
    dist = diff.pow(2).sum(3).sqrt()
    return (dist < thre[:, None, None]).sum(2) > min_joints


def pose_nms(
    coords: torch.Tensor,
    ranking: torch.Tensor,
    *,
    ratio: float,
    min_joints: int,
    skip_empty: bool = True,
) -> list[int]:
    """Indices of the poses kept by the greedy pose NMS, in the order it keeps them.

    ``coords`` (N, J, 2), ``ranking`` (N,) (higher is better). A pose whose overlap set is empty
    (all joints at one point, so a zero radius) is skipped with ``skip_empty``; otherwise it is an
    error, as in the official DEKR loop.
    """
    n = coords.shape[0]
    if n == 0:
        return []
    if ranking.shape != (n,):
        raise ValueError(f"pose_nms: ranking must be ({n},), got {tuple(ranking.shape)}")
    overlap = pose_overlap(coords, ratio=ratio, min_joints=min_joints).cpu().numpy()
    rank = ranking.detach().cpu().numpy()
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in range(n):
        if suppressed[i]:
            continue
        members = np.flatnonzero(overlap[i])
        if members.size == 0:
            if skip_empty:
                continue
            raise ValueError(
                f"pose_nms: pose {i} overlaps no pose, not even itself (all its joints coincide)"
            )
        best = int(members[int(np.argmax(rank[members]))])
        if suppressed[best]:
            continue
        keep.append(best)
        suppressed[members] = True
    return keep
