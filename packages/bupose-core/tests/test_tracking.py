"""Pose tracking by OKS (ids persist, low scores never start tracks) and 1-euro smoothing (less jitter)."""

from __future__ import annotations

import numpy as np
import pytest

from bupose.core.layouts import COCO17
from bupose.core.poses import Poses
from bupose.core.tracking import OneEuroFilter, PoseTracker, pose_oks_matrix, smooth_tracks

J = COCO17.num_keypoints


def _person(cx: float, cy: float, h: float = 120.0) -> np.ndarray:
    """A stick figure (J, 2) centred at (cx, cy)."""
    rng = np.random.default_rng(0)
    offsets = rng.uniform(-0.5, 0.5, (J, 2)) * np.array([h * 0.5, h])
    return offsets + np.array([cx, cy])


def _frames(n: int, noise: float, seed: int = 1) -> tuple[list[Poses], np.ndarray]:
    """Two people walking towards each other (passing at 60 px vertical distance), shuffled each frame;
    returns the frames and the true (n, 2, J, 2) keypoints."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, 2, J, 2))
    frames = []
    for t in range(n):
        truth[t, 0] = _person(100 + 4 * t, 200 + 20 * np.sin(t / 10))
        truth[t, 1] = _person(500 - 4 * t, 260 + 20 * np.cos(t / 10))
        kp = np.concatenate([truth[t] + rng.normal(0, noise, (2, J, 2)), np.ones((2, J, 1))], axis=2)
        order = rng.permutation(2)
        frames.append(Poses(kp[order], np.array([0.9, 0.8])[order], "coco17", {"truth": order}))
    return frames, truth


def test_ids_persist_for_people_that_move_smoothly() -> None:
    frames, _ = _frames(100, noise=2.0)
    tracker = PoseTracker(COCO17.sigmas)
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for f in frames:
        ids = tracker.update(f)
        for k, who in enumerate(f.extras["truth"]):
            seen[int(who)].add(int(ids[k]))
    assert seen[0] == {1} and seen[1] == {2}, seen


def test_a_track_ends_after_max_age_and_low_scores_start_none() -> None:
    tracker = PoseTracker(COCO17.sigmas, max_age=2)
    kp = np.concatenate([_person(100, 100), np.ones((J, 1))], axis=1)[None]
    assert tracker.update(Poses(kp, [0.9], "coco17")).tolist() == [1]
    for _ in range(3):
        tracker.update(Poses.empty(J, "coco17"))
    assert tracker.update(Poses(kp, [0.9], "coco17")).tolist() == [2]  # the old track ended
    faint = Poses(kp + np.array([400.0, 0, 0]), [0.1], "coco17")
    assert tracker.update(faint).tolist() == [-1]  # below high_score: continues tracks only
    assert tracker.update(Poses(kp, [0.01], "coco17")).tolist() == [-1]  # below low_score: ignored
    assert tracker.update(Poses(kp, [0.2], "coco17")).tolist() == [2]  # low score continues track 2


def test_oks_matrix_is_one_for_equal_poses_and_falls_with_distance() -> None:
    a = np.concatenate([_person(100, 100), np.ones((J, 1))], axis=1)[None]
    far = a.copy()
    far[..., 0] += 50
    m = pose_oks_matrix(np.concatenate([a, far]), a, COCO17.sigmas)
    assert m.shape == (2, 1)
    assert m[0, 0] == pytest.approx(1.0) and 0 <= m[1, 0] < 0.5
    hidden = a.copy()
    hidden[..., 2] = 0
    assert pose_oks_matrix(hidden, a, COCO17.sigmas)[0, 0] == 0.0


def _jitter(track: np.ndarray) -> float:
    """Mean squared second difference along time of a (T, J, 2) trajectory."""
    return float((np.diff(track, n=2, axis=0) ** 2).mean())


def test_one_euro_smoothing_reduces_jitter_and_error() -> None:
    frames, truth = _frames(120, noise=3.0, seed=4)
    tracker = PoseTracker(COCO17.sigmas)
    ids = [tracker.update(f) for f in frames]
    smoothed = smooth_tracks(frames, ids, fps=30.0)  # the documented defaults

    def trajectory(poses: list) -> np.ndarray:
        out = np.zeros((len(poses), J, 2))
        for t, (p, i) in enumerate(zip(poses, ids, strict=True)):
            out[t] = p.keypoints[list(i).index(1), :, :2]
        return out

    raw, smooth = trajectory(frames), trajectory(smoothed)
    who = [int(f.extras["truth"][list(i).index(1)]) for f, i in zip(frames, ids, strict=True)]
    true = np.stack([truth[t, w] for t, w in enumerate(who)])
    assert _jitter(smooth) < 0.5 * _jitter(raw)
    assert np.abs(smooth - true)[10:].mean() < np.abs(raw - true)[10:].mean()
    assert all(np.array_equal(s.scores, f.scores) for s, f in zip(smoothed, frames, strict=True))


def test_one_euro_follows_fast_motion_with_beta() -> None:
    xs = np.arange(60, dtype=float) * 20.0  # 600 px/s at 30 fps
    slow = OneEuroFilter(min_cutoff=0.5, beta=0.0)
    fast = OneEuroFilter(min_cutoff=0.5, beta=0.1)
    lag_slow = xs[-1] - [slow(np.array([x]), 1 / 30)[0] for x in xs][-1]
    lag_fast = xs[-1] - [fast(np.array([x]), 1 / 30)[0] for x in xs][-1]
    assert lag_fast < 0.2 * lag_slow


def test_bad_filter_settings_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="min_cutoff and d_cutoff must be > 0"):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(ValueError, match="fps must be positive"):
        smooth_tracks([], [], fps=0)
