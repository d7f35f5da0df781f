"""GroupPose's ``PostProcess(num_select=50)`` and the COCO results it writes.

Rule (``models/grouppose/postprocesses.py``): prob = sigmoid(logits) over all Q x 2 (query, class)
pairs; the top ``num_select`` of the flattened scores (both classes compete); query = index // 2,
label = index % 2; keypoints gathered and scaled by the **original** image (w, h); output
``[x1, y1, v1, ...]`` with the model's v (sigmoid(1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PostProcessed", "coco_entries", "postprocess"]


@dataclass
class PostProcessed:
    """One image's selections: ``scores`` (S,), ``labels`` (S,), ``keypoints`` (S, 3K) as
    [x, y, v] per joint in original-image pixels, and the selected ``queries`` (S,)."""

    scores: torch.Tensor
    labels: torch.Tensor
    keypoints: torch.Tensor
    queries: torch.Tensor


def postprocess(
    logits: torch.Tensor, keypoints: torch.Tensor, orig_hw: torch.Tensor | Sequence[Sequence[int]], num_select: int = 50
) -> list[PostProcessed]:
    """(B, Q, C) logits and (B, Q, 3K) keypoints (normalised, official layout) -> per image the
    top-``num_select`` selections scaled by the original (h, w) of each image."""
    b, q, c = logits.shape
    k = keypoints.shape[-1] // 3
    orig = torch.as_tensor(orig_hw, dtype=torch.float32, device=logits.device).reshape(b, 2)
    prob = logits.float().sigmoid().view(b, -1)
    n = min(int(num_select), q * c)
    scores, idx = torch.topk(prob, n, dim=1)
    queries = torch.div(idx, c, rounding_mode="floor")
    labels = idx % c
    kp = torch.gather(keypoints.float(), 1, queries.unsqueeze(-1).expand(-1, -1, keypoints.shape[-1]))
    z, v = kp[..., : 2 * k], kp[..., 2 * k :]
    scale = torch.stack([orig[:, 1], orig[:, 0]], -1).repeat(1, k)  # (w, h) per joint
    z = z * scale[:, None, :]
    out = torch.empty((b, n, 3 * k), dtype=torch.float32, device=logits.device)
    out[..., 0::3] = z[..., 0::2]
    out[..., 1::3] = z[..., 1::2]
    out[..., 2::3] = v
    return [PostProcessed(scores[i], labels[i], out[i], queries[i]) for i in range(b)]


def coco_entries(results: Sequence[PostProcessed], image_ids: Sequence[Any]) -> list[dict[str, Any]]:
    """The official COCO results list (``CocoEvaluator.prepare_for_coco_keypoint``): one entry per
    selection, ``category_id`` = label (class-0 entries are kept; COCOeval ignores them), no bbox."""
    out: list[dict[str, Any]] = []
    for res, image_id in zip(results, image_ids, strict=True):
        for s, lab, kp in zip(res.scores.tolist(), res.labels.tolist(), res.keypoints.tolist(), strict=True):
            out.append({"image_id": image_id, "category_id": int(lab), "keypoints": kp, "score": s})
    return out
