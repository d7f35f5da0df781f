"""The example codec: one object encodes targets and decodes outputs, so the two cannot drift.

It implements core's :class:`bupose.core.codec.Codec` protocol (through :class:`BaseCodec`): the
training engine builds it as ``ExampleHeatmapCodec(layout=..., input_size=..., **codec_kwargs)``,
sizes the augmentation with :meth:`output_sizes` and calls :meth:`encode` on every augmented
sample; the pipeline calls :meth:`decode` on the batched network outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bupose.core.algorithms.maps import quarter_offset
from bupose.core.codec import BaseCodec, Encoded, image_points, input_hw_of
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec


class ExampleHeatmapCodec(BaseCodec):
    """Gaussian heatmaps (peak 1, ``sigma`` in heatmap pixels) <-> per-joint argmax (one person).

    ``stride`` is input pixels per heatmap pixel (the head's finest backbone stride); an image
    whose mean joint peak is below ``score_threshold`` decodes to nobody.
    """

    sample_keys = ("keypoints",)
    output_fields = ("heatmap",)

    def __init__(
        self,
        layout: str | LayoutSpec = "coco17",
        input_size: int | tuple[int, int] = 64,
        *,
        stride: int = 4,
        sigma: float = 1.5,
        score_threshold: float = 0.05,
    ) -> None:
        super().__init__(layout, input_size)
        if stride <= 0 or sigma <= 0:
            raise ValueError(f"ExampleHeatmapCodec: stride and sigma must be positive, got {stride}, {sigma}")
        self.stride = int(stride)
        self.sigma = float(sigma)
        self.score_threshold = float(score_threshold)

    def output_sizes(self, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        """``{"1/<stride>": (h, w)}``: the heatmap size for ``input_size`` (default: the codec's)."""
        h, w = input_hw_of(self.input_hw if input_size is None else input_size)
        return {f"1/{self.stride}": (-(-h // self.stride), -(-w // self.stride))}

    def encode(self, sample: Mapping[str, Any]) -> Encoded:
        """``sample["keypoints"]`` (N, J, 3) in input pixels -> dense ``heatmap`` (J, h, w) and
        ``weight`` targets, instances ``keypoints`` (N, J, 3)."""
        self.check_sample(sample)
        j = self.num_joints
        kps = np.asarray(sample["keypoints"], np.float32)
        if kps.size and (kps.ndim != 3 or kps.shape[1:] != (j, 3)):
            raise ValueError(f"ExampleHeatmapCodec: sample 'keypoints' must be (N, {j}, 3), got {kps.shape}")
        kps = kps.reshape(-1, j, 3)
        (h, w), = self.output_sizes().values()
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        heat = np.zeros((j, h, w), np.float32)
        for person in kps:
            for k, (x, y, v) in enumerate(person):
                if v <= 0:
                    continue
                g = np.exp(-((xs - x / self.stride) ** 2 + (ys - y / self.stride) ** 2) / (2 * self.sigma**2))
                heat[k] = np.maximum(heat[k], g)
        return Encoded(
            dense={"heatmap": torch.from_numpy(heat), "weight": torch.ones((j, h, w))},
            instances={"keypoints": torch.from_numpy(kps.copy())},
        )

    def decode(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]]) -> list[Poses]:
        """Batched ``heatmap`` (B, J, h, w) -> at most one person per image, in image pixels through
        ``meta["matrix"]`` when given (else input pixels)."""
        heatmap = outputs["heatmap"].detach().float().cpu()
        b, j, _h, w = heatmap.shape
        if len(metas) != b:
            raise ValueError(f"ExampleHeatmapCodec.decode: {len(metas)} metas for a batch of {b}")
        flat = heatmap.reshape(b, j, -1)
        score, idx = flat.max(dim=2)
        y = (idx // w).float()
        x = (idx % w).float()
        # quarter-pixel refinement towards the higher neighbour
        x, y = quarter_offset(heatmap.float(), x, y, step=0.25, tie="stay")
        out = []
        for i in range(b):
            person_score = float(score[i].mean())
            if person_score < self.score_threshold:
                out.append(Poses.empty(j, self.layout.name))
                continue
            kp = torch.stack([x[i] * self.stride, y[i] * self.stride, score[i]], dim=1).numpy()
            out.append(Poses(image_points(kp[None], metas[i]), np.array([person_score]), self.layout.name))
        return out

    def __call__(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]] | None = None) -> list[Poses]:
        """:meth:`decode`, metas defaulting to none (input pixels): the registered decoder's call."""
        return self.decode(outputs, metas if metas is not None else [{}] * int(outputs["heatmap"].shape[0]))
