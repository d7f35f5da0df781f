"""The example inference pipeline: letterbox to a fixed square, run, find keypoint candidates, group.

Grouping is not hard-wired: the candidates go to the grouper the head declares (``single_person``,
core's built-in) or the one chosen with ``bupose run --grouper NAME`` / ``grouper=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from bupose.core.algorithms.image import normalize_images
from bupose.core.grouping import Candidates, Grouper
from bupose.core.inference import GroupingPipeline
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .options import ExampleOptions

__all__ = ["ExamplePipeline", "heatmap_candidates"]


def heatmap_candidates(
    heatmap: torch.Tensor, stride: float, max_candidates: int, threshold: float | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per joint of one (J, h, w) heatmap: up to ``max_candidates`` 3x3 local maxima, best first,
    each moved a quarter pixel towards its higher neighbour, in input pixels (x, y) with their
    heatmap values."""
    hm = heatmap.float()
    j, h, w = hm.shape
    peaks = hm == F.max_pool2d(hm[None], 3, stride=1, padding=1)[0]
    masked = torch.where(peaks, hm, torch.full_like(hm, -torch.inf)).reshape(j, -1)
    k = min(max_candidates, h * w)
    score, idx = masked.topk(k, dim=1)
    y, x = idx // w, idx % w
    ji = torch.arange(j)[:, None].expand(j, k)
    right = hm[ji, y, (x + 1).clamp(max=w - 1)]
    left = hm[ji, y, (x - 1).clamp(min=0)]
    down = hm[ji, (y + 1).clamp(max=h - 1), x]
    up = hm[ji, (y - 1).clamp(min=0), x]
    xf = x.float() + 0.25 * torch.sign(right - left)
    yf = y.float() + 0.25 * torch.sign(down - up)
    keep = torch.isfinite(score)
    if threshold is not None:
        keep &= score >= threshold
    xy = torch.stack([xf, yf], dim=2) * stride
    return [xy[i][keep[i]].numpy() for i in range(j)], [score[i][keep[i]].numpy() for i in range(j)]


class ExamplePipeline(GroupingPipeline):
    """Each image is scaled to fit the square input (aspect kept, zero padding), its heatmaps give
    keypoint candidates, and the grouper forms the people."""

    options_class = ExampleOptions

    def __init__(
        self, model: PoseModel, options: ExampleOptions | None = None, /, *,
        grouper: str | Grouper | None = None, **values: Any,
    ) -> None:  # fmt: skip
        super().__init__(model, options, grouper=grouper, **values)
        opts: ExampleOptions = self.options
        trained = model.config.get("input_size") if isinstance(model.config, dict) else None
        size = opts.input_size if opts.input_size is not None else trained
        if isinstance(size, (tuple, list)):
            size = max(size)
        self.input_size = int(size) if size is not None else 64
        self.stride = float(model.head.stride)

    def candidates(self, images: Sequence[np.ndarray]) -> list[Candidates]:
        """Keypoint candidates of each image, in image pixels."""
        s = self.input_size
        batch, scales = [], []
        for img in images:
            scale = s / max(img.shape[:2])
            h, w = max(1, round(img.shape[0] * scale)), max(1, round(img.shape[1] * scale))  # 1x5000 too
            canvas = np.zeros((s, s, 3), np.uint8)
            canvas[:h, :w] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            batch.append(canvas)
            scales.append(scale)
        x = normalize_images(batch, self.device)
        heatmaps = self.model(x)["heatmap"].cpu()
        opts: ExampleOptions = self.options
        out = []
        for hm, img, scale in zip(heatmaps, images, scales, strict=True):
            xy, scores = heatmap_candidates(hm, self.stride, opts.max_candidates, opts.candidate_threshold)
            out.append(
                Candidates(
                    self.model.layout.name, [a / scale for a in xy], scores, image_size=tuple(img.shape[:2])
                )
            )
        return out

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:
        return [self.group(c) for c in self.candidates(images)]
