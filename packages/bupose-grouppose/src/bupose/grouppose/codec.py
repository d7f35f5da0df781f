"""GroupPose's codec: augmented samples -> normalised set targets; outputs -> people.

``encode``: people with at least one visible joint (crowd annotations dropped) become instances
``keypoints`` (N, K, 3) = x / w, y / h, v in {0, 1} (unlabelled joints at 0, 0) and ``areas`` (N,)
= area / (w·h), with (h, w) the augmented image. The dense targets are the ideal set output for
those people (``pred_logits`` (Q, 2), ``pred_keypoints`` (Q, 3K): one confident person query per
person, the others confidently empty), the shapes of the head's outputs. The loss uses the instances
(Hungarian matching), not the dense fields.

``decode``: ``PostProcess(num_select)`` per image, person class kept, coordinates scaled by each
image's input size and mapped to image pixels through ``meta["matrix"]`` when present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from bupose.core.codec import BaseCodec, Encoded, MissingSampleKeyError, image_points
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec

from .model import VISIBILITY
from .postprocess import postprocess

__all__ = ["GroupPoseCodec"]

_CONFIDENT = 10.0


class GroupPoseCodec(BaseCodec):
    """Set targets for GroupPose (see the module docstring)."""

    sample_keys: ClassVar[tuple[str, ...]] = ("image", "keypoints", "areas")
    output_fields: ClassVar[tuple[str, ...]] = ("pred_logits", "pred_keypoints")

    def __init__(
        self,
        layout: str | LayoutSpec = "coco17",
        input_size: int | tuple[int, int] = 800,
        *,
        num_queries: int = 100,
        num_select: int = 50,
    ) -> None:
        super().__init__(layout, input_size)
        self.num_queries = int(num_queries)
        self.num_select = int(num_select)

    def output_sizes(self, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        """No dense maps: a set predictor has no output resolution."""
        return {}

    def encode(self, sample: Mapping[str, Any]) -> Encoded:
        missing = [k for k in self.sample_keys if k not in sample]
        if missing:
            raise MissingSampleKeyError(
                f"GroupPoseCodec: the sample lacks {', '.join(map(repr, missing))} (it has {', '.join(sorted(map(str, sample)))})"
            )
        h, w = np.asarray(sample["image"]).shape[:2]
        k = self.layout.num_keypoints
        kps = np.asarray(sample["keypoints"], dtype=np.float64).reshape(-1, k, 3)
        areas = np.asarray(sample["areas"], dtype=np.float64).reshape(-1)
        if areas.shape[0] != kps.shape[0]:
            raise ValueError(f"GroupPoseCodec: {kps.shape[0]} people but {areas.shape[0]} areas")
        vis = (kps[:, :, 2] > 0).astype(np.float64)
        keep = vis.sum(1) > 0
        crowd = sample.get("iscrowd")
        if crowd is not None:
            keep &= np.asarray(crowd).reshape(-1) == 0
        kps, vis, areas = kps[keep], vis[keep], areas[keep]
        norm = np.zeros_like(kps)
        norm[:, :, 0] = kps[:, :, 0] / w * vis
        norm[:, :, 1] = kps[:, :, 1] / h * vis
        norm[:, :, 2] = vis
        areas = areas / float(w * h)
        q = self.num_queries
        logits = torch.full((q, 2), -_CONFIDENT)
        ideal = torch.zeros((q, 3 * k))
        ideal[:, 2 * k :] = VISIBILITY
        n = min(len(norm), q)
        logits[:n, 1] = _CONFIDENT
        ideal[:n, : 2 * k] = torch.from_numpy(norm[:n, :, :2].reshape(n, 2 * k)).float()
        return Encoded(
            dense={"pred_logits": logits, "pred_keypoints": ideal},
            instances={"keypoints": torch.from_numpy(norm).float(), "areas": torch.from_numpy(areas).float()},
        )

    def decode(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]]) -> list[Poses]:
        logits, keypoints = outputs["pred_logits"], outputs["pred_keypoints"]
        sizes = [tuple(m.get("input_hw", self.input_hw)) for m in metas]
        k = self.layout.num_keypoints
        out = []
        for res, meta in zip(postprocess(logits, keypoints, sizes, self.num_select), metas, strict=True):
            keep = res.labels == 1
            kp = res.keypoints[keep].reshape(-1, k, 3).detach().cpu().numpy().astype(np.float64)
            out.append(Poses(image_points(kp, meta), res.scores[keep].detach().cpu().numpy(), self.layout.name))
        return out
