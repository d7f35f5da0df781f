"""``train_matcher_loss_coco.pt``: the Hungarian matcher's cost blocks (rel 1e-5) and assignments
(identical), and every SetCriterion term with suffixes '', _0.._4, _interm (rel 1e-5), plus the
weighted total."""

from __future__ import annotations

import json

import _grouppose_golden as _golden
import pytest
import torch

from bupose.core.layouts import get_layout
from bupose.grouppose.criterion import SetCriterion

FIX = _golden.fixture("train_matcher_loss_coco.pt")


def _outputs() -> dict[str, torch.Tensor]:
    o = {"pred_logits": FIX["input/outputs/pred_logits"], "pred_keypoints": FIX["input/outputs/pred_keypoints"],
         "interm_pred_logits": FIX["input/outputs/interm_outputs/pred_logits"],
         "interm_pred_keypoints": FIX["input/outputs/interm_outputs/pred_keypoints"]}  # fmt: skip
    o["aux_pred_logits"] = torch.stack([FIX[f"input/outputs/aux_outputs/{i}/pred_logits"] for i in range(5)], 1)
    o["aux_pred_keypoints"] = torch.stack([FIX[f"input/outputs/aux_outputs/{i}/pred_keypoints"] for i in range(5)], 1)
    return o


def _targets() -> list[dict[str, torch.Tensor]]:
    return [{k: FIX[f"input/targets/{b}/{k}"] for k in ("labels", "keypoints", "area")} for b in range(2)]


@pytest.fixture(scope="module")
def criterion() -> SetCriterion:
    cfg = json.loads(FIX["meta/config"])
    return SetCriterion(
        get_layout("coco17"), cls_loss_coef=cfg["cls_loss_coef"], keypoints_loss_coef=cfg["keypoints_loss_coef"],
        oks_loss_coef=cfg["oks_loss_coef"], interm_loss_coef=cfg["interm_loss_coef"], focal_alpha=cfg["focal_alpha"],
        set_cost_class=cfg["set_cost_class"], set_cost_keypoints=cfg["set_cost_keypoints"], set_cost_oks=cfg["set_cost_oks"],
    )  # fmt: skip


def test_cost_blocks_in_call_order(criterion: SetCriterion) -> None:
    out, tgts = _outputs(), _targets()
    calls = [(out["pred_logits"], out["pred_keypoints"])]
    calls += [(out["aux_pred_logits"][:, i], out["aux_pred_keypoints"][:, i]) for i in range(5)]
    calls += [(out["interm_pred_logits"], out["interm_pred_keypoints"])]
    blocks = []
    for logits, kp in calls:
        blocks += criterion.matcher.cost_blocks(logits, kp, tgts)[0]
    for i, blk in enumerate(blocks):
        torch.testing.assert_close(blk, FIX[f"matcher/cost_blocks/{i}"], rtol=1e-5, atol=1e-5)


def test_final_assignment_and_cost_means(criterion: SetCriterion) -> None:
    out = _outputs()
    indices, means = criterion.matcher(out["pred_logits"], out["pred_keypoints"], _targets())
    for b, (src, tgt) in enumerate(indices):
        assert torch.equal(src, FIX[f"matcher/final/{b}/src"].long())
        assert torch.equal(tgt, FIX[f"matcher/final/{b}/tgt"].long())
    torch.testing.assert_close(means["class"], FIX["matcher/final/cost_mean/class"], rtol=1e-5, atol=0)
    torch.testing.assert_close(means["keypoints"], FIX["matcher/final/cost_mean/keypoints"], rtol=1e-5, atol=0)


def test_every_loss_term(criterion: SetCriterion) -> None:
    losses = criterion(_outputs(), _targets())
    expected = {k[len("loss/") :]: v for k, v in FIX.items() if k.startswith("loss/")}
    assert set(losses) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value.to(losses[name].dtype), rtol=1e-5, atol=1e-6, msg=name)


def test_weights_and_total(criterion: SetCriterion) -> None:
    assert criterion.weight_dict(5) == json.loads(FIX["meta/weight_dict"])
    weighted = criterion.weighted(_outputs(), _targets())
    total = sum(weighted.values())
    torch.testing.assert_close(total, FIX["loss_total_weighted"], rtol=1e-5, atol=0)


def test_empty_targets_give_finite_losses(criterion: SetCriterion) -> None:
    empty = [{"labels": torch.zeros(0, dtype=torch.long), "keypoints": torch.zeros(0, 51), "area": torch.zeros(0)}] * 2
    logits = _outputs()["pred_logits"].clone().requires_grad_(True)
    losses = criterion({"pred_logits": logits, "pred_keypoints": _outputs()["pred_keypoints"]}, empty)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_ce"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
