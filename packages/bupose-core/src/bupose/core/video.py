"""Per-frame video logic: track ids, keypoint smoothing along tracks, and the JSON-lines record of a frame.

:class:`VideoPoseStream` takes the poses of one video's frames in order and returns, per frame, the
(optionally smoothed) poses with a track id per person. Trackers:

- ``"oks"`` (default): :class:`~bupose.core.tracking.PoseTracker`, association by keypoint similarity
  (OKS) with ByteTrack's two score rounds; needs nothing beyond core.
- ``"bytetrack"`` / ``"sort"``: the ``trackers`` package (Roboflow, Apache-2.0) on the people's keypoint
  boxes. Optional (``pip install trackers``): it pulls ``opencv-python`` (the GUI build, next to core's
  ``opencv-python-headless``: both own the ``cv2`` module), ``scipy``, ``rich`` and ``requests``, and
  needs ``numpy >= 2``; so it is not a dependency of core and not the default.

Smoothing (``smooth="one-euro"``) runs a 1€ filter per track on the keypoint coordinates
(:class:`~bupose.core.tracking.OneEuroFilter`; time in seconds from the video's frame rate, so
``min_cutoff`` and ``d_cutoff`` are in Hz). Scores are never changed; people without a track id
(``-1``: low-score people the tracker ignores, or ByteTrack's tracks not yet confirmed) are left as
detected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layouts import get_layout
from .poses import Poses
from .tracking import PoseTracker, TrackSmoother

__all__ = [
    "SMOOTHERS",
    "TRACKERS",
    "OneEuroSettings",
    "TrackerUnavailableError",
    "VideoFrameLog",
    "VideoPoseStream",
    "VideoSettings",
    "check_tracker",
    "frame_record",
]

TRACKERS = ("oks", "bytetrack", "sort")
"""Tracker names ``--tracker`` accepts (``oks`` is core's; the others come from the ``trackers`` package)."""

SMOOTHERS = ("none", "one-euro")
"""Smoothing names ``--smooth`` accepts."""


class TrackerUnavailableError(RuntimeError):
    """The chosen tracker needs a package that is not installed."""


@dataclass(frozen=True)
class OneEuroSettings:
    """1€ filter parameters: ``min_cutoff`` (Hz) the smoothing at rest (lower = smoother), ``beta``
    how fast the cut-off rises with speed (higher = less lag on fast motion), ``d_cutoff`` (Hz) the
    speed estimate's own cut-off. Defaults as :mod:`bupose.core.tracking` documents them."""

    min_cutoff: float = 1.0
    beta: float = 0.1
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError(
                f"one-euro smoothing: min_cutoff and d_cutoff must be > 0 and beta >= 0, got "
                f"min_cutoff={self.min_cutoff}, beta={self.beta}, d_cutoff={self.d_cutoff}"
            )


class _BoxTracker:
    """A ``trackers`` box tracker (ByteTrack or SORT) on the people's keypoint boxes."""

    def __init__(self, name: str, fps: float, settings: Mapping[str, Any]) -> None:
        try:
            import supervision as sv
            import trackers
        except ImportError as exc:
            raise TrackerUnavailableError(
                f"--tracker {name} needs the `trackers` package (pip install trackers; it also pulls "
                f"opencv-python and supervision): {exc}"
            ) from None
        self._sv = sv
        cls = trackers.ByteTrackTracker if name == "bytetrack" else trackers.SORTTracker
        self.tracker = cls(frame_rate=fps, **dict(settings))

    def update(self, poses: Poses) -> np.ndarray:
        n = len(poses)
        ids = np.full(n, -1, dtype=np.int64)
        if n == 0:
            self.tracker.update(self._sv.Detections.empty())
            return ids
        box = poses.bboxes()
        xyxy = np.concatenate([box[:, :2], box[:, :2] + np.maximum(box[:, 2:], 1.0)], axis=1)
        dets = self._sv.Detections(
            xyxy=xyxy.astype(np.float32), confidence=poses.scores.astype(np.float32),
            data={"bupose_index": np.arange(n)},
        )  # fmt: skip
        out = self.tracker.update(dets)
        for index, tid in zip(out.data["bupose_index"], out.tracker_id, strict=True):
            ids[int(index)] = int(tid)
        return ids


def check_tracker(name: str) -> None:
    """Raise :class:`TrackerUnavailableError` (naming what to install) when tracker ``name`` cannot run here,
    ``ValueError`` for an unknown name."""
    if name not in TRACKERS:
        raise ValueError(f"--tracker {name!r}: expected one of {', '.join(TRACKERS)}")
    if name != "oks":
        _BoxTracker(name, 30.0, {})


class VideoPoseStream:
    """Track ids and smoothing for the frames of one video, in order.

    Args:
        layout: the poses' keypoint layout (its OKS sigmas drive the ``oks`` tracker).
        fps: the video's frame rate (smoothing time base; ByteTrack's buffer).
        track: give people track ids.
        smooth: ``"none"`` or ``"one-euro"`` (smoothing implies tracking: it runs along tracks).
        tracker: one of :data:`TRACKERS`.
        one_euro: the 1€ filter's parameters.
        tracker_settings: keyword settings of the tracker (``PoseTracker``'s fields for ``oks``,
            the ``trackers`` class's arguments otherwise).
    """

    def __init__(
        self,
        layout: str,
        *,
        fps: float = 30.0,
        track: bool = True,
        smooth: str = "none",
        tracker: str = "oks",
        one_euro: OneEuroSettings | None = None,
        tracker_settings: Mapping[str, Any] | None = None,
    ) -> None:
        if smooth not in SMOOTHERS:
            raise ValueError(f"--smooth {smooth!r}: expected one of {', '.join(SMOOTHERS)}")
        if tracker not in TRACKERS:
            raise ValueError(f"--tracker {tracker!r}: expected one of {', '.join(TRACKERS)}")
        if not fps > 0:
            raise ValueError(f"video frame rate must be positive, got {fps}")
        self.layout = layout
        self.fps = float(fps)
        self.smooth = smooth
        self.track = bool(track or smooth != "none")
        self.tracker_name = tracker
        self.one_euro = one_euro or OneEuroSettings()
        settings = dict(tracker_settings or {})
        self._tracker: Any = None
        if self.track:
            if tracker == "oks":
                self._tracker = PoseTracker(sigmas=tuple(get_layout(layout).sigmas), **settings)
            else:
                self._tracker = _BoxTracker(tracker, self.fps, settings)
        e = self.one_euro
        self._smoother = TrackSmoother(e.min_cutoff, e.beta, e.d_cutoff) if smooth == "one-euro" else None
        self.frames = 0

    def update(self, poses: Poses) -> tuple[Poses, np.ndarray | None]:
        """The next frame's poses (smoothed when asked) and track ids (N,) (``None`` without tracking).

        With tracking the returned poses are a copy that also carries the ids as ``extras["track_id"]``
        (so :meth:`~bupose.core.poses.Poses.to_supervision` hands them on)."""
        self.frames += 1
        if self._tracker is None:
            return poses, None
        ids = self._tracker.update(poses)
        if self._smoother is not None:
            poses = self._smoother(poses, ids, 1.0 / self.fps)
        else:
            poses = Poses(poses.keypoints.copy(), poses.scores.copy(), poses.layout, dict(poses.extras))
        poses.extras["track_id"] = ids.copy()
        return poses, ids


def frame_record(
    video: str, frame: int, fps: float, poses: Poses, track_ids: np.ndarray | None, image_id: Any = None
) -> dict[str, Any]:
    """One JSON-lines record of a video frame: ``video``, ``frame``, ``time`` (s), ``image_id`` and
    ``people`` (each ``track_id`` (``null`` when untracked), ``score``, ``bbox`` x,y,w,h and
    ``keypoints`` as [x, y, score] rows)."""
    boxes = poses.bboxes()
    people = []
    for i in range(len(poses)):
        tid = None if track_ids is None or int(track_ids[i]) < 0 else int(track_ids[i])
        people.append({
            "track_id": tid,
            "score": float(poses.scores[i]),
            "bbox": [round(float(v), 3) for v in boxes[i]],
            "keypoints": [[round(float(v), 3) for v in row] for row in poses.keypoints[i]],
        })  # fmt: skip
    return {
        "video": video, "frame": int(frame), "time": round(frame / fps, 6),
        "image_id": image_id, "people": people,
    }  # fmt: skip


@dataclass(frozen=True)
class VideoSettings:
    """What ``bupose run`` does with video frames: tracking, the tracker, smoothing and its parameters."""

    track: bool = False
    tracker: str = "oks"
    smooth: str = "none"
    one_euro: OneEuroSettings = OneEuroSettings()
    track_score: float | None = None
    """Person score from which a person may start a track (``None``: the tracker's default, 0.3 for
    ``oks``); person scores are on each method's own scale, so this is worth setting per head."""

    def tracker_settings(self) -> dict[str, Any]:
        """The tracker's keyword settings these settings imply."""
        s = self.track_score
        if s is None:
            return {}
        if self.tracker == "oks":
            return {"high_score": s, "low_score": min(0.05, s)}
        if self.tracker == "bytetrack":
            return {"track_activation_threshold": s, "high_conf_det_threshold": s}
        return {"track_activation_threshold": s}

    def stream(self, layout: str, fps: float) -> VideoPoseStream:
        """A fresh per-video stream with these settings."""
        return VideoPoseStream(
            layout, fps=fps, track=self.track, smooth=self.smooth, tracker=self.tracker, one_euro=self.one_euro,
            tracker_settings=self.tracker_settings(),
        )


class VideoFrameLog:
    """Per-video streams and their JSON-lines files (``DIR/<video stem>.frames.jsonl``, one record per
    frame, :func:`frame_record`), for frames handed over in order."""

    def __init__(self, out_dir: Any, layout: str, settings: VideoSettings | None = None) -> None:
        from pathlib import Path

        self.out_dir = Path(out_dir)
        self.layout = layout
        self.settings = settings or VideoSettings()
        self._streams: dict[Any, VideoPoseStream] = {}
        self._files: dict[Any, Any] = {}
        self.paths: list[Any] = []

    def add(self, video: Any, frame: int, fps: float, poses: Poses, image_id: Any = None) -> tuple[Poses, np.ndarray | None]:
        """Track/smooth one frame of ``video`` (a path), log it; returns the poses and track ids."""
        import json
        from pathlib import Path

        key = Path(video)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = self.settings.stream(self.layout, fps)
            path = self.out_dir / f"{key.stem}.frames.jsonl"
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._files[key] = open(path, "w")  # noqa: SIM115 - kept open across frames, closed in close()
            self.paths.append(path)
        poses, ids = stream.update(poses)
        record = frame_record(key.name, frame, stream.fps, poses, ids, image_id)
        self._files[key].write(json.dumps(record) + "\n")
        return poses, ids

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
