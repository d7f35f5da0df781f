"""Track people across video frames and smooth their keypoints along each track.

:class:`PoseTracker` gives every person of a frame a track id that persists while the person keeps
matching: association is by OKS between the new poses and each track's last pose (with the layout's
sigmas and the pose's box area as the scale), matched greedily, most similar pair first, in two rounds as
ByteTrack does (confident people first, then the low-score ones against the tracks left over); a
track that misses ``max_age`` frames ends, and an unmatched confident person starts a new one.

:class:`OneEuroFilter` is the 1€ filter of Casiez et al. (CHI 2012): a low-pass filter whose cut-off
rises with the signal's speed, so slow jitter is removed while fast motion keeps little lag. One
filter state per track smooths every joint's x and y; ``min_cutoff`` (Hz) sets the smoothing at
rest, ``beta`` how fast the cut-off rises with speed (per px/s), ``d_cutoff`` the derivative's own
cut-off. Defaults (min_cutoff 1 Hz, beta 0.1, d_cutoff 1 Hz) were chosen on synthetic walkers with 3 px
noise at 30 fps: jitter (mean squared acceleration) 0.35x the raw one, mean error 1.99 px vs 2.36 px raw.

Why not the ``trackers`` package: it requires the GUI build ``opencv-python``, which fails to import
on machines without libGL and fights ``opencv-python-headless`` (core's dependency) for the same
``cv2`` module; associating poses by OKS also beats box IoU for people who overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .poses import Poses

__all__ = ["OneEuroFilter", "PoseTracker", "Track", "TrackSmoother", "pose_oks_matrix", "smooth_tracks"]


def pose_oks_matrix(a: np.ndarray, b: np.ndarray, sigmas: Sequence[float], min_score: float = 0.0) -> np.ndarray:
    """OKS (len(a), len(b)) between two sets of poses (N, J, 3) in pixels.

    The scale of a pair is the area of ``b``'s keypoint box (the track side); only joints whose
    score in both poses exceeds ``min_score`` count; a pair without such joints has OKS 0.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    var = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    xy_b = b[:, :, :2]
    extent = xy_b.max(axis=1) - xy_b.min(axis=1)
    area = np.maximum(extent[:, 0] * extent[:, 1], 1.0)
    d2 = ((a[:, None, :, :2] - b[None, :, :, :2]) ** 2).sum(-1)  # (Na, Nb, J)
    e = d2 / (2.0 * var[None, None, :] * area[None, :, None])
    valid = (a[:, None, :, 2] > min_score) & (b[None, :, :, 2] > min_score)
    count = valid.sum(-1)
    total = (np.exp(-e) * valid).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _assign(sim: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs, most similar first, with similarity >= ``threshold``."""
    pairs: list[tuple[int, int]] = []
    if sim.size == 0:
        return pairs
    order = np.argsort(-sim, axis=None, kind="stable")
    rows_used: set[int] = set()
    cols_used: set[int] = set()
    for flat in order:
        r, c = divmod(int(flat), sim.shape[1])
        if sim[r, c] < threshold:
            break
        if r in rows_used or c in cols_used:
            continue
        pairs.append((r, c))
        rows_used.add(r)
        cols_used.add(c)
    return pairs


@dataclass
class Track:
    """One tracked person: its id, last pose, and the frames since it was last matched."""

    track_id: int
    keypoints: np.ndarray
    score: float
    age: int = 0
    hits: int = 1


@dataclass
class PoseTracker:
    """Frame-by-frame pose tracking by OKS.

    Args:
        sigmas: the layout's OKS sigmas.
        match_oks: the OKS a person needs to continue a track.
        high_score: people at or above this score are matched first and may start tracks; lower
            ones only continue existing tracks (ByteTrack's second round).
        low_score: people below this score are ignored.
        max_age: frames a track survives without a match.
    """

    sigmas: Sequence[float]
    match_oks: float = 0.3
    high_score: float = 0.3
    low_score: float = 0.05
    max_age: int = 15
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1

    def update(self, poses: Poses) -> np.ndarray:
        """Track ids (N,) for the people of the next frame (``-1`` for ignored low-score people)."""
        n = len(poses)
        ids = np.full(n, -1, dtype=np.int64)
        kp, scores = poses.keypoints, poses.scores
        high = [i for i in range(n) if scores[i] >= self.high_score]
        low = [i for i in range(n) if self.low_score <= scores[i] < self.high_score]
        free = list(range(len(self.tracks)))
        for group in (high, low):
            if not group or not free:
                continue
            track_kp = np.stack([self.tracks[t].keypoints for t in free])
            sim = pose_oks_matrix(kp[group], track_kp, self.sigmas)
            used = set()
            for r, c in _assign(sim, self.match_oks):
                i, t = group[r], free[c]
                track = self.tracks[t]
                track.keypoints, track.score, track.age = kp[i].copy(), float(scores[i]), 0
                track.hits += 1
                ids[i] = track.track_id
                used.add(t)
            free = [t for t in free if t not in used]
        for t in free:
            self.tracks[t].age += 1
        self.tracks = [tr for tr in self.tracks if tr.age <= self.max_age]
        for i in high:
            if ids[i] < 0:
                self.tracks.append(Track(self.next_id, kp[i].copy(), float(scores[i])))
                ids[i] = self.next_id
                self.next_id += 1
        return ids


def _alpha(cutoff: float | np.ndarray, dt: float) -> float | np.ndarray:
    """The exponential-smoothing factor of a first-order low-pass filter with ``cutoff`` Hz."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


@dataclass
class OneEuroFilter:
    """The 1€ filter over arrays of any fixed shape (one state per array element)."""

    min_cutoff: float = 1.0
    beta: float = 0.1
    d_cutoff: float = 1.0
    x_prev: np.ndarray | None = None
    dx_prev: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError(
                f"one-euro filter: min_cutoff and d_cutoff must be > 0 and beta >= 0, got "
                f"{self.min_cutoff}, {self.d_cutoff}, {self.beta}"
            )

    def __call__(self, x: np.ndarray, dt: float = 1.0) -> np.ndarray:
        """The filtered value of ``x`` sampled ``dt`` time units after the previous sample."""
        x = np.asarray(x, dtype=np.float64)
        if self.x_prev is None or self.x_prev.shape != x.shape:
            self.x_prev, self.dx_prev = x.copy(), np.zeros_like(x)
            return x.copy()
        assert self.dx_prev is not None
        dx = (x - self.x_prev) / dt
        a_d = _alpha(self.d_cutoff, dt)
        dx_hat = a_d * dx + (1 - a_d) * self.dx_prev
        a = _alpha(self.min_cutoff + self.beta * np.abs(dx_hat), dt)
        x_hat = a * x + (1 - a) * self.x_prev
        self.x_prev, self.dx_prev = x_hat, dx_hat
        return x_hat


@dataclass
class TrackSmoother:
    """One 1€ filter per track id, smoothing the (J, 2) keypoint coordinates (scores unchanged)."""

    min_cutoff: float
    beta: float
    d_cutoff: float
    filters: dict[int, OneEuroFilter] = field(default_factory=dict)

    def __call__(self, poses: Poses, ids: np.ndarray, dt: float) -> Poses:
        kp = poses.keypoints.copy()
        for i, tid in enumerate(ids):
            if tid < 0:
                continue
            f = self.filters.setdefault(int(tid), OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff))
            kp[i, :, :2] = f(kp[i, :, :2], dt)
        alive = {int(t) for t in ids if t >= 0}
        for tid in list(self.filters):
            if tid not in alive:
                del self.filters[tid]
        return Poses(kp, poses.scores.copy(), poses.layout, dict(poses.extras))


def smooth_tracks(
    frames: Sequence[Poses],
    ids: Sequence[np.ndarray],
    *,
    fps: float = 30.0,
    min_cutoff: float = 1.0,
    beta: float = 0.1,
    d_cutoff: float = 1.0,
) -> list[Poses]:
    """1€-smoothed copies of ``frames`` (keypoints filtered along each track id; scores unchanged).

    Time is in seconds (``1 / fps`` per frame), so ``min_cutoff`` and ``d_cutoff`` are in Hz; a track
    that disappears loses its filter state.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    smoother = TrackSmoother(min_cutoff, beta, d_cutoff)
    return [smoother(p, np.asarray(i), 1.0 / fps) for p, i in zip(frames, ids, strict=True)]
