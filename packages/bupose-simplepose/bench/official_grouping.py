"""The SimplePose grouping as the official ``evaluate.py`` runs it: plain Python loops, one candidate pair
and one person at a time. Written for the benchmark from the algorithm's description (reference notes and
golden README), not copied; it produces the same records as ``bupose.simplepose.grouping``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bupose.simplepose.config import COCO_FROM_CMU, LIMBS


def find_peaks_loop(heatmaps: np.ndarray, thre1: float = 0.1, radius: int = 2) -> list[list[tuple]]:
    """Per part: NMS mask, then each peak refined on its own (float32 map, swapped mgrid axes)."""
    maps = heatmaps[:, :, :18].astype(np.float32)
    h, w = maps.shape[:2]
    # the official NMS runs in torch (on the GPU): reflect pad, 3x3 max pool, keep maxima >= thre1
    t = torch.from_numpy(np.ascontiguousarray(maps.transpose(2, 0, 1)))[None]
    hmax = F.max_pool2d(F.pad(t, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    nms = (t * ((hmax == t) & (t >= thre1)).float())[0].numpy().transpose(1, 2, 0)
    all_peaks: list[list[tuple]] = []
    counter = 0
    for part in range(18):
        m = maps[:, :, part]
        keep = nms[:, :, part]
        ys, xs = np.nonzero(keep)
        peaks = []
        for x, y in zip(xs, ys, strict=True):
            if y + radius + 1 > h or y - radius < 0 or x + radius + 1 > w or x - radius < 0:
                refined = (x, y, m[y, x])
            else:
                box = m[y - radius : y + radius + 1, x - radius : x + radius + 1]
                gx, gy = np.mgrid[-radius : radius + 1, -radius : radius + 1]
                ox = (box * gx).sum() / box.sum()
                oy = (box * gy).sum() / box.sum()
                refined = (x + ox, y + oy, box.mean())
            peaks.append((*refined, counter))
            counter += 1
        all_peaks.append(peaks)
    return all_peaks


def find_connections_loop(all_peaks, limb_maps: np.ndarray, image_height: float, thre2=0.1, ratio=0.8, mid_num=20):
    connection_all, special_k = [], []
    for k, (ja, jb) in enumerate(LIMBS):
        score_mid = limb_maps[:, :, k]
        cand_a, cand_b = all_peaks[ja], all_peaks[jb]
        if not cand_a or not cand_b:
            special_k.append(k)
            connection_all.append([])
            continue
        pairs = []
        for i, a in enumerate(cand_a):
            for j, b in enumerate(cand_b):
                vx, vy = b[0] - a[0], b[1] - a[1]
                norm = math.sqrt(vx * vx + vy * vy)
                n = min(int(round(norm + 1)), mid_num)  # noqa: RUF046 - as written officially
                if norm == 0:
                    continue
                pts = list(zip(np.linspace(a[0], b[0], num=n), np.linspace(a[1], b[1], num=n), strict=True))
                vals = np.array([score_mid[int(round(py)), int(round(px))] for px, py in pts])  # noqa: RUF046
                score = sum(vals) / len(vals) + min(0.5 * image_height / norm - 1, 0)
                if len(np.nonzero(vals > thre2)[0]) >= ratio * len(vals) and score > 0:
                    pairs.append([i, j, score, norm, 0.5 * score + 0.25 * a[2] + 0.25 * b[2]])
        pairs = sorted(pairs, key=lambda r: r[4], reverse=True)
        conn = np.zeros((0, 6))
        for i, j, s, length, _ in pairs:
            if i not in conn[:, 3] and j not in conn[:, 4]:
                conn = np.vstack([conn, [cand_a[i][3], cand_b[j][3], s, i, j, length]])
                if len(conn) >= min(len(cand_a), len(cand_b)):
                    break
        connection_all.append(conn)
    return connection_all, special_k


def find_people_loop(connection_all, special_k, all_peaks, len_rate=16.0, tole=0.7, remove_recon=0):
    candidate = np.array([p for peaks in all_peaks for p in peaks], dtype=np.float64).reshape(-1, 4)
    subset = -np.ones((0, 20, 2))
    for k, (ia, ib) in enumerate(LIMBS):
        if k in special_k:
            continue
        conn = connection_all[k]
        for c in range(len(conn)):
            pa, pb, s, length = conn[c][0], conn[c][1], conn[c][2], conn[c][5]
            found, idx = 0, [-1, -1]
            for j in range(len(subset)):
                if int(subset[j][ia][0]) == int(pa) or int(subset[j][ib][0]) == int(pb):
                    if found >= 2:
                        continue
                    idx[found] = j
                    found += 1
            if found == 1:
                j = idx[0]
                if int(subset[j][ib][0]) == -1 and len_rate * subset[j][-1][1] > length:
                    subset[j][ib] = (pb, s)
                    subset[j][-1][0] += 1
                    subset[j][-2][0] += candidate[int(pb), 2] + s
                    subset[j][-1][1] = max(length, subset[j][-1][1])
                elif int(subset[j][ib][0]) != int(pb):
                    if subset[j][ib][1] >= s or len_rate * subset[j][-1][1] <= length:
                        continue
                    subset[j][-2][0] -= candidate[int(subset[j][ib][0]), 2] + subset[j][ib][1]
                    subset[j][ib] = (pb, s)
                    subset[j][-2][0] += candidate[int(pb), 2] + s
                    subset[j][-1][1] = max(length, subset[j][-1][1])
                elif subset[j][ib][1] <= s:
                    if len_rate * subset[j][-1][1] <= length:
                        continue
                    subset[j][-2][0] -= candidate[int(subset[j][ib][0]), 2] + subset[j][ib][1]
                    subset[j][ib] = (pb, s)
                    subset[j][-2][0] += candidate[int(pb), 2] + s
                    subset[j][-1][1] = max(length, subset[j][-1][1])
            elif found == 2:
                j1, j2 = idx
                m1 = (subset[j1][:, 0] >= 0)[:-2]
                m2 = (subset[j2][:, 0] >= 0)[:-2]
                if not np.any(m1 & m2):
                    tol = min(np.min(subset[j1, :-2, 1][m1]), np.min(subset[j2, :-2, 1][m2]))
                    if s < tole * tol or len_rate * subset[j1][-1][1] <= length:
                        continue
                    subset[j1][:-2] += subset[j2][:-2] + 1
                    subset[j1][-2:, 0] += subset[j2][-2:, 0]
                    subset[j1][-2][0] += s
                    subset[j1][-1][1] = max(length, subset[j1][-1][1])
                    subset = np.delete(subset, j2, 0)
                elif remove_recon > 0:
                    if pa in subset[j1, :-2, 0]:
                        c1, c2 = ia, ib
                    else:
                        c1, c2 = ib, ia
                    if s < subset[j1][c1][1] and s < subset[j2][c2][1]:
                        continue
                    small, rc = (j2, c2) if subset[j1][c1][1] > subset[j2][c2][1] else (j1, c1)
                    subset[small][-2][0] -= candidate[int(subset[small][rc][0]), 2] + subset[small][rc][1]
                    subset[small][rc] = (-1, -1)
                    subset[small][-1][0] -= 1
            else:
                row = -np.ones((20, 2))
                row[ia] = (pa, s)
                row[ib] = (pb, s)
                row[-1] = (2, length)
                row[-2][0] = sum(candidate[[int(pa), int(pb)], 2]) + s
                subset = np.concatenate([subset, row[None]], axis=0)
    drop = [i for i in range(len(subset)) if subset[i][-1][0] < 2 or subset[i][-2][0] / subset[i][-1][0] < 0.45]
    return np.delete(subset, drop, axis=0), candidate


def group_loop(heatmaps: np.ndarray, limb_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """subset, COCO keypoints (P, 17, 2) and scores, the official way."""
    peaks = find_peaks_loop(heatmaps)
    conns, special = find_connections_loop(peaks, limb_maps, heatmaps.shape[0])
    subset, candidate = find_people_loop(conns, special, peaks)
    kps = np.zeros((len(subset), 17, 2))
    for p, row in enumerate(subset):
        for c, cmu in enumerate(COCO_FROM_CMU):
            pid = int(row[cmu][0])
            if pid != -1:
                kps[p, c] = candidate[pid, :2]
    scores = np.array([1 - 1.0 / row[-2][0] for row in subset])
    return subset, kps, scores
