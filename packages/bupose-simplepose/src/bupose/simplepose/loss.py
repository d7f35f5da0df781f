"""SimplePose's multi-task focal-L2 loss (official ``models/loss_model.py`` ``MultiTaskLoss``).

Per scale j: targets average-pooled to the prediction size, the missing-annotation mask bilinearly resized
with values < 0.5 zeroed, per-channel weights (person mask x0.1, keypoints x3); focal factor
|1 - st| with st = s where gt >= 0.01, else 1 - s (gamma 1, as the code does; the paper says 2).
Per scale the stacks are averaged with weights [1, 1, 1, 1]; the total is the scale-weighted sum
([0.1, 0.2, 0.4, 1.6, 6.4]) over the sum of scale weights, divided by ``batch_size`` (the official
divisor is ``TrainingOpt.batch_size`` = 4, not the real batch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .config import MASK_CHANNEL, NUM_KEYPOINTS, NUM_LIMBS

__all__ = ["SCALE_WEIGHTS", "focal_l2_loss", "focal_l2_per_scale"]

SCALE_WEIGHTS = (0.1, 0.2, 0.4, 1.6, 6.4)
STACK_WEIGHT = 1.0
MASK_WEIGHT = 0.1
KEYPOINT_WEIGHT = 3.0


def _channel_weights(c: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    w = torch.ones(c, device=device, dtype=dtype)
    if c > MASK_CHANNEL:
        w[MASK_CHANNEL] = MASK_WEIGHT
    w[NUM_LIMBS : NUM_LIMBS + NUM_KEYPOINTS] = KEYPOINT_WEIGHT
    return w.view(1, c, 1, 1)


def focal_l2_per_scale(
    preds: Sequence[Sequence[torch.Tensor]], heatmaps: torch.Tensor, mask: torch.Tensor
) -> list[torch.Tensor]:
    """Unweighted loss of each scale j (stack-averaged, summed over batch and pixels); ``preds[s][j]``."""
    out = []
    for j in range(len(preds[0])):
        size = preds[0][j].shape[-2:]
        gt = F.adaptive_avg_pool2d(heatmaps, size)
        m = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
        m = torch.where(m < 0.5, torch.zeros_like(m), m)
        m = m.expand_as(gt) * _channel_weights(gt.shape[1], gt.device, gt.dtype)
        per_stack = []
        for stack in preds:
            s = stack[j]
            st = torch.where(gt >= 0.01, s, 1 - s)
            factor = (1 - st).abs()
            per_stack.append(((s - gt) ** 2 * factor * m).sum())
        out.append(sum(STACK_WEIGHT * x for x in per_stack) / (STACK_WEIGHT * len(per_stack)))
    return out


def focal_l2_loss(
    preds: Sequence[Sequence[torch.Tensor]], heatmaps: torch.Tensor, mask: torch.Tensor, batch_size: int = 4
) -> torch.Tensor:
    """The official total: scale-weighted per-scale losses / sum of the weights used / ``batch_size``."""
    per_scale = focal_l2_per_scale(preds, heatmaps, mask)
    weights = SCALE_WEIGHTS[: len(per_scale)]
    total = sum(w * x for w, x in zip(weights, per_scale, strict=True))
    return total / sum(weights) / batch_size
