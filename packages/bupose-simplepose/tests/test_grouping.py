"""SimplePose grouping against the official single-scale fixture (grouping_single_scale.pt / .json):
peaks, connections, subset, COCO keypoints, scores and the results JSON, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _sp_golden import SP, load

from bupose.simplepose.grouping import LimbGroupingParams, find_peaks, group_people


@pytest.fixture(scope="module")
def fixture() -> dict:
    return load("grouping_single_scale.pt")


@pytest.fixture(scope="module")
def result(fixture: dict):
    heat = fixture["input/heatmap_avg_hwc"].double().numpy()
    limbs = fixture["input/paf_avg_hwc"].double().numpy()
    params = LimbGroupingParams(**{k: fixture[f"params/{k}"] for k in (
        "thre1", "thre2", "connect_ration", "mid_num", "len_rate", "connection_tole", "offset_radius", "remove_recon"
    )})
    assert params == LimbGroupingParams()
    return group_people(heat, limbs, params)


def test_peaks_exact(fixture: dict, result) -> None:
    expected = fixture["intermediate/peaks_part_x_y_score_id"].numpy()
    got = np.concatenate([result.part[:, None].astype(np.float64), result.candidate], axis=1)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(result.candidate, fixture["intermediate/candidate"].numpy())


def test_border_peak_takes_the_unrefined_branch(result) -> None:
    h, w = 96, 128
    x, y = result.candidate[:, 0], result.candidate[:, 1]
    border = (x < 2) | (y < 2) | (x > w - 3) | (y > h - 3)
    assert border.sum() >= 1
    assert np.all(x[border] == np.round(x[border])) and np.all(y[border] == np.round(y[border]))


def test_connections_exact(fixture: dict, result) -> None:
    expected = fixture["intermediate/connections_limb_idA_idB_score_i_j_len"].numpy()
    np.testing.assert_array_equal(result.connections, expected)
    assert result.special_k == fixture["intermediate/special_k"].tolist()


def test_subset_exact(fixture: dict, result) -> None:
    np.testing.assert_array_equal(result.subset, fixture["intermediate/subset"].numpy())


def test_coco_output_and_json(fixture: dict, result) -> None:
    np.testing.assert_array_equal(result.keypoints[..., :2], fixture["output/keypoints_xy"].numpy())
    np.testing.assert_array_equal(result.scores, fixture["output/scores"].numpy())
    entries = json.loads((SP / "grouping_single_scale.json").read_text())
    assert len(entries) == len(result.scores)
    for i, e in enumerate(entries):
        assert e["image_id"] == 1 and e["category_id"] == 1
        np.testing.assert_array_equal(np.asarray(e["keypoints"], dtype=np.float64), result.keypoints[i].reshape(-1))
        assert e["score"] == result.scores[i]
    missing = result.keypoints[..., 2] == 0
    assert missing.any() and np.all(result.keypoints[missing][:, :2] == 0)


def test_empty_maps_give_nobody() -> None:
    r = group_people(np.zeros((64, 64, 20)), np.zeros((64, 64, 30)))
    assert r.candidate.shape == (0, 4) and r.subset.shape == (0, 20, 2) and r.keypoints.shape == (0, 17, 3)


def test_threshold_controls_peaks(fixture: dict) -> None:
    heat = fixture["input/heatmap_avg_hwc"].double().numpy()
    low, _ = find_peaks(heat, 0.1)
    high, _ = find_peaks(heat, 0.6)
    assert 0 < len(high) < len(low)


def test_bad_limb_maps_shape() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 30\)"):
        group_people(np.zeros((8, 8, 20)), np.zeros((8, 8, 29)))


def test_registered_grouper_on_candidates(fixture: dict) -> None:
    from bupose.core.grouping import Candidates as LimbCandidates
    from bupose.core.plugins import get_registry

    spec = get_registry().get("groupers", "simplepose_limbs")
    grouper = spec.load()("coco17")
    peaks = fixture["intermediate/peaks_part_x_y_score_id"].numpy()
    part = peaks[:, 0].astype(int)
    limbs = fixture["input/paf_avg_hwc"].double().numpy()
    cands = LimbCandidates(
        "coco17",
        [peaks[part == k, 1:3] for k in range(18)],
        [peaks[part == k, 3] for k in range(18)],
        maps={"limb_heatmaps": np.moveaxis(limbs, 2, 0)},
        image_size=(96, 128),
    )
    poses = grouper(cands)
    assert poses.layout == "coco17" and len(poses) == 4
    np.testing.assert_array_equal(poses.keypoints[..., :2], fixture["output/keypoints_xy"].numpy())
    np.testing.assert_array_equal(poses.scores, fixture["output/scores"].numpy())
    with pytest.raises(ValueError, match="limb_heatmaps"):
        grouper(LimbCandidates("coco17", cands.xy, cands.scores, image_size=(96, 128)))
    with pytest.raises(TypeError, match="unknown option"):
        spec.load()("coco17", thre3=1)
