"""Video tracking and smoothing (``bupose.core.video``) on a synthetic video made from synthetic scenes.

The video pans a window smoothly over one ``bupose data synth`` scene (``render_scene``), so its people
move smoothly in frame coordinates; per-frame detections are the scene's ground-truth keypoints with
2 px Gaussian noise (a detector's jitter), in a shuffled order every frame. Track ids must stay with
their person for the whole video, and the 1€ filter must reduce jitter (mean squared acceleration) while the mean error to the truth
stays where it was (the pan is fast: up to ~140 px/s, so lag costs about what the smoothing gains).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bupose.core.data.synth import render_scene
from bupose.core.poses import Poses
from bupose.core.video import OneEuroSettings, VideoFrameLog, VideoPoseStream, VideoSettings, frame_record

FPS = 30.0
FRAMES = 60
CROP = 192


def _video_truth(seed: int = 3, size: int = 288) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per frame: ground-truth keypoints (P, 17, 3) of the people in the panning window, and the frame.

    Besides the pan, each person sways on a path of its own (12 px, its own phase), so people move
    relative to each other (the frames show the pan only)."""
    image, anns, _ = render_scene(seed, size=size, difficulty="normal")
    people = [np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3) for a in anns if a["num_keypoints"] >= 8]
    assert len(people) >= 4, "the scene must hold several people"
    phase = np.linspace(0, 2 * math.pi, len(people), endpoint=False)
    truth, frames = [], []
    for t in range(FRAMES):
        ox = (size - CROP) / 2 + 0.45 * (size - CROP) * math.sin(2 * math.pi * t / FRAMES)
        oy = (size - CROP) / 2 + 0.3 * (size - CROP) * math.cos(2 * math.pi * t / FRAMES)
        kp = np.stack(people).copy()
        kp[:, :, 0] -= ox - 12 * np.sin(4 * math.pi * t / FRAMES + phase)[:, None]
        kp[:, :, 1] -= oy - 6 * np.cos(2 * math.pi * t / FRAMES + phase)[:, None]
        truth.append(kp)
        x0, y0 = round(ox), round(oy)
        frames.append(image[y0 : y0 + CROP, x0 : x0 + CROP])
    return truth, frames


def _detections(truth: list[np.ndarray], noise: float, seed: int) -> tuple[list[Poses], list[np.ndarray]]:
    """Noisy, shuffled detections; also the person index of each detection."""
    rng = np.random.default_rng(seed)
    out, order = [], []
    for kp in truth:
        perm = rng.permutation(len(kp))
        det = kp[perm].copy()
        vis = det[:, :, 2] > 0
        det[:, :, :2] += rng.normal(0, noise, det[:, :, :2].shape)
        det[:, :, 2] = np.where(vis, 0.9, 0.0)
        out.append(Poses(det, np.full(len(det), 0.8), "coco17"))
        order.append(perm)
    return out, order


def _run(stream: VideoPoseStream, dets: list[Poses]) -> tuple[list[Poses], list[np.ndarray]]:
    poses, ids = [], []
    for p in dets:
        q, i = stream.update(p)
        assert i is not None
        poses.append(q)
        ids.append(i)
    return poses, ids


def _per_person(values: list[np.ndarray], order: list[np.ndarray], n: int) -> np.ndarray:
    """Rows back in person order: (frames, n, ...)."""
    out = []
    for v, perm in zip(values, order):
        back = np.empty_like(v)
        back[perm] = v
        out.append(back)
    return np.stack(out)


def _jitter(xy: np.ndarray, vis: np.ndarray) -> float:
    """Mean squared second difference along time of the visible coordinates (px^2 / frame^4)."""
    acc = xy[2:] - 2 * xy[1:-1] + xy[:-2]
    ok = vis[2:] & vis[1:-1] & vis[:-2]
    return float((acc[ok] ** 2).sum(-1).mean())


def test_track_ids_are_continuous_and_distinct() -> None:
    truth, _ = _video_truth()
    dets, order = _detections(truth, noise=2.0, seed=0)
    poses, ids = _run(VideoPoseStream("coco17", fps=FPS, track=True), dets)
    assert all((p.extras["track_id"] == i).all() for p, i in zip(poses, ids))
    by_person = _per_person(ids, order, len(truth[0]))  # (frames, people)
    for p in range(by_person.shape[1]):
        assert by_person[0, p] >= 1
        assert (by_person[:, p] == by_person[0, p]).all(), f"person {p} changed id: {by_person[:, p].tolist()}"
    assert len(set(by_person[0].tolist())) == by_person.shape[1], "two people share a track id"


def test_one_euro_smoothing_reduces_jitter_at_the_same_error() -> None:
    truth, _ = _video_truth()
    dets, order = _detections(truth, noise=2.0, seed=1)
    raw, _ = _run(VideoPoseStream("coco17", fps=FPS, track=True), dets)
    smooth, _ids = _run(VideoPoseStream("coco17", fps=FPS, smooth="one-euro"), dets)
    gt = np.stack(truth)  # (frames, people, 17, 3), already in person order
    vis = gt[..., 2] > 0
    raw_kp = _per_person([p.keypoints for p in raw], order, gt.shape[1])
    smooth_kp = _per_person([p.keypoints for p in smooth], order, gt.shape[1])
    j_raw, j_smooth = _jitter(raw_kp[..., :2], vis), _jitter(smooth_kp[..., :2], vis)
    assert j_smooth < 0.5 * j_raw, (j_raw, j_smooth)  # measured 0.33x
    e_raw = np.linalg.norm(raw_kp[..., :2] - gt[..., :2], axis=-1)[vis].mean()
    e_smooth = np.linalg.norm(smooth_kp[..., :2] - gt[..., :2], axis=-1)[vis].mean()
    assert e_smooth < 1.05 * e_raw, (e_raw, e_smooth)  # measured 2.52 vs 2.51 px: the lag costs what the noise gains
    print(f"jitter {j_raw:.2f} -> {j_smooth:.2f}, error {e_raw:.2f} -> {e_smooth:.2f} px")
    # scores are never changed by smoothing, and the untracked stream returns the detections as given
    for a, b in zip(raw, smooth):
        np.testing.assert_array_equal(a.scores, b.scores)
    plain = VideoPoseStream("coco17", fps=FPS, track=False)
    p, i = plain.update(dets[0])
    assert i is None and p is dets[0]


def test_smoothing_parameters_matter() -> None:
    truth, _ = _video_truth()
    dets, order = _detections(truth, noise=2.0, seed=2)
    gt = np.stack(truth)
    vis = gt[..., 2] > 0
    jit = []
    for cutoff in (0.3, 3.0):
        out, _ = _run(VideoPoseStream("coco17", fps=FPS, smooth="one-euro",
                                      one_euro=OneEuroSettings(min_cutoff=cutoff, beta=0.0)), dets)
        jit.append(_jitter(_per_person([p.keypoints for p in out], order, gt.shape[1])[..., :2], vis))
    assert jit[0] < jit[1]  # a lower cut-off smooths more


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="--smooth 'kalman'"):
        VideoPoseStream("coco17", smooth="kalman")
    with pytest.raises(ValueError, match="--tracker 'deepsort'"):
        VideoPoseStream("coco17", tracker="deepsort")
    with pytest.raises(ValueError, match="min_cutoff and d_cutoff must be > 0"):
        OneEuroSettings(min_cutoff=0)
    with pytest.raises(ValueError, match="frame rate must be positive"):
        VideoPoseStream("coco17", fps=0)


def test_frame_log_writes_one_json_line_per_frame(tmp_path) -> None:
    truth, _ = _video_truth()
    dets, _ = _detections(truth[:5], noise=1.0, seed=3)
    log = VideoFrameLog(tmp_path, "coco17", VideoSettings(track=True))
    for k, d in enumerate(dets):
        log.add(tmp_path / "clip.mp4", k, FPS, d, image_id=f"clip.mp4#{k}")
    log.close()
    lines = (tmp_path / "clip.frames.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert [r["frame"] for r in records] == list(range(5))
    assert records[2]["time"] == pytest.approx(2 / FPS, abs=1e-6) and records[0]["image_id"] == "clip.mp4#0"
    assert all(len(r["people"]) == len(truth[0]) for r in records)
    first = {tuple(p["keypoints"][0][:2]): p["track_id"] for p in records[0]["people"]}
    assert all(isinstance(t, int) for t in first.values())
    person = records[1]["people"][0]
    assert set(person) == {"track_id", "score", "bbox", "keypoints"} and len(person["keypoints"]) == 17
    untracked = frame_record("v.mp4", 0, FPS, dets[0], None)
    assert all(p["track_id"] is None for p in untracked["people"])


def test_bytetrack_from_the_trackers_package_keeps_ids() -> None:
    pytest.importorskip("trackers")
    truth, _ = _video_truth()
    dets, order = _detections(truth, noise=2.0, seed=4)
    _, ids = _run(VideoPoseStream("coco17", fps=FPS, tracker="bytetrack",
                                  tracker_settings={"track_activation_threshold": 0.5}), dets)
    by_person = _per_person(ids, order, len(truth[0]))[1:]  # ByteTrack confirms a track on its 2nd frame
    for p in range(by_person.shape[1]):
        assert by_person[0, p] >= 0 and (by_person[:, p] == by_person[0, p]).all(), by_person[:, p].tolist()
    assert len(set(by_person[0].tolist())) == by_person.shape[1]


def test_synth_video_writes_frames_and_matching_ground_truth(tmp_path) -> None:
    import cv2
    from click.testing import CliRunner

    from bupose.core.cli import build_cli

    out = tmp_path / "clip.mp4"
    res = CliRunner().invoke(build_cli(), ["data", "synth-video", "--out", str(out), "--frames", "6", "--size", "64",
                                           "--seed", "3"])
    assert res.exit_code == 0, res.output
    cap = cv2.VideoCapture(str(out))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 6
    gt = json.loads((tmp_path / "clip.json").read_text())
    assert [im["file_name"] for im in gt["images"]] == [f"clip.mp4#{k}" for k in range(6)]
    assert gt["annotations"], "the scene must hold people"
    for a in gt["annotations"]:
        kp = np.asarray(a["keypoints"]).reshape(-1, 3)
        vis = kp[:, 2] > 0
        assert a["num_keypoints"] == int(vis.sum()) >= 2
        assert (kp[vis, :2] >= 0).all() and (kp[vis, :2] < 64).all()
    res = CliRunner().invoke(build_cli(), ["data", "synth-video", "--out", str(tmp_path / "x.avi")])
    assert res.exit_code != 0 and "expected a .mp4 file" in res.output


def test_box_trackers_without_the_package_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from bupose.core.video import TrackerUnavailableError, check_tracker

    monkeypatch.setitem(sys.modules, "trackers", None)  # import trackers -> ImportError
    with pytest.raises(TrackerUnavailableError, match="pip install trackers"):
        check_tracker("bytetrack")
    with pytest.raises(TrackerUnavailableError, match="--tracker sort"):
        VideoPoseStream("coco17", tracker="sort")
    check_tracker("oks")  # core's own: always there
    with pytest.raises(ValueError, match="--tracker 'x'"):
        check_tracker("x")
