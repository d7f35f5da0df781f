"""SimplePose post-processing, vectorised: peaks, limb scoring, person assembly, COCO output.

Identical results to the official ``evaluate.py`` (``find_peaks``, ``find_connections``,
``find_people``, ``process``) at a fraction of its cost:

- peaks: one NumPy 3x3 max filter (reflect padding) over all 18 maps, then the 5x5 centroids of all
  peaks gathered at once;
- limb scoring: every candidate pair of a limb sampled in one go (the ``np.linspace`` points, rounded
  half to even, read from the limb map, summed left to right like Python's ``sum``), then a stable
  sort and the greedy one-to-one pass over the surviving pairs only;
- assembly: the official greedy pass over the connections, but each connection finds its people in
  O(1) through a peak -> person table instead of scanning every person.

Everything is float64 like the official pipeline, and every arithmetic step keeps the official order
of operations, so the records (peaks, connections, subset) are those of the official code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import COCO_FROM_CMU, LIMBS, NUM_KEYPOINTS

__all__ = [
    "GroupingResult",
    "LimbGroupingParams",
    "assemble_people",
    "find_peaks",
    "group_people",
    "people_to_coco",
    "score_limbs",
]


@dataclass(frozen=True)
class LimbGroupingParams:
    """The official thresholds (``utils/config``): ``thre1`` keypoint peak threshold, ``thre2`` limb
    sample threshold, ``connect_ration`` fraction of samples above ``thre2``, ``mid_num`` most samples
    per limb, ``len_rate`` bound on a new limb vs the person's longest, ``connection_tole`` merge
    tolerance, ``offset_radius`` centroid radius, ``remove_recon`` drop contested joints when > 0."""

    thre1: float = 0.1
    thre2: float = 0.1
    connect_ration: float = 0.8
    mid_num: int = 20
    len_rate: float = 16.0
    connection_tole: float = 0.7
    offset_radius: int = 2
    remove_recon: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LimbGroupingParams:
        """Pick the known fields from ``values`` (unknown keys are ignored)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class GroupingResult:
    """Everything the grouping produced for one image.

    ``candidate`` (N, 4) = x, y, score, id; ``part`` (N,) the CMU joint of each peak;
    ``connections`` (M, 7) = limb, idA, idB, score, i, j, length; ``subset`` (P, 20, 2) in the
    official layout (rows 0-17 [peak id, limb score], row 18 [total, -1], row 19 [parts, longest]);
    ``keypoints`` (P, 17, 3) COCO x, y, v (missing joints (0, 0, 0)); ``scores`` (P,) = 1 - 1/total.
    """

    candidate: np.ndarray
    part: np.ndarray
    connections: np.ndarray
    subset: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray
    special_k: list[int] = field(default_factory=list)


def _nms_peaks(maps: np.ndarray, thre: np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(part, y, x) of the 3x3 maxima >= ``thre`` of float32(``maps[:, :, :18]``) (reflect padding), in
    part then row-major order. ``maps`` is a C-contiguous (H, W, C >= 18) array.

    Only pixels above the threshold are tested: with reflect padding the 3x3 maximum at a border pixel
    is the maximum over its in-image neighbours, so clipping the neighbour coordinates is exact.
    Values are compared as float32, like the official float32 copy.
    """
    h, w, c = maps.shape
    flat = maps.reshape(-1)
    lower = np.nextafter(thre, np.float32(-np.inf)).astype(np.float64)  # float64 prefilter, exact test below
    idx = np.flatnonzero(flat > lower)
    part = idx % c
    idx = idx[part < NUM_KEYPOINTS]
    v = flat[idx].astype(np.float32)
    ok = (v >= thre) & (v != 0)
    idx, v = idx[ok], v[ok]
    part = idx % c
    pix = idx // c
    ys, xs = pix // w, pix % w
    is_max = np.ones(part.shape, dtype=bool)
    for oy in (-1, 0, 1):
        row = np.clip(ys + oy, 0, h - 1) * w
        for ox in (-1, 0, 1):
            if oy or ox:
                nb = (row + np.clip(xs + ox, 0, w - 1)) * c + part
                is_max &= flat[nb].astype(np.float32) <= v
    order = np.argsort(part[is_max], kind="stable")
    return part[is_max][order], ys[is_max][order], xs[is_max][order]


def find_peaks(heatmaps: np.ndarray, thre1: float = 0.1, radius: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint peaks of the 18 CMU maps ``heatmaps`` (H, W, >=18), image resolution.

    Returns ``candidate`` (N, 4) = x, y, score, id and ``part`` (N,). Like the official code, all of
    it runs on a float32 copy of the maps: peaks are reflect-padded 3x3 NMS maxima >= ``thre1``, in
    part then row-major order; each peak is refined by the 5x5 weighted centroid with the official
    swapped axes (the x correction comes from row offsets, the y correction from column offsets) and
    scored by the float32 5x5 mean; a peak whose window leaves the map keeps its integer position and
    its map value.
    """
    if heatmaps.ndim != 3 or heatmaps.shape[2] < NUM_KEYPOINTS:
        raise ValueError(f"find_peaks: expected (H, W, >=18) keypoint maps, got shape {heatmaps.shape}")
    heat = np.ascontiguousarray(heatmaps, dtype=np.float64)
    part, ys, xs = _nms_peaks(heat, np.float32(thre1))
    n = part.shape[0]
    h, w = heat.shape[:2]
    x = xs.astype(np.float64)
    y = ys.astype(np.float64)
    score = heat[ys, xs, part].astype(np.float32).astype(np.float64)
    r = int(radius)
    inside = (ys + r + 1 <= h) & (ys - r >= 0) & (xs + r + 1 <= w) & (xs - r >= 0)
    if inside.any():
        idx = np.nonzero(inside)[0]
        off = np.arange(-r, r + 1)
        k = 2 * r + 1
        win = heat[
            ys[idx, None, None] + off[None, :, None], xs[idx, None, None] + off[None, None, :], part[idx, None, None]
        ].astype(np.float32).reshape(-1, k * k)
        row_off = np.repeat(off, k)  # np.mgrid's first grid (varies along rows), int64 like np.mgrid
        col_off = np.tile(off, k)
        total = win.sum(axis=1)  # float32, pairwise like NumPy's sum of the 5x5 window
        x[idx] = xs[idx] + (win * row_off).sum(axis=1) / total
        y[idx] = ys[idx] + (win * col_off).sum(axis=1) / total
        score[idx] = (total / np.float32(k * k)).astype(np.float64)
    candidate = np.stack([x, y, score, np.arange(n, dtype=np.float64)], axis=1) if n else np.zeros((0, 4))
    return candidate, part.astype(np.int64)


def _score_all_pairs(
    by_part: list[np.ndarray], limb_maps: np.ndarray, image_height: float, p: LimbGroupingParams
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Score every (A, B) candidate pair of every limb at once.

    Returns, per limb with candidates at both ends, the accepted pairs' i, j, score, length and sort key
    (0.5 score + 0.25 score_A + 0.25 score_B), pairs in the official i-major order.
    """
    ks, ias, ibs = [], [], []
    for k, (ja, jb) in enumerate(LIMBS):
        na, nb = by_part[ja].shape[0], by_part[jb].shape[0]
        if na and nb:
            ks.append(np.full(na * nb, k))
            ias.append(np.repeat(np.arange(na), nb))
            ibs.append(np.tile(np.arange(nb), na))
    if not ks:
        return {}
    k_all = np.concatenate(ks)
    i_all = np.concatenate(ias)
    j_all = np.concatenate(ibs)
    src = np.array([a for a, _ in LIMBS])[k_all]
    dst = np.array([b for _, b in LIMBS])[k_all]
    # per-limb candidate tables, flattened: offsets into one array of all candidates by part
    offsets = np.cumsum([0] + [c.shape[0] for c in by_part])
    cand = np.concatenate(by_part, axis=0)
    a = cand[offsets[src] + i_all]
    b = cand[offsets[dst] + j_all]
    ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    dx = bx - ax
    dy = by - ay
    norm = np.sqrt(dx * dx + dy * dy)
    n = np.maximum(np.minimum(np.rint(norm + 1), p.mid_num).astype(np.int64), 1)
    div = np.maximum(n - 1, 1).astype(np.float64)
    sx, sy = dx / div, dy / div
    h, w, nk = limb_maps.shape
    flat = np.ascontiguousarray(limb_maps, dtype=np.float64).reshape(-1)

    # segment points lie between their end points, so with every candidate inside the map no clipping is needed
    inside = bool(
        (cand[:, 0] >= 0).all() and (cand[:, 0] <= w - 1).all() and (cand[:, 1] >= 0).all() and (cand[:, 1] <= h - 1).all()
    )

    def sample(rows: np.ndarray, t: np.ndarray, with_end: bool = True) -> np.ndarray:
        """Limb-map values at samples t (rows x T, float) of pairs ``rows``, as np.linspace places them."""
        xt = t * sx[rows, None] + ax[rows, None]
        yt = t * sy[rows, None] + ay[rows, None]
        if with_end:
            last = (t == (n[rows] - 1)[:, None]) & (n[rows] > 1)[:, None]
            xt = np.where(last, bx[rows, None], xt)
            yt = np.where(last, by[rows, None], yt)
        xi = np.rint(xt).astype(np.int64)
        yi = np.rint(yt).astype(np.int64)
        if not inside:
            np.clip(xi, 0, w - 1, out=xi)
            np.clip(yi, 0, h - 1, out=yi)
        yi *= w
        yi += xi
        yi *= nk
        yi += k_all[rows, None]
        return flat[yi]

    # Exact early rejection: 6 distinct interior samples of each long pair; a pair whose failures there
    # already make the 0.8 ratio impossible cannot be accepted, whatever its other samples are.
    alive = norm != 0
    long_ = np.nonzero(alive & (n > 8))[0]
    if long_.size:
        t6 = 1 + np.floor(np.arange(6)[None, :] * ((n[long_] - 2) / 6)[:, None])
        fails = (sample(long_, t6, with_end=False) <= p.thre2).sum(axis=1)
        alive[long_[(n[long_] - fails) < p.connect_ration * n[long_]]] = False
    rows = np.nonzero(alive)[0]
    score = np.full(norm.shape, -1.0)
    above = np.zeros(norm.shape, dtype=np.int64)
    if rows.size:
        t = np.arange(int(n[rows].max()), dtype=np.float64)[None, :]
        use = t < n[rows, None]
        # samples past a pair's own count are masked out; clamp them onto its end point to stay in the map
        v = np.where(use, sample(rows, np.minimum(t, (n[rows] - 1)[:, None])), 0.0)
        acc = np.cumsum(v, axis=1)[:, -1]  # left to right, like Python's sum()
        above[rows] = (use & (v > p.thre2)).sum(axis=1)
        score[rows] = acc / n[rows] + np.minimum(0.5 * image_height / norm[rows] - 1, 0)
    keep = alive & (above >= p.connect_ration * n) & (score > 0)
    key = 0.5 * score + 0.25 * a[:, 2] + 0.25 * b[:, 2]
    out = {}
    idx = np.nonzero(keep)[0]
    kk = k_all[idx]
    bounds = np.searchsorted(kk, np.arange(len(LIMBS) + 1))
    present = set(np.unique(k_all).tolist())
    for k in present:
        sel = idx[bounds[k] : bounds[k + 1]]
        out[k] = (i_all[sel], j_all[sel], score[sel], norm[sel], key[sel])
    return out


def score_limbs(
    candidate: np.ndarray,
    part: np.ndarray,
    limb_maps: np.ndarray,
    image_height: float,
    params: LimbGroupingParams | None = None,
) -> tuple[list[np.ndarray], list[int]]:
    """Connections of each of the 30 limbs: a list of (M_k, 6) arrays [idA, idB, score, i, j, length]
    and ``special_k``, the limbs with no candidates at one end.

    ``limb_maps`` is (H, W, 30); ``image_height`` enters the length prior min(0.5 H / len - 1, 0)
    (the official code passes the image height under the name ``image_width``).
    """
    p = params or LimbGroupingParams()
    by_part = [candidate[part == k] for k in range(NUM_KEYPOINTS)]
    scored = _score_all_pairs(by_part, limb_maps, image_height, p)
    connections: list[np.ndarray] = []
    special_k: list[int] = []
    for k, (ja, jb) in enumerate(LIMBS):
        if k not in scored:
            special_k.append(k)
            connections.append(np.zeros((0, 6)))
            continue
        a, b = by_part[ja], by_part[jb]
        i, j, s, length, key = scored[k]
        order = np.argsort(-key, kind="stable")
        limit = min(a.shape[0], b.shape[0])
        used_a = set()
        used_b = set()
        rows = []
        for c in order.tolist():
            ii, jj = int(i[c]), int(j[c])
            if ii in used_a or jj in used_b:
                continue
            used_a.add(ii)
            used_b.add(jj)
            rows.append((a[ii, 3], b[jj, 3], s[c], float(ii), float(jj), length[c]))
            if len(rows) >= limit:
                break
        connections.append(np.asarray(rows, dtype=np.float64).reshape(-1, 6))
    return connections, special_k


class _Person:
    __slots__ = ("count", "ids", "js", "longest", "total")

    def __init__(self) -> None:
        self.ids = [-1] * NUM_KEYPOINTS
        self.js = [-1.0] * NUM_KEYPOINTS
        self.total = 0.0
        self.count = 0.0
        self.longest = 0.0


def assemble_people(
    connections: list[np.ndarray],
    special_k: list[int],
    candidate: np.ndarray,
    params: LimbGroupingParams | None = None,
) -> np.ndarray:
    """The official greedy person assembly over the 30 limbs; returns ``subset`` (P, 20, 2).

    Per connection (limb order, then connection order): the people already holding its A or B peak are
    found; one person -> its B joint is filled, or replaced by a stronger connection, within the
    ``len_rate`` length bound; two disjoint people -> merged when the connection scores at least
    ``connection_tole`` x the weaker person's minimum limb score (and passes the length bound); two
    people sharing a joint -> with ``remove_recon`` > 0 the weaker holder loses it; nobody -> a new
    person. People with < 2 parts or a mean score < 0.45 are dropped.
    """
    p = params or LimbGroupingParams()
    cand_score = candidate[:, 2].tolist()
    owner = [-1] * candidate.shape[0]
    people: list[_Person | None] = []
    for k, (ia, ib) in enumerate(LIMBS):
        if k in special_k:
            continue
        for row in connections[k].tolist():
            pa, pb, s, length = int(row[0]), int(row[1]), row[2], row[5]
            oa, ob = owner[pa], owner[pb]
            if oa == -1 and ob == -1:
                person = _Person()
                person.ids[ia], person.js[ia] = pa, s
                person.ids[ib], person.js[ib] = pb, s
                person.count = 2.0
                person.longest = length
                person.total = (cand_score[pa] + cand_score[pb]) + s
                owner[pa] = owner[pb] = len(people)
                people.append(person)
            elif oa == ob or oa == -1 or ob == -1:
                jdx = oa if oa != -1 else ob
                person = people[jdx]
                assert person is not None
                cur = person.ids[ib]
                if cur == -1 and p.len_rate * person.longest > length:
                    person.ids[ib], person.js[ib] = pb, s
                    person.count += 1
                    person.total += cand_score[pb] + s
                    person.longest = max(length, person.longest)
                    owner[pb] = jdx
                elif cur != pb:
                    if person.js[ib] >= s or p.len_rate * person.longest <= length:
                        continue
                    person.total -= cand_score[cur] + person.js[ib]
                    if cur != -1:
                        owner[cur] = -1
                    person.ids[ib], person.js[ib] = pb, s
                    person.total += cand_score[pb] + s
                    person.longest = max(length, person.longest)
                    owner[pb] = jdx
                elif person.js[ib] <= s:
                    if p.len_rate * person.longest <= length:
                        continue
                    person.total -= cand_score[cur] + person.js[ib]
                    person.js[ib] = s
                    person.total += cand_score[pb] + s
                    person.longest = max(length, person.longest)
            else:
                j1, j2 = min(oa, ob), max(oa, ob)
                p1, p2 = people[j1], people[j2]
                assert p1 is not None and p2 is not None
                if not any(x >= 0 and y >= 0 for x, y in zip(p1.ids, p2.ids, strict=True)):
                    min1 = min(sc for i_, sc in zip(p1.ids, p1.js, strict=True) if i_ >= 0)
                    min2 = min(sc for i_, sc in zip(p2.ids, p2.js, strict=True) if i_ >= 0)
                    if s < p.connection_tole * min(min1, min2) or p.len_rate * p1.longest <= length:
                        continue
                    for r in range(NUM_KEYPOINTS):
                        p1.ids[r] = int(p1.ids[r] + (p2.ids[r] + 1))
                        p1.js[r] = p1.js[r] + (p2.js[r] + 1)
                        if p2.ids[r] >= 0:
                            owner[p2.ids[r]] = j1
                    p1.total += p2.total
                    p1.count += p2.count
                    p1.total += s
                    p1.longest = max(length, p1.longest)
                    people[j2] = None
                else:
                    c1, c2 = (ia, ib) if oa == j1 else (ib, ia)
                    if s < p1.js[c1] and s < p2.js[c2]:
                        continue
                    small, rc = (p2, c2) if p1.js[c1] > p2.js[c2] else (p1, c1)
                    if p.remove_recon > 0:
                        small.total -= cand_score[small.ids[rc]] + small.js[rc]
                        owner[small.ids[rc]] = -1
                        small.ids[rc], small.js[rc] = -1, -1.0
                        small.count -= 1
    kept = [q for q in people if q is not None and not (q.count < 2 or q.total / q.count < 0.45)]
    subset = -np.ones((len(kept), NUM_KEYPOINTS + 2, 2))
    for n_, q in enumerate(kept):
        subset[n_, :NUM_KEYPOINTS, 0] = q.ids
        subset[n_, :NUM_KEYPOINTS, 1] = q.js
        subset[n_, NUM_KEYPOINTS, 0] = q.total
        subset[n_, NUM_KEYPOINTS + 1] = (q.count, q.longest)
    return subset


def people_to_coco(subset: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCO-17 keypoints (P, 17, 3) = x, y, v (v = 1 where x > 0 or y > 0, missing joints (0, 0, 0))
    and person scores 1 - 1/total."""
    n = subset.shape[0]
    kps = np.zeros((n, len(COCO_FROM_CMU), 3))
    if n == 0:
        return kps, np.zeros((0,))
    ids = subset[:, list(COCO_FROM_CMU), 0].astype(np.int64)
    found = ids >= 0
    kps[..., :2] = np.where(found[..., None], candidate[np.maximum(ids, 0), :2], 0.0)
    kps[..., 2] = ((kps[..., 0] > 0) | (kps[..., 1] > 0)).astype(np.float64)
    scores = 1 - 1.0 / subset[:, NUM_KEYPOINTS, 0]
    return kps, scores


def group_people(
    heatmaps: np.ndarray, limb_maps: np.ndarray, params: LimbGroupingParams | None = None
) -> GroupingResult:
    """The whole official post-processing on fused maps at image resolution.

    ``heatmaps`` (H, W, >=18): CMU keypoint maps first; ``limb_maps`` (H, W, 30).
    """
    p = params or LimbGroupingParams()
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    limb_maps = np.asarray(limb_maps, dtype=np.float64)
    if limb_maps.ndim != 3 or limb_maps.shape[2] != len(LIMBS) or limb_maps.shape[:2] != heatmaps.shape[:2]:
        raise ValueError(
            f"group_people: limb maps must be (H, W, 30) like the heatmaps {heatmaps.shape[:2]}, "
            f"got {limb_maps.shape}"
        )
    candidate, part = find_peaks(heatmaps, p.thre1, p.offset_radius)
    return group_candidates(candidate, part, limb_maps, heatmaps.shape[0], p)


def group_candidates(
    candidate: np.ndarray,
    part: np.ndarray,
    limb_maps: np.ndarray,
    image_height: float,
    params: LimbGroupingParams | None = None,
) -> GroupingResult:
    """Limb scoring + assembly + COCO output for given peaks (``candidate`` (N, 4), ``part`` (N,))."""
    p = params or LimbGroupingParams()
    conns, special_k = score_limbs(candidate, part, limb_maps, image_height, p)
    subset = assemble_people(conns, special_k, candidate, p)
    records = [np.concatenate([np.full((c.shape[0], 1), float(k)), c], axis=1) for k, c in enumerate(conns)]
    connections = np.concatenate(records, axis=0) if records else np.zeros((0, 7))
    kps, scores = people_to_coco(subset, candidate)
    return GroupingResult(candidate, part, connections, subset, kps, scores, special_k)
