"""The R-50 COCO forward of the official model (recipe weights) against ``forward_r50_coco.pt``.

Outputs are compared row by row aligned by the two-stage selection (``encoder/topk_indices``): here
the selection is identical, so rows align one to one (the 58 padding queries of image 1 are
bit-identical anyway). Tolerances: the fixture README's (keypoints abs 1e-4, logits 1e-3,
reference points rel 1e-4).
"""

from __future__ import annotations

import _grouppose_golden as _golden
import pytest
import torch

from bupose.core.batch import Batch
from bupose.core.model import build_model
from bupose.grouppose.convert import from_official


@pytest.fixture(scope="module")
def run(r50_official_sd):
    fx = _golden.fixture("forward_r50_coco_outputs.pt")
    rec = _golden.recipe()
    x = torch.zeros(2, 3, 128, 160)
    for i, (h, w) in enumerate([(128, 160), (120, 144)]):
        x[i, :, :h, :w] = rec.golden_input((3, h, w), seed=18 + i)
    assert float(x.double().sum()) == pytest.approx(float(fx["input/tensors_sum"]), abs=1e-6)
    model = build_model("grouppose", "resnet50").eval()
    model.load_state_dict(from_official(r50_official_sd), strict=True)
    with torch.no_grad():
        feats = model.backbone(x)
        dec = model.head.run(feats, Batch(images=x, pad_mask=fx["input/mask"]))
    return model, dec, fx


def test_selection_matches(run) -> None:
    _, dec, fx = run
    assert torch.equal(dec.topk_indices, fx["intermediate/encoder/topk_indices"])
    torch.testing.assert_close(dec.topk_scores, fx["intermediate/encoder/topk_scores"], rtol=1e-4, atol=1e-5)
    padding = (dec.topk_indices[1] >= 0) & fx["input/mask"][1].new_ones(100)
    assert int(fx["intermediate/encoder/topk_selected_padding"][1]) == 58 and padding.all()


def test_reference_points_per_layer(run) -> None:
    _, dec, fx = run
    assert len(dec.references) == 7
    for lid, ref in enumerate(dec.references):
        torch.testing.assert_close(ref.flatten(2), fx[f"intermediate/decoder/refpoints/{lid}"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dec.hidden[-1][:, :, 0], fx["intermediate/decoder/hs_last_instance_token"], rtol=1e-4, atol=1e-4)


def test_final_aux_and_interm_outputs(run) -> None:
    model, dec, fx = run
    layers = model.head.layer_outputs(dec)
    logits, kp = layers[-1]
    full = model.head._full_keypoints(kp)
    torch.testing.assert_close(logits, fx["output/pred_logits"], rtol=0, atol=1e-3)
    torch.testing.assert_close(full, fx["output/pred_keypoints"], rtol=0, atol=1e-4)
    assert torch.allclose(full[..., 34:], torch.tensor(0.7310586))
    for lid in range(5):
        lg, k = layers[lid]
        torch.testing.assert_close(lg, fx[f"output/aux_outputs/{lid}/pred_logits"], rtol=0, atol=1e-3)
        torch.testing.assert_close(model.head._full_keypoints(k), fx[f"output/aux_outputs/{lid}/pred_keypoints"], rtol=0, atol=1e-4)
    torch.testing.assert_close(dec.interm_logits, fx["output/interm_outputs/pred_logits"], rtol=0, atol=1e-3)
    torch.testing.assert_close(dec.interm_keypoints.flatten(2), fx["output/interm_outputs/pred_keypoints"], rtol=0, atol=1e-4)


def test_inplace_position_quirk_changes_only_aux_keypoints(run) -> None:
    model, dec, fx = run
    model.head.inplace_pos_quirk = False
    try:
        clean = model.head.layer_outputs(dec)
    finally:
        model.head.inplace_pos_quirk = True
    # without the quirk the aux keypoints are the decoder's own refined references...
    for lid in range(5):
        torch.testing.assert_close(clean[lid][1].flatten(2), dec.references[lid + 1][:, :, 1:].flatten(2), rtol=0, atol=1e-5)
        diff = (model.head._full_keypoints(clean[lid][1]) - fx[f"output/aux_outputs/{lid}/pred_keypoints"]).abs().max()
        assert diff > 1e-2, f"aux layer {lid}: the quirk should change the keypoints (diff {diff})"
        torch.testing.assert_close(clean[lid][0], fx[f"output/aux_outputs/{lid}/pred_logits"], rtol=0, atol=1e-3)
    # ...and the final layer is the same either way
    torch.testing.assert_close(model.head._full_keypoints(clean[-1][1]), fx["output/pred_keypoints"], rtol=0, atol=1e-4)


def test_head_forward_fields(run) -> None:
    model = run[0]
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 96, 96))
        with pytest.raises(ValueError, match="fewer than num_queries=100"):
            model(torch.zeros(1, 3, 64, 64))
    assert out["pred_logits"].shape == (1, 100, 2) and out["pred_keypoints"].shape == (1, 100, 51)
    assert out["aux_pred_logits"].shape == (1, 5, 100, 2) and out["aux_pred_keypoints"].shape == (1, 5, 100, 51)
    assert out["interm_pred_logits"].shape == (1, 100, 2) and out["interm_pred_keypoints"].shape == (1, 100, 34)
