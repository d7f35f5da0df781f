"""The registered grouper ``simplepose_limbs``: CMU-18 keypoint candidates + 30 limb heatmaps -> COCO people.

Built as ``SimplePoseLimbGrouper(layout, **options)`` (options: the limb thresholds of
:class:`~bupose.simplepose.grouping.LimbGroupingParams`) and called on one image's
:class:`~bupose.core.grouping.Candidates`: ``xy`` / ``scores`` of the 18 CMU joints in image pixels,
``maps["limb_heatmaps"]`` (30, H, W) at image resolution (``map_stride`` 1) and ``image_size`` (h, w).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bupose.core.poses import Poses

from .config import NUM_KEYPOINTS, NUM_LIMBS
from .grouping import LimbGroupingParams, group_candidates

__all__ = ["SimplePoseLimbGrouper"]


class SimplePoseLimbGrouper:
    """SimplePose's limb assembly (official ``find_connections`` + ``find_people`` + ``process``, fast)."""

    requires = ("limb_heatmaps",)

    def __init__(self, layout: Any = "coco17", **options: Any) -> None:
        name = getattr(layout, "name", layout)
        if name != "coco17":
            raise ValueError(f"simplepose_limbs grouper: only layout coco17 is supported, got {name!r}")
        known = set(LimbGroupingParams.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"simplepose_limbs grouper: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        self.params = LimbGroupingParams(**options)

    def __call__(self, candidates: Any) -> Poses:
        xy, scores = list(candidates.xy), list(candidates.scores)
        if len(xy) != NUM_KEYPOINTS:
            raise ValueError(f"simplepose_limbs grouper: expected 18 CMU joints of candidates, got {len(xy)}")
        limbs = candidates.maps.get("limb_heatmaps") if getattr(candidates, "maps", None) else None
        if limbs is None:
            raise ValueError("simplepose_limbs grouper: candidates need the 'limb_heatmaps' map (30, H, W)")
        limbs = np.asarray(limbs, dtype=np.float64)
        if limbs.ndim != 3 or limbs.shape[0] != NUM_LIMBS or float(getattr(candidates, "map_stride", 1.0)) != 1.0:
            raise ValueError(
                f"simplepose_limbs grouper: 'limb_heatmaps' must be (30, H, W) at image resolution, got "
                f"{limbs.shape} at stride {getattr(candidates, 'map_stride', 1.0)}"
            )
        counts = [np.asarray(a).reshape(-1, 2).shape[0] for a in xy]
        part = np.repeat(np.arange(NUM_KEYPOINTS), counts)
        n = int(sum(counts))
        cand = np.zeros((n, 4))
        if n:
            cand[:, :2] = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1, 2) for a in xy])
            cand[:, 2] = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in scores])
        cand[:, 3] = np.arange(n)
        size = getattr(candidates, "image_size", None)
        height = float(size[0]) if size is not None else float(limbs.shape[1])
        result = group_candidates(cand, part, np.moveaxis(limbs, 0, 2), height, self.params)
        return Poses(result.keypoints, result.scores, "coco17")
