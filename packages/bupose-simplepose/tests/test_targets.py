"""Training targets against the official Heatmapper fixture (train_targets_512.pt)."""

from __future__ import annotations

import numpy as np
from _sp_golden import load

from bupose.simplepose.targets import coco_to_internal18, create_heatmaps


def test_coco_to_internal18() -> None:
    d = load("train_targets_512.pt")
    got = coco_to_internal18(d["input/joints_coco_xyv"].numpy())
    np.testing.assert_array_equal(got, d["input/joints_internal18_xyv"].numpy())


def test_heatmaps_match() -> None:
    d = load("train_targets_512.pt")
    got = create_heatmaps(d["input/joints_internal18_xyv"].numpy(), d["input/mask_all_uint8"].numpy())
    expected = d["output/heatmaps_chw"].numpy()
    assert got.shape == expected.shape == (50, 128, 128) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # keypoint channels and the mask are exact; limbs within float32 rounding
    np.testing.assert_array_equal(got[30:], expected[30:])


def test_unlabelled_joints_are_not_drawn() -> None:
    d = load("train_targets_512.pt")
    joints = d["input/joints_internal18_xyv"].numpy().copy()
    joints[:, 0, 2] = 2  # no nose anywhere
    got = create_heatmaps(joints, d["input/mask_all_uint8"].numpy())
    assert got[30].max() == 0  # nose map empty
    assert got[0].max() == 0  # limb neck -> nose empty
    assert got[31].max() > 0.9
