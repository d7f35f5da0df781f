"""``postprocess_coco.pt`` / ``.json``: PostProcess(num_select=50) and the official COCO results list
(abs 1e-4 px), plus the Poses the pipeline keeps (person class only)."""

from __future__ import annotations

import json

import _grouppose_golden as _golden
import numpy as np
import torch

from bupose.grouppose.pipeline import to_poses
from bupose.grouppose.postprocess import coco_entries, postprocess

FIX = _golden.fixture("postprocess_coco.pt")


def _run():
    return postprocess(FIX["input/pred_logits"], FIX["input/pred_keypoints"], FIX["input/orig_target_sizes_hw"], 50)


def test_selection_and_outputs() -> None:
    res = _run()
    for b, r in enumerate(res):
        assert torch.equal(r.queries, FIX["intermediate/query_index"][b])
        assert torch.equal(r.queries * 2 + r.labels, FIX["intermediate/topk_flat_indices"][b])
        torch.testing.assert_close(r.scores, FIX[f"output/{b}/scores"], rtol=0, atol=1e-6)
        assert torch.equal(r.labels, FIX[f"output/{b}/labels"].to(r.labels.dtype))
        torch.testing.assert_close(r.keypoints, FIX[f"output/{b}/keypoints"], rtol=0, atol=1e-4)
    assert any((r.labels == 0).any() for r in res), "the fixture selects class-0 entries too"


def test_coco_json() -> None:
    expected = json.loads((_golden.GP / "postprocess_coco.json").read_text())
    ids = [int(i) for i in FIX["meta/image_ids"]]
    got = coco_entries(_run(), ids)
    assert len(got) == len(expected) == 100
    for g, e in zip(got, expected, strict=True):
        assert set(g) == set(e) == {"image_id", "category_id", "keypoints", "score"}
        assert g["image_id"] == e["image_id"] and g["category_id"] == e["category_id"]
        assert abs(g["score"] - e["score"]) < 1e-6
        np.testing.assert_allclose(g["keypoints"], e["keypoints"], rtol=0, atol=1e-4)
    json.dumps(got)  # JSON-ready


def test_poses_keep_the_person_class_in_score_order() -> None:
    for b, r in enumerate(_run()):
        poses = to_poses(r, "coco17", 17)
        keep = FIX[f"output/{b}/labels"] == 1
        assert len(poses) == int(keep.sum())
        np.testing.assert_allclose(poses.scores, FIX[f"output/{b}/scores"][keep].numpy(), atol=1e-6)
        np.testing.assert_allclose(poses.keypoints.reshape(len(poses), -1), FIX[f"output/{b}/keypoints"][keep].numpy(), atol=1e-4)
        assert np.all(np.diff(poses.scores) <= 0)
        np.testing.assert_allclose(poses.keypoints[:, :, 2], 0.7310586, atol=1e-6)
