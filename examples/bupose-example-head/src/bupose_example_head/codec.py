"""The example codec: one object encodes targets and decodes outputs, so the two cannot drift."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bupose.core.algorithms.maps import quarter_offset
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec


class ExampleHeatmapCodec:
    """Gaussian heatmaps (peak 1, ``sigma`` in heatmap pixels) <-> per-joint argmax."""

    def __init__(self, layout: LayoutSpec, stride: int = 4, sigma: float = 1.5) -> None:
        self.layout = layout
        self.stride = stride
        self.sigma = sigma

    def encode(self, keypoints: np.ndarray, heatmap_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """``keypoints`` (N, J, 3) in input pixels -> heatmap (J, h, w) and weight targets."""
        h, w = heatmap_size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        heat = np.zeros((self.layout.num_keypoints, h, w), np.float32)
        for person in np.asarray(keypoints, np.float32).reshape(-1, self.layout.num_keypoints, 3):
            for j, (x, y, v) in enumerate(person):
                if v <= 0:
                    continue
                g = np.exp(-((xs - x / self.stride) ** 2 + (ys - y / self.stride) ** 2) / (2 * self.sigma**2))
                heat[j] = np.maximum(heat[j], g)
        return {"heatmap": torch.from_numpy(heat), "weight": torch.ones_like(torch.from_numpy(heat))}

    def decode(self, heatmap: torch.Tensor) -> list[Poses]:
        """(B, J, h, w) heatmaps -> one person per image, keypoints in input pixels."""
        b, j, _h, w = heatmap.shape
        flat = heatmap.float().reshape(b, j, -1)
        score, idx = flat.max(dim=2)
        y = (idx // w).float()
        x = (idx % w).float()
        # quarter-pixel refinement towards the higher neighbour
        x, y = quarter_offset(heatmap.float(), x, y, step=0.25, tie="stay")
        out = []
        for i in range(b):
            kp = torch.stack([x[i] * self.stride, y[i] * self.stride, score[i]], dim=1).numpy()
            out.append(Poses(kp[None], np.array([float(score[i].mean())]), self.layout.name))
        return out

    def __call__(self, outputs: dict[str, Any]) -> list[Poses]:
        return self.decode(outputs["heatmap"])
