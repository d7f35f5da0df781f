"""``bupose run VIDEO --track --smooth one-euro``: per-frame JSON lines, track ids in results.json, an
overlay video, and exactly the tracking/smoothing of :class:`bupose.core.video.VideoPoseStream` applied
to the untracked run's poses.

The video pans over one ``bupose data synth`` scene. The model is the example head with fixed random
weights (no trained model is available to CI), so the poses are not meaningful people: this test checks
the wiring; id continuity and jitter on moving people are measured in ``packages/bupose-core/tests/
test_video.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.data.synth import render_scene
from bupose.core.model import build_model
from bupose.core.plugins import get_registry
from bupose.core.poses import Poses
from bupose.core.video import VideoPoseStream
from bupose.core.weights import save_safetensors

pytestmark = pytest.mark.skipif(
    "example" not in get_registry().names("heads"), reason="needs the example plugin (bupose-example-head)"
)

FRAMES = 12
FPS = 25.0


def _write_video(path: Path, size: int = 160, crop: int = 128) -> None:
    image, _, _ = render_scene(5, size=size, difficulty="normal")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (crop, crop))
    assert writer.isOpened()
    for t in range(FRAMES):
        x0 = round((size - crop) / 2 * (1 + math.sin(2 * math.pi * t / FRAMES)))
        frame = np.ascontiguousarray(image[8 : 8 + crop, x0 : x0 + crop])
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _weights(path: Path) -> None:
    model = build_model("example", "example_convnet").eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _name, t in model.state_dict().items():
            if t.is_floating_point() and t.dim() >= 2:
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(max(1, t[0].numel())))
    save_safetensors(path, model.state_dict(), {**model.metadata(), "input_size": 64})


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_run_video_track_smooth(tmp_path: Path) -> None:
    video = tmp_path / "walk.mp4"
    _write_video(video)
    weights = tmp_path / "w.safetensors"
    _weights(weights)
    base = ["run", "--head", "example", "--backbone", "example_convnet", "--weights", str(weights)]
    runner = CliRunner()
    res = runner.invoke(build_cli(), [*base, "--output", str(tmp_path / "raw"), "--no-overlays", str(video)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(build_cli(), [*base, "--output", str(tmp_path / "tracked"), "--track", "--smooth", "one-euro",
                                      "--smooth-min-cutoff", "0.8", "--track-score", "0.1", str(video)])
    assert res.exit_code == 0, res.output

    raw = _records(tmp_path / "raw" / "walk.frames.jsonl")
    tracked = _records(tmp_path / "tracked" / "walk.frames.jsonl")
    assert [r["frame"] for r in raw] == [r["frame"] for r in tracked] == list(range(FRAMES))
    assert all(p["track_id"] is None for r in raw for p in r["people"])
    assert sum(len(r["people"]) for r in raw) > 0, "the test model must produce poses"
    assert (tmp_path / "tracked" / "overlays" / "walk.mp4").stat().st_size > 0

    # the CLI's tracking + smoothing are the library's on the same per-frame poses (read at full precision
    # from results.json: the JSON lines round to 1e-3 px, which could move an OKS across the match threshold)
    from bupose.core.video import OneEuroSettings

    raw_results = _by_image(json.loads((tmp_path / "raw" / "results.json").read_text()))
    tracked_results = _by_image(json.loads((tmp_path / "tracked" / "results.json").read_text()))
    stream = VideoPoseStream("coco17", fps=FPS, smooth="one-euro", one_euro=OneEuroSettings(min_cutoff=0.8),
                             tracker_settings={"high_score": 0.1, "low_score": 0.05})
    changed = False
    for r, t in zip(raw, tracked, strict=True):
        entries = raw_results.get(r["image_id"], [])
        assert len(entries) == len(r["people"])
        poses = Poses.from_coco(entries, "coco17", 17)
        want, ids = stream.update(poses)
        assert ids is not None
        assert [p["track_id"] for p in t["people"]] == [int(i) if i >= 0 else None for i in ids]
        got = Poses.from_coco(tracked_results.get(t["image_id"], []), "coco17", 17)
        assert [e["track_id"] for e in tracked_results.get(t["image_id"], [])] == [p["track_id"] for p in t["people"]]
        np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-6)
        np.testing.assert_allclose(np.array([p["keypoints"] for p in t["people"]]).reshape(-1, 17, 3),
                                   want.keypoints, atol=1e-3)  # the JSON lines, rounded
        changed |= len(poses) > 0 and not np.allclose(poses.keypoints, want.keypoints)
    assert changed, "smoothing changed nothing"
    assert all(isinstance(p["track_id"], int) for t in tracked for p in t["people"])


def _by_image(results: list[dict]) -> dict:
    out: dict = {}
    for e in results:
        out.setdefault(e["image_id"], []).append(e)
    return out


def test_run_video_bad_options(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    _write_video(video)
    weights = tmp_path / "w.safetensors"
    _weights(weights)
    base = ["run", "--head", "example", "--backbone", "example_convnet", "--weights", str(weights),
            "--output", str(tmp_path / "o"), str(video)]
    res = CliRunner().invoke(build_cli(), [*base, "--smooth", "one-euro", "--smooth-min-cutoff", "0"])
    assert res.exit_code != 0 and "min_cutoff and d_cutoff must be > 0" in res.output
    res = CliRunner().invoke(build_cli(), [*base, "--smooth", "kalman"])
    assert res.exit_code != 0 and "kalman" in res.output


def test_run_video_with_bytetrack(tmp_path: Path) -> None:
    """--tracker bytetrack (the optional `trackers` package) gives ids from a track's second frame on."""
    pytest.importorskip("trackers")
    video = tmp_path / "walk.mp4"
    _write_video(video)
    weights = tmp_path / "w.safetensors"
    _weights(weights)
    res = CliRunner().invoke(build_cli(), [
        "run", "--head", "example", "--backbone", "example_convnet", "--weights", str(weights), "--no-overlays",
        "--track", "--tracker", "bytetrack", "--track-score", "0.1", "--output", str(tmp_path / "bt"), str(video)])
    assert res.exit_code == 0, res.output
    records = _records(tmp_path / "bt" / "walk.frames.jsonl")
    assert len(records) == FRAMES
    later = [p["track_id"] for r in records[1:] for p in r["people"]]
    assert later and all(isinstance(t, int) and t >= 0 for t in later)
