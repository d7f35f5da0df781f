"""DEKR losses against the official MultiLossFactory (shared/golden/dekr/loss_coco.pt)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from bupose.core.plugins import get_registry
from bupose.core.specs import FeatureShape
from bupose.dekr.model import DEKRHead, dekr_loss

sys.path.insert(0, str(Path(__file__).parent))
from _dekr_golden import fixture


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs() / b.double().abs().clamp_min(1e-30))


def test_loss_matches_official() -> None:
    fx = fixture("loss_coco.pt")
    args = (fx["pred_heatmap"], fx["pred_offset"], fx["gt_heatmap"], fx["heatmap_mask"], fx["gt_offset"], fx["offset_weight"])
    weighted = dekr_loss(*args)
    assert fx["cfg/OFFSETS_LOSS_FACTOR"] == 0.03
    assert _rel(weighted["heatmap_loss"], fx["heatmap_loss"]) <= 1e-6
    assert _rel(weighted["offset_loss"], fx["offset_loss"]) <= 1e-6
    raw = dekr_loss(*args, heatmap_factor=1.0, offset_factor=1.0)
    assert _rel(raw["heatmap_loss"], fx["heatmap_loss_unweighted"]) <= 1e-6
    assert _rel(raw["offset_loss"], fx["offset_loss_unweighted"]) <= 1e-6
    assert int((fx["offset_weight"] > 0).sum()) == fx["offset_num_pos"]


def test_head_loss_uses_official_factors() -> None:
    fx = fixture("loss_coco.pt")
    head = DEKRHead({"concat": FeatureShape(480, 4)}, get_registry().get("layouts", "coco17"))
    outputs = {"heatmap": fx["pred_heatmap"], "offset": fx["pred_offset"]}
    targets = {"heatmap": fx["gt_heatmap"], "heatmap_weight": fx["heatmap_mask"], "offset": fx["gt_offset"],
               "offset_weight": fx["offset_weight"]}
    losses = head.loss(outputs, targets)
    assert set(losses) == {"heatmap_loss", "offset_loss"}
    assert _rel(losses["offset_loss"], fx["offset_loss"]) <= 1e-6
    # no positive offset weight: the divisor is 1, the loss is 0 and finite
    empty = dict(targets, offset_weight=torch.zeros_like(fx["offset_weight"]))
    assert float(head.loss(outputs, empty)["offset_loss"]) == 0.0
