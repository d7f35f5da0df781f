"""Recipe weights vs the official forward fixtures: detector, grouping (one branch)."""

from __future__ import annotations

import torch
from _centergroup_golden import fixture, golden_model, max_rel_err

from bupose.centergroup.nodes import sine_position


def test_detector_and_embeddings() -> None:
    fx = fixture("forward_detector_w32_coco.pt")
    model = golden_model()
    with torch.no_grad():
        x = model.backbone(fx["input/img"])["b0"]
        y0, y1, feat = model.head.keypoint_head(x)
        kp = model.head.kp_embed_cnn(x)
        pe = model.head.person_embed_cnn(x)
    assert max_rel_err(x, fx["output/bu_model/feature_maps/0"]) < 1e-4
    assert max_rel_err(feat, fx["output/bu_model/feature_maps/1"]) < 1e-4
    assert max_rel_err(y0, fx["output/bu_model/bottom_up_outputs/0"]) < 1e-4
    assert max_rel_err(y1, fx["output/bu_model/bottom_up_outputs/1"]) < 1e-4
    assert max_rel_err(kp, fx["output/kp_embed_cnn"]) < 1e-4
    assert max_rel_err(pe, fx["output/person_embed_cnn"]) < 1e-4
    # the official split: keypoint channels = all but the centre (index 17 of 18 heatmaps + tags)
    keep = [c for c in range(36) if c not in (17, 35)]
    assert max_rel_err(y0[:, keep], fx["output/split/kp_pred/0"]) < 1e-4
    assert max_rel_err(y0[:, [17, 35]], fx["output/split/p_pred/0"]) < 1e-4


def _grouping_run():
    fx = fixture("forward_grouping_w32_coco.pt")
    model = golden_model()
    head = model.head
    with torch.no_grad():
        out = model(fx["input/img"])
        kp_hm, c_hm = head.heatmaps(out, (128, 128))
        nodes, kps, cs = head.nodes(kp_hm, c_hm, fx["input/pad_mask/2"], fx["input/pad_mask/0"], out["kp_embed"], out["person_embed"])
        preds = head.group(nodes)
    return fx, kp_hm, c_hm, nodes, kps, cs, preds


def test_nodes_match_official() -> None:
    fx, _, _, nodes, kps, cs, _ = _grouping_run()
    assert max_rel_err(kps.heatmap, fx["nodes/keypoints/heatmap"]) < 1e-4
    assert max_rel_err(cs.heatmap, fx["nodes/centers/heatmap"]) < 1e-4
    assert max_rel_err(kps.score, fx["nodes/keypoints/kp_score"]) < 1e-4
    assert torch.equal(kps.index, fx["nodes/keypoints/kp_ind"])
    assert torch.equal(kps.keep, fx["nodes/keypoints/keep_mask"])
    assert torch.equal(cs.keep, fx["nodes/centers/keep_mask"])
    assert torch.equal(torch.stack([cs.x, cs.y], -1), fx["nodes/centers/coords"])
    assert torch.equal(torch.stack([kps.x, kps.y], -1), fx["nodes/keypoints/coords"])
    assert max_rel_err(nodes.kp_feat.reshape(1, 17, 30, 128), fx["nodes/keypoints/kp_embed"]) < 1e-4
    assert max_rel_err(nodes.kp_pos.reshape(1, 17, 30, 128), fx["nodes/keypoints/kp_pos_embed"]) < 1e-4
    assert max_rel_err(nodes.c_feat.reshape(1, 1, 30, 128), fx["nodes/centers/person_embed"]) < 1e-4
    assert max_rel_err(nodes.c_pos.reshape(1, 1, 30, 128), fx["nodes/centers/person_pos"]) < 1e-4


def test_grouping_predictions_match_official() -> None:
    fx, *_, nodes, _, _, preds = _grouping_run()
    keep = nodes.c_keep[0]
    assert int(keep.sum()) == fx["preds/loc_pred"].shape[1]
    logits = preds.logits
    ref = fx["preds/loc_attn_weights_raw_last_head"]
    fin = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(logits), fin)
    assert max_rel_err(logits[fin], ref[fin]) < 1e-3
    assert max_rel_err(preds.vis[:, 0, keep], fx["preds/viz_pred"][..., 0]) < 1e-3
    assert max_rel_err(preds.person[:, 0, keep], fx["preds/person_tp_pred"][..., 0]) < 1e-3
    assert torch.equal(preds.hard_loc[:, 0, keep], fx["preds/hard_loc_pred"])
    assert max_rel_err(preds.loc[:, 0, keep], fx["preds/loc_pred"]) < 1e-3


def test_sine_position_counts_valid_pixels() -> None:
    valid = torch.ones(1, 4, 6)
    valid[:, :, 4:] = 0
    pos = sine_position(valid)
    assert pos.shape == (1, 128, 4, 6)
    # x channel 64 is sin(cumulative x count / 1): 1, 2, 3, 4, then stays 4 in the padding
    torch.testing.assert_close(pos[0, 64, 0], torch.sin(torch.tensor([1.0, 2, 3, 4, 4, 4])))
    torch.testing.assert_close(pos[0, 0, :, 0], torch.sin(torch.tensor([1.0, 2, 3, 4])))
