"""``bupose run``'s input collection (unique ids, overlays, globs, skips, datasets), EXIF orientation,
the device rule and the file mode of atomically written files — without a model."""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from bupose.core.cli._exif import apply_orientation, exif_orientation
from bupose.core.cli._run_inputs import collect_inputs
from bupose.core.weights import atomic_write


def _touch_images(root: Path, names: list[str]) -> None:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(p.suffix, np.zeros((4, 4, 3), np.uint8))
        assert ok
        buf.tofile(str(p))


def test_ids_are_relative_paths_and_collisions_widen_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _touch_images(tmp_path, ["cam1/f.png", "cam2/f.png", "a.png", "a.jpg", "sub/b.png"])
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    items, problems, skipped = collect_inputs([str(tmp_path)], recursive=True)
    assert not problems and [s.split(":")[0] for s in skipped] == [str(tmp_path / "readme.txt")]
    assert {i.key for i in items} == {"cam1/f.png", "cam2/f.png", "a.png", "a.jpg", "sub/b.png"}
    overlays = {i.key: i.overlay for i in items}
    assert overlays["a.png"] == "a.png.jpg" and overlays["a.jpg"] == "a.jpg.jpg" and overlays["sub/b.png"] == "sub/b.jpg"
    items, _, _ = collect_inputs([str(tmp_path / "cam1"), str(tmp_path / "cam2")])
    assert [i.key for i in items] == ["cam1/f.png", "cam2/f.png"]
    items, _, _ = collect_inputs([str(tmp_path / "cam1" / "f.png"), str(tmp_path / "cam1" / "f.png")])
    assert len(items) == 1  # the same file twice is read once
    items, problems, _ = collect_inputs([str(tmp_path / "*" / "f.png"), str(tmp_path / "nope*.png")])
    assert [i.key for i in items] == ["cam1/f.png", "cam2/f.png"] and "matches no files" in problems[0]
    monkeypatch.chdir(tmp_path)  # relative inputs, the run's overlays inside the input folder
    items, problems, _ = collect_inputs(["."], exclude=tmp_path / "sub", recursive=True)
    assert "sub/b.png" not in {i.key for i in items} and "a.png" in {i.key for i in items}
    (tmp_path / "results.jsonl").write_text("")
    items, _, skipped = collect_inputs(["."], exclude=tmp_path / "overlays")  # -o . : the inputs stay inputs
    assert {i.key for i in items} == {"a.png", "a.jpg"} and not any("results.jsonl" in x for x in skipped)


def test_dataset_inputs_keep_dataset_ids_and_annotations_map_names(tmp_path: Path) -> None:
    _touch_images(tmp_path / "ds" / "images", ["x.png", "y.png"])
    gt = {"images": [{"id": 5, "file_name": "x.png", "width": 4, "height": 4},
                     {"id": 9, "file_name": "y.png", "width": 4, "height": 4}],
          "annotations": [], "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(17)],
                                             "skeleton": []}]}
    (tmp_path / "ds" / "annotations.json").write_text(json.dumps(gt))
    items, problems, _ = collect_inputs([str(tmp_path / "ds")])
    assert not problems and [(i.key, i.image_id, i.from_dataset) for i in items] == [("x.png", 5, True), ("y.png", 9, True)]
    items, _, _ = collect_inputs([str(tmp_path / "ds" / "images")], annotations={"x.png": 5})
    assert [(i.key, i.image_id) for i in items] == [("x.png", 5), ("y.png", "y.png")]
    items, _, _ = collect_inputs(["0", "rtsp://cam.local/live"])
    assert [(i.kind, i.key) for i in items] == [("stream", "webcam0"), ("stream", "rtsp_cam.local_live")]


def _exif_jpeg(orientation: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    assert ok
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0\0\0\0"
    seg = b"Exif\x00\x00" + tiff
    data = buf.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + data[2:]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_opencv(tmp_path: Path, orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    img = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    tiff = b"MM\x00*" + struct.pack(">IH", 8, 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\0\0\0\0"
    seg = b"Exif\x00\x00" + tiff
    data = buf.tobytes()
    data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(seg) + 2) + seg + data[2:]
    (tmp_path / "o.jpg").write_bytes(data)
    assert exif_orientation(tmp_path / "o.jpg") == orientation
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    upright = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # OpenCV applies EXIF
    np.testing.assert_array_equal(apply_orientation(raw, orientation), upright)


def test_exif_orientation_absent_or_malformed_is_none(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(_exif_jpeg(6)[:30])  # cut inside the EXIF block
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert exif_orientation(tmp_path / "a.jpg") is None and exif_orientation(tmp_path / "b.png") is None
    assert exif_orientation(tmp_path / "missing.jpg") is None


def test_atomic_write_gives_open_mode(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        p = atomic_write(tmp_path / "f.json", lambda tmp: Path(tmp).write_text("{}"))
    finally:
        os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_device_rule() -> None:
    import torch

    from bupose.core.cli import BuposeError
    from bupose.core.cli._device import resolve_device

    dev, note = resolve_device("auto")
    assert dev == ("cuda" if torch.cuda.is_available() else "cpu") and "auto" in note
    assert resolve_device("cpu")[0] == "cpu"
    with pytest.raises(BuposeError, match="not a device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(BuposeError, match="--device cuda:1: CUDA is not available"):
            resolve_device("cuda:1")
