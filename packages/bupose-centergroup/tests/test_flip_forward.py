"""The full official flip-test forward (CenterGroup.forward(return_loss=False)) on recipe weights."""

from __future__ import annotations

import numpy as np
import torch
from _centergroup_golden import fixture, golden_model

from bupose.centergroup.pipeline import CenterGroupPipeline
from bupose.core.algorithms.geometry import WarpMeta, back_project


def test_flip_test_forward_matches_official() -> None:
    fx = fixture("forward_test_flip_w32_coco.pt")
    assert int(fx["meta/merge_failed"]) == 0
    pipe = CenterGroupPipeline(golden_model())
    assert pipe.flip_index == fx["input/flip_index"].tolist()
    (res,) = pipe.forward_tensors([fx["input/img"]], fx["input/pad_mask/2"], fx["input/pad_mask/0"])
    assert not res.merge_failed
    meta = WarpMeta((0, 0), (128, 128), tuple(float(v) for v in fx["input/center"]), tuple(float(v) for v in fx["input/scale"]))
    poses = back_project(res.poses.numpy(), meta)
    ref = fx["output/preds"].numpy()
    assert poses.shape == ref.shape  # 29 kept centres, official order
    np.testing.assert_allclose(poses[..., :2], ref[..., :2], rtol=0, atol=1e-4)
    # joint visibilities: sigmoid of logits in the hundreds, whose float32 noise (relative 4e-6,
    # absolute up to 4e-3) moves the few unsaturated ones by < 1e-4
    np.testing.assert_allclose(poses[..., 2:], ref[..., 2:], rtol=0, atol=1e-4)
    np.testing.assert_allclose(res.scores.numpy(), fx["output/scores"].numpy(), rtol=0, atol=1e-5)


def test_single_branch_differs_and_decodes() -> None:
    fx = fixture("forward_test_flip_w32_coco.pt")
    pipe = CenterGroupPipeline(golden_model(), flip=False)
    (res,) = pipe.forward_tensors([fx["input/img"]], fx["input/pad_mask/2"], fx["input/pad_mask/0"])
    g = fixture("forward_grouping_w32_coco.pt")
    # one branch = the grouping fixture's kept centres, last head, hard locations (+ adjust)
    assert res.poses.shape[0] == g["preds/hard_loc_pred"].shape[1]
    vis = torch.sigmoid(g["preds/viz_pred"][-1, :, :, 0])
    adjusted = (res.poses[..., :2] - g["preds/hard_loc_pred"][-1]).abs()
    moved = vis > 0
    assert torch.all(adjusted[moved] <= 0.75 + 1e-6) and torch.all(adjusted[~moved] == 0)
