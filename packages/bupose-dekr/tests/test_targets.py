"""DEKR training targets against the official generators (shared/golden/dekr/targets_coco.pt,
targets_crowdpose.pt: annotations json of one 256x256 image -> every intermediate and target)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bupose.dekr.targets import (
    encode_targets,
    get_joints,
    offset_targets,
    person_area,
    targets_from_annotations,
)

sys.path.insert(0, str(Path(__file__).parent))
from _dekr_golden import fixture


@pytest.mark.parametrize("variant", ["coco", "crowdpose"])
def test_targets_match_official(variant: str) -> None:
    fx = fixture(f"targets_{variant}.pt")
    anns = json.loads(fx["annotations_json"])
    out = targets_from_annotations(
        anns, tuple(fx["image_hw"]), int(fx["num_joints"]), kind=fx["kind"], output_size=int(fx["output_size"]),
        sigma=float(fx["cfg/SIGMA"]), center_sigma=float(fx["cfg/CENTER_SIGMA"]),
        bg_weight=float(fx["cfg/BG_WEIGHT"]), radius=int(fx["cfg/OFFSET_RADIUS"]),
    )
    assert np.array_equal(out["mask_image"].astype(np.uint8), fx["mask_image"].numpy())
    assert np.array_equal(out["mask_output"], fx["mask_output"].numpy())
    for key in ("joints_image", "area_image", "joints_output", "area_output"):
        np.testing.assert_allclose(out[key], fx[key].numpy(), rtol=0, atol=1e-9, err_msg=key)
    for key in ("heatmap", "heatmap_weight", "offset", "offset_weight"):
        assert out[key].shape == tuple(fx[key].shape), key
        assert out[key].dtype == np.float32, key
        diff = np.abs(out[key] - fx[key].numpy()).max()
        assert diff <= 1e-6, f"{key}: max|Δ| = {diff}"
    # the fixture exercises what it claims: overlapping windows, a centre at the origin, weights
    assert (fx["offset_weight"] > 0).sum() > 0
    if variant == "coco":
        assert out["joints_image"][5, -1].tolist() == [0.0, 0.0, 1.0]  # no-keypoint person quirk
        assert out["joints_image"][2, -1, 2] == 0  # area < 32²: no centre


def test_centre_sigma_rule_follows_index_17() -> None:
    # CrowdPose: the centre is channel 14 < 17, so it gets SIGMA (2), not CENTER_SIGMA (4)
    joints = np.zeros((1, 15, 3))
    joints[0, 14] = (20.0, 20.0, 1)
    out = encode_targets(joints, np.array([100.0]), np.ones((40, 40)), 40, sigma=2.0, center_sigma=4.0)
    hm = out["heatmap"][14]
    assert hm[20, 20] == 1.0
    np.testing.assert_allclose(hm[20, 22], np.exp(-4 / 8), rtol=1e-6)
    joints17 = np.zeros((1, 18, 3))
    joints17[0, 17] = (20.0, 20.0, 1)
    hm17 = encode_targets(joints17, np.array([100.0]), np.ones((40, 40)), 40)["heatmap"][17]
    np.testing.assert_allclose(hm17[20, 22], np.exp(-4 / 32), rtol=1e-6)


def test_smaller_person_wins_overlaps() -> None:
    # two persons with the same centre pixel: the later one overwrites only if its area is <= stored
    joints = np.zeros((2, 2, 3))
    joints[0] = [(10.0, 12.0, 2), (16.5, 16.5, 1)]
    joints[1] = [(20.0, 22.0, 2), (16.2, 16.7, 1)]
    off, w = offset_targets(joints, np.array([100.0, 400.0]), 32, radius=4)
    assert off[0, 16, 16] == 16 - 10.0 and w[0, 16, 16] == np.float32(0.1)
    off2, w2 = offset_targets(joints, np.array([400.0, 100.0]), 32, radius=4)
    assert off2[0, 16, 16] == 16 - 20.0 and w2[0, 16, 16] == np.float32(0.1)
    # the window is [int(c) - 4, int(c) + 4)
    assert np.count_nonzero(w[0]) == 64 and w[0, 12:20, 12:20].all()


def test_area_rule_uses_zero_rows() -> None:
    anns = [{"keypoints": [50.0, 60.0, 2, 70.0, 90.0, 2], "area": 5000.0, "num_keypoints": 2, "iscrowd": 0}]
    joints, area = get_joints(anns, 2, "coco")
    # the still-zero centre row pulls the minima to 0: area = 70² + 90²
    assert area[0] == 70.0**2 + 90.0**2
    assert person_area(torch.tensor(joints[:, :2]).numpy())[0] == 20.0**2 + 30.0**2
    np.testing.assert_allclose(joints[0, -1], [60.0, 75.0, 1.0])
    with pytest.raises(ValueError, match="annotation 0: 'keypoints' has 6 values, expected 9"):
        get_joints(anns, 3, "coco")
