"""Visualisation: drawing, overlays (PNG/JPEG), contact sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bupose.core.io import read_image as read_rgb
from bupose.core.poses import Poses
from bupose.core.vis import contact_sheet, draw_poses, save_image, save_overlay


def _poses(score: float = 0.9) -> Poses:
    kp = np.zeros((1, 17, 3))
    kp[0, :, 0] = np.linspace(20, 100, 17)
    kp[0, :, 1] = np.linspace(30, 90, 17)
    kp[0, :, 2] = 0.8
    return Poses(kp, np.array([score]), "coco17")


def test_draw_poses_marks_joints_and_respects_thresholds() -> None:
    img = np.zeros((128, 128, 3), np.uint8)
    out = draw_poses(img, _poses(), "coco17")
    assert out is not img and img.max() == 0  # input untouched
    for x, y in _poses().keypoints[0, :, :2]:
        assert out[int(y), int(x)].max() > 0
    assert draw_poses(img, _poses(0.2), "coco17", score_threshold=0.5).max() == 0
    gt = np.zeros((1, 17, 3))
    gt[0, 3] = (60, 60, 0)  # v=0: not drawn
    assert draw_poses(img, gt, "coco17").max() == 0
    with_ids = draw_poses(img, _poses(), "coco17", ids=True)
    assert (with_ids != out).any()
    with pytest.raises(ValueError, match="14"):
        draw_poses(img, _poses(), "crowdpose14")


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_save_overlay_and_contact_sheet(tmp_path: Path, ext: str) -> None:
    img = np.full((90, 120, 3), 40, np.uint8)
    for i in range(3):
        save_overlay(tmp_path / "ov" / f"im{i}{ext}", img, _poses(), "coco17")
    back = read_rgb(tmp_path / "ov" / f"im0{ext}")
    assert back.shape == (90, 120, 3)
    if ext == ".png":
        assert np.array_equal(back, draw_poses(img, _poses(), "coco17"))
    sheet = contact_sheet(tmp_path / "ov", tmp_path / "sheet.png", columns=2, cell=64)
    assert read_rgb(sheet).shape == (128, 128, 3)
    with pytest.raises(ValueError, match=r"\.png, \.jpg"):
        save_image(tmp_path / "x.gif", img)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no \.png/\.jpg images"):
        contact_sheet(tmp_path / "empty", tmp_path / "s.png")
