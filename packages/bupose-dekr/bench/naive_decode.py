"""A straightforward DEKR decode for comparison: full maps everywhere and Python loops.

Builds the merged heatmaps and pose maps over whole maps, up-samples every scale's heatmap to the
input size, and runs pose NMS with per-pose Python loops and list membership tests, the way the
official test loop does. Used by ``bench_dekr.py`` (speed reference) and by the tests (an
independent second implementation of the same rules).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bupose.dekr.decode import DEKRDecoder, ScaleOutput, up_interpolate


def merged_maps(o: ScaleOutput, flip_index_with_center: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Full (J+1, h, w) merged heatmap and (h*w, J, 2) merged pose map of one scale."""
    hm, off = o.heatmap.float(), o.offset.float()
    J = off.shape[0] // 2
    h, w = hm.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    loc = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)[:, None, :]
    poses = loc - off.permute(1, 2, 0).reshape(h * w, J, 2)
    if o.heatmap_flip is None:
        return hm, poses
    fi = list(flip_index_with_center)
    hmf = torch.flip(o.heatmap_flip.float(), [2])[fi]
    hm = (hm + hmf) / 2.0
    pf = loc - o.offset_flip.float().permute(1, 2, 0).reshape(h * w, J, 2)
    pf = pf[:, fi[:J], :]
    pf[:, :, 0] = w - pf[:, :, 0] - 1
    pf = pf.reshape(h, w, J, 2).flip(1).reshape(h * w, J, 2)
    return hm, (poses + pf) / 2.0


def naive_decode(dec: DEKRDecoder, outs: Sequence[ScaleOutput]) -> tuple[np.ndarray, list[float]]:
    """Poses (K, J, 3) in scale-1 input pixels and scores after pose NMS (no MATCH_HMP)."""
    outs = sorted(outs, key=lambda o: -o.scale)
    fi = dec.flip_index_with_center.tolist()
    heat_sum: torch.Tensor | int = 0
    proposals = []
    for o in outs:
        hm, pm = merged_maps(o, fi)
        h, w = hm.shape[-2:]
        rs = dec.stride / o.scale
        heat_sum = heat_sum + up_interpolate(hm[None], (int(rs * h), int(rs * w)))
        c = hm[-1:][None]
        size = (h + w) / 2.0
        k = 7 if size > dec.pool_threshold1 else 5 if size > dec.pool_threshold2 else 3
        peaks = c * torch.eq(F.max_pool2d(c, k, 1, k // 2), c).float()
        scores, ind = peaks.view(-1).topk(dec.max_num_people)
        sel = scores > dec.keypoint_threshold
        scores, ind = scores[sel], ind[sel]
        pose = rs * pm[ind]
        proposals.append(torch.cat([pose, scores[:, None, None].expand(-1, pose.shape[1], 1)], dim=2))
    assert isinstance(heat_sum, torch.Tensor)
    heat_avg = heat_sum / len(outs)
    i1 = [o.scale for o in outs].index(1.0)
    m1 = proposals[i1][:, :, 2].max() if len(proposals[i1]) else 1
    for i, p in enumerate(proposals):
        if i != i1:
            ms = p[:, :, 2].max() if len(p) else 1
            p[:, :, 2] = p[:, :, 2] / ms * m1 * dec.decrease
    coord = torch.cat([p[:, :, :2] for p in proposals])
    score = torch.cat([p[:, :, 2:] for p in proposals])
    if len(coord) == 0:
        return np.zeros((0, dec.num_joints, 3), np.float32), []
    n, J, _ = coord.shape
    H, W = heat_avg.shape[-2:]
    flat = heat_avg[0, :-1].flatten(1, 2).transpose(0, 1)
    yb = torch.clamp(torch.floor(coord[:, :, 1]), 0, H - 1).long()
    xl = torch.clamp(torch.floor(coord[:, :, 0]), 0, W - 1).long()
    heatval = torch.gather(flat, 0, yb * W + xl).unsqueeze(-1)
    heat_score = (heatval.sum(1) / J)[:, 0]
    poses = torch.cat([coord, score * heatval], dim=2)
    # per-pose Python loops, like the official nms_core
    keep: list[int] = []
    ignored: list[int] = []
    for i in range(n):
        if i in ignored:
            continue
        xa, ya = coord[i, :, 0], coord[i, :, 1]
        area = (xa.max() - xa.min()) ** 2 + (ya.max() - ya.min()) ** 2
        thre = dec.nms_thre * torch.sqrt(area)
        group = []
        for b in range(n):
            close = 0
            for j in range(J):
                d = torch.sqrt(((coord[i, j] - coord[b, j]) ** 2).sum())
                if d < thre:
                    close += 1
            if close > dec.nms_num_thre:
                group.append(b)
        best = group[int(torch.argmax(heat_score[group]))]
        if best in ignored:
            continue
        keep.append(best)
        ignored += [g for g in group if g not in ignored]
    poses = poses[keep]
    hs = heat_score[keep]
    if len(keep) > dec.max_num_people:
        hs, top = torch.topk(hs, dec.max_num_people)
        poses = poses[top]
    arr = poses.numpy()
    return arr, [float(p[:, 2].mean()) for p in arr]
