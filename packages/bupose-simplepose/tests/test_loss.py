"""Focal-L2 multi-task loss against the official MultiTaskLoss fixture (train_focal_l2_loss.pt)."""

from __future__ import annotations

import torch
from _sp_golden import load

from bupose.simplepose.loss import focal_l2_loss, focal_l2_per_scale


def _inputs():
    d = load("train_focal_l2_loss.pt")
    preds = [[d[f"input/pred/stack{s}/scale{j}"] for j in range(5)] for s in range(4)]
    return d, preds


def test_per_scale_and_total_match() -> None:
    d, preds = _inputs()
    per_scale = focal_l2_per_scale(preds, d["input/heatmaps"], d["input/mask_misses"])
    for j, got in enumerate(per_scale):
        torch.testing.assert_close(got, d[f"output/loss_per_scale_unweighted/{j}"], rtol=1e-5, atol=0)
    total = focal_l2_loss(preds, d["input/heatmaps"], d["input/mask_misses"])
    torch.testing.assert_close(total, d["output/loss"], rtol=1e-5, atol=0)


def test_loss_has_gradients_and_prefers_the_target() -> None:
    d, preds = _inputs()
    gt = d["input/heatmaps"]
    mask = d["input/mask_misses"]
    perfect = [[torch.nn.functional.adaptive_avg_pool2d(gt, p.shape[-2:]) for p in stack] for stack in preds]
    assert float(focal_l2_loss(perfect, gt, mask)) < 1e-6
    x = preds[0][0].clone().requires_grad_(True)
    focal_l2_loss([[x, *preds[0][1:]]], gt, mask).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
