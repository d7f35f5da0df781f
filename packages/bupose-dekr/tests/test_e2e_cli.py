"""``bupose run`` behaviour with the dekr head: missing --weights, unreadable inputs skipped,
folders, videos (frames named ``<video>#<frame>``), --annotations ids, results.json format."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.model import build_model
from bupose.core.weights import save_safetensors

pytest.importorskip("bupose.hrnet", reason="needs a backbone (bupose-hrnet, test extra)")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model("dekr", "hrnet_w18_small")
    with torch.no_grad():
        model.head.head_heatmap[1].bias[-1] = 0.5  # centre channel above threshold: people found
    path = tmp_path_factory.mktemp("w") / "dekr_w18s.safetensors"
    save_safetensors(path, model.state_dict(), model.metadata())
    return path


def _invoke(args: list[str]) -> object:
    return CliRunner().invoke(build_cli(), args, catch_exceptions=False)


def test_missing_weights_names_the_official_files(tmp_path: Path) -> None:
    res = _invoke(["run", "--head", "dekr", "--backbone", "hrnet_w32", "x.png", "--output", str(tmp_path)])
    assert res.exit_code != 0  # type: ignore[attr-defined]
    out = res.output  # type: ignore[attr-defined]
    assert "pose_dekr_hrnetw32_coco.pth" in out and "bupose list weights" in out
    assert "pose_dekr_hrnetw48_crowdpose.pth" in out


def test_unknown_head_is_a_clear_error(tmp_path: Path) -> None:
    res = _invoke(["run", "--head", "dkr", "--backbone", "hrnet_w32", "x.png", "--output", str(tmp_path)])
    assert res.exit_code != 0 and "Did you mean 'dekr'" in res.output  # type: ignore[attr-defined]


def test_images_folders_videos_and_bad_inputs(weights: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"not an image")
    video = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (48, 32))
    for _ in range(2):
        vw.write(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
    vw.release()
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 77, "file_name": "a.png"}], "annotations": [], "categories": []}))
    out = tmp_path / "out"
    res = CliRunner().invoke(
        build_cli(),
        [
            "run", "--head", "dekr", "--backbone", "hrnet_w18_small", "--weights", str(weights),
            "--input-size", "64", "--batch-size", "2", "--annotations", str(gt), "--no-flip",
            str(folder), str(video), str(tmp_path / "missing.png"), "--output", str(out),
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert res.exit_code == 1, res.output  # the unreadable inputs fail the run; the others are kept
    assert "broken.png" in res.output and "missing.png" in res.output and "2 input(s) failed" in res.output
    results = json.loads((out / "results.json").read_text())
    ids = {r["image_id"] for r in results}
    assert ids == {77, "b.jpg", "clip.avi#0", "clip.avi#1"}
    for r in results:
        assert r["category_id"] == 1 and len(r["keypoints"]) == 51 and len(r["bbox"]) == 4
    assert (out / "overlays" / "a.jpg").is_file() and (out / "overlays" / "clip.mp4").is_file()
    assert "4 image(s)" in res.output
