"""Crafted post-processing fixture: node extraction of both flip branches, flip-back + merge, pose
score, adjust, back-projection and the COCO results list."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _centergroup_golden import CG, fixture

from bupose.centergroup.decode import MergeError, decode_poses, flip_back, merge_branches, pose_scores
from bupose.centergroup.nodes import CENTRES, KEYPOINTS, find_candidates, flip_average, stage_average
from bupose.core.algorithms.geometry import WarpMeta, back_project
from bupose.core.poses import Poses

FX = "postprocess_w32_coco.pt"


def _branch_heatmaps(fx: dict) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = (int(v) for v in fx["meta/image_hw"])
    fi = fx["input/flip_index"].tolist()
    kp_img = stage_average(fx["input/kp_pred/0"], fx["input/kp_pred/1"], range(17), (h, w))
    kp_flip = stage_average(fx["input/kp_pred_of_flipped_image/0"], fx["input/kp_pred_of_flipped_image/1"], range(17), (h, w))
    c_img = stage_average(fx["input/p_pred/0"], fx["input/p_pred/1"], [0], (h, w))
    c_flip = stage_average(fx["input/p_pred_of_flipped_image/0"], fx["input/p_pred_of_flipped_image/1"], [0], (h, w))
    kp = torch.cat([flip_average(kp_img, kp_flip, fi), flip_average(kp_flip, kp_img, fi)])
    c = torch.cat([flip_average(c_img, c_flip, None), flip_average(c_flip, c_img, None)])
    return kp, c


def _valid(fx: dict) -> torch.Tensor:
    m = fx["input/pad_mask_full"]
    return torch.cat([m, torch.flip(m, dims=[2])])


def test_node_extraction_both_branches() -> None:
    fx = fixture(FX)
    kp, c = _branch_heatmaps(fx)
    valid = _valid(fx)
    for name, maps, cfg in (("keypoints", kp, KEYPOINTS), ("centers", c, CENTRES)):
        cand = find_candidates(maps, valid, cfg)
        ref = f"nodes/{name}"
        assert float((cand.heatmap - fx[f"{ref}/heatmap"]).abs().max()) < 1e-6
        assert float((cand.score - fx[f"{ref}/kp_score"]).abs().max()) < 1e-6
        assert torch.equal(cand.index, fx[f"{ref}/kp_ind"])
        assert torch.equal(cand.keep, fx[f"{ref}/keep_mask"])
        assert torch.equal(torch.stack([cand.x, cand.y], -1), fx[f"{ref}/kp_pos"][..., 1:])
    # the weak real joint (amplitude 0.003) is kept only by the top-3 rule; the padding distractor is not
    cand = find_candidates(kp, valid, KEYPOINTS)
    low = (cand.score < KEYPOINTS.min_score) & cand.keep
    assert low.any()
    inside = valid[0].reshape(-1)[cand.index[0]] > 0
    assert not (cand.keep[0] & ~inside).any()


def _preds(fx: dict, key: str) -> dict[str, torch.Tensor]:
    return {
        "loc": fx[f"input/{key}/loc_pred"],
        "hard_loc": fx[f"input/{key}/hard_loc_pred"],
        "vis": fx[f"input/{key}/viz_pred"][..., 0],
        "person": fx[f"input/{key}/person_tp_pred"][..., 0],
    }


def _decode(fx: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    h, w = (int(v) for v in fx["meta/image_hw"])
    a = _preds(fx, "group_preds")
    b = flip_back(_preds(fx, "group_preds_flipped_branch"), fx["input/flip_index"].tolist(), w)
    merged = merge_branches(a, b)
    poses, scores = decode_poses(merged, fx["nodes/keypoints/heatmap"][0])
    meta = WarpMeta((0, 0), (w, h), tuple(float(v) for v in fx["input/center"]), tuple(float(v) for v in fx["input/scale"]))
    return back_project(poses.numpy(), meta), scores.numpy(), merged


def test_flip_merge_matches_official() -> None:
    fx = fixture(FX)
    _, _, merged = _decode(fx)
    assert torch.equal(merged["hard_loc"], fx["merged/hard_loc_pred"])
    torch.testing.assert_close(merged["loc"], fx["merged/loc_pred"], rtol=0, atol=1e-5)
    torch.testing.assert_close(merged["vis"], fx["merged/viz_pred"][..., 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(merged["person"], fx["merged/person_tp_pred"][..., 0], rtol=0, atol=1e-6)


def test_poses_and_scores_match_official() -> None:
    fx = fixture(FX)
    poses, scores, _ = _decode(fx)
    ref = fx["output/preds"].numpy()
    assert poses.dtype == np.float32
    np.testing.assert_allclose(poses[..., :2], ref[..., :2], rtol=0, atol=1e-4)
    np.testing.assert_allclose(poses[..., 2:], ref[..., 2:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores, fx["output/scores"].numpy(), rtol=0, atol=1e-6)


def test_coco_results_json_matches_official() -> None:
    fx = fixture(FX)
    poses, scores, _ = _decode(fx)
    entries = Poses(poses[..., :3], scores, "coco17").to_coco(42)
    ref = json.loads((CG / "postprocess_w32_coco.json").read_text())
    assert len(entries) == len(ref)
    for e, r in zip(entries, ref, strict=True):
        assert set(e) == set(r)
        assert e["image_id"] == r["image_id"] and e["category_id"] == r["category_id"]
        np.testing.assert_allclose(e["keypoints"], r["keypoints"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(e["bbox"], r["bbox"], rtol=0, atol=1e-4)
        assert abs(e["score"] - r["score"]) < 1e-6


def test_merge_refuses_different_centre_counts() -> None:
    fx = fixture(FX)
    a = _preds(fx, "group_preds")
    b = {k: v[:, :2] for k, v in a.items()}
    with pytest.raises(MergeError, match="3 and 2"):
        merge_branches(a, b)


def test_pose_score_rule() -> None:
    vis = torch.tensor([[0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.05], [0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.05]])
    person = torch.tensor([0.7, 0.3])
    s = pose_scores(vis, person)
    # joints > 0.5 (two) plus those >= the 5th largest (0.1): 0.9, 0.8 and the four 0.1
    assert abs(float(s[0]) - (0.9 + 0.8 + 0.4) / (6 + 1e-9)) < 1e-6
    assert abs(float(s[1]) - 0.3) < 1e-7
