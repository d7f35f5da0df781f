"""Training fixture: centre -> GT greedy matching, grouping losses, heatmap loss, overall."""

from __future__ import annotations

import torch
from _centergroup_golden import fixture

from bupose.centergroup.train import LOSS_FACTORS, group_losses, heatmap_loss, match_centres
from bupose.core.layouts import get_layout

FX = "train_losses_w32_coco.pt"


def _targets(fx: dict):
    joints = fx["input/batch/joints_/2"]
    boxes = fx["input/batch/boxes/2"]
    vis_obj = fx["input/batch/obj_vis"]
    annotated = fx["input/batch/has_kp_anns"].float() * vis_obj.float()
    wh = boxes[:, :, 1, :2] - boxes[:, :, 0, :2]
    areas = wh[..., 0] * wh[..., 1]
    return match_centres(
        fx["input/dt_centers"], fx["input/person_batch_ix"], fx["input/person_mask"],
        list(joints), list(areas), list(annotated),
    )


def test_greedy_matching_targets() -> None:
    fx = fixture(FX)
    t = _targets(fx)
    assert torch.equal(t.is_tp, fx["targets/is_tp"])
    assert torch.equal(t.ignore, fx["targets/ignore"])
    assert torch.equal(t.joints, fx["targets/joints_"])
    assert torch.equal(t.vis_target, fx["targets/vis_target"])
    assert torch.equal(t.loc_target, fx["targets/loc_target"])
    b = fx["targets/boxes"]
    wh = b[:, 1, :2] - b[:, 0, :2]
    torch.testing.assert_close(t.box_area, wh[:, 0] * wh[:, 1])


def test_group_and_heatmap_losses() -> None:
    fx = fixture(FX)
    t = _targets(fx)
    losses = group_losses(
        fx["input/preds/loc_pred"], fx["input/preds/viz_pred"][..., 0], fx["input/preds/person_tp_pred"][..., 0],
        t, get_layout("coco17").sigmas,
    )
    for name in ("person_loss", "vis_loss", "loc_loss"):
        ref = fx[f"loss/{name}"]
        assert abs(float(losses[name]) - float(ref)) <= 1e-5 * abs(float(ref)), name
    hm = heatmap_loss(
        [fx["input/heatmap_outputs/0"], fx["input/heatmap_outputs/1"]],
        [fx["input/heatmap_targets/0"], fx["input/heatmap_targets/1"]],
        [fx["input/heatmap_masks/0"], fx["input/heatmap_masks/1"]],
    ).mean()
    assert abs(float(hm) - float(fx["loss/heatmap_loss"])) <= 1e-5 * float(fx["loss/heatmap_loss"])
    overall = (
        LOSS_FACTORS["loc"] * losses["loc_loss"] + LOSS_FACTORS["vis"] * losses["vis_loss"]
        + LOSS_FACTORS["person"] * losses["person_loss"] + LOSS_FACTORS["heatmap"] * hm
    )
    assert abs(float(overall) - float(fx["loss/overall"])) <= 1e-5 * float(fx["loss/overall"])


def test_losses_have_gradients_and_handle_no_match() -> None:
    fx = fixture(FX)
    t = _targets(fx)
    loc = fx["input/preds/loc_pred"].clone().requires_grad_()
    vis = fx["input/preds/viz_pred"][..., 0].clone().requires_grad_()
    person = fx["input/preds/person_tp_pred"][..., 0].clone().requires_grad_()
    out = group_losses(loc, vis, person, t, get_layout("coco17").sigmas)
    sum(out.values()).backward()
    assert loc.grad.abs().sum() > 0 and vis.grad.abs().sum() > 0 and person.grad.abs().sum() > 0
    none = match_centres(torch.tensor([[5.0, 5.0]]), torch.tensor([0]), torch.tensor([1.0]),
                         [torch.zeros((0, 18, 3))], [torch.zeros(0)], [torch.zeros(0)])
    assert float(none.is_tp.sum()) == 0
    out = group_losses(loc[:, :1], vis[:, :1], person[:, :1], none, get_layout("coco17").sigmas)
    assert float(out["loc_loss"].detach()) == 0 and float(out["vis_loss"].detach()) == 0
    assert float(out["person_loss"].detach()) > 0
