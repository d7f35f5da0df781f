"""SimplePose inference as the official ``evaluate.py``: scale search x flip, fusion, peaks, limb grouping.

``SimplePosePipeline(model, **options)`` (options: :class:`~bupose.simplepose.options.SimplePoseOptions`,
the head's declared test options) turns RGB uint8 images into COCO-17 :class:`~bupose.core.poses.Poses`:
x, y and v (1 found, 0 missing, missing joints at (0, 0)), person score 1 - 1/total, no NMS — the
official results file. The keypoint peaks become core :class:`~bupose.core.grouping.Candidates` with
layout ``"cmu18"`` (the 18 CMU joints, neck included: the limb assembly needs it) and the fused
``limb_heatmaps`` (30, H, W) at image resolution and go to the grouper in use: the head's
``simplepose_limbs`` (built with the pipeline's thresholds) or another one chosen with ``--grouper``.

The network input is BGR / 255 when the backbone says ``input_format == "bgr01"`` (IMHN's default, the
official input); any other backbone (or IMHN built with ``input_format="imagenet_rgb"``, as trained by
bupose's engine) gets the same resized, padded image as ImageNet-normalised RGB.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bupose.core.algorithms.image import IMAGENET_MEAN, IMAGENET_STD
from bupose.core.benchmark import Stopwatch, stage
from bupose.core.grouping import Candidates, Grouper, build_grouper
from bupose.core.inference import GroupingPipeline
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .grouping import LimbGroupingParams, find_peaks
from .options import SimplePoseOptions
from .preprocess import fuse_outputs, plan_scales, prepare_input

__all__ = ["SimplePosePipeline"]

_GROUPER_KEYS = ("thre2", "connect_ration", "mid_num", "len_rate", "connection_tole", "offset_radius", "remove_recon")


class SimplePosePipeline(GroupingPipeline):
    """Official SimplePose test-time pipeline around a ``simplepose`` model.

    ``SimplePosePipeline(model, **options)`` or ``(model, SimplePoseOptions(...))``; ``grouper`` is a
    registered grouper name (default: the head's ``simplepose_limbs``) or a grouper object.
    """

    options_class = SimplePoseOptions

    def __init__(
        self, model: PoseModel, options: SimplePoseOptions | None = None, /, *,
        grouper: str | Grouper | None = None, **values: Any,
    ) -> None:  # fmt: skip
        super().__init__(model, options, grouper=grouper, **values)
        self.opts: SimplePoseOptions = self.options
        if self.grouper_spec is not None and self.grouper_spec.name == "simplepose_limbs":
            # the head's grouper runs with this pipeline's thresholds
            self.grouper = build_grouper(
                "simplepose_limbs", model.layout, **{k: getattr(self.opts, k) for k in _GROUPER_KEYS}
            )
        trained = model.config.get("input_size") if isinstance(model.config, dict) else None
        if isinstance(trained, (tuple, list)):
            trained = max(trained)
        self.boxsize = int(self.opts.input_size or trained or 512)
        self.input_format = str(getattr(model.backbone, "input_format", "imagenet_rgb"))
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        from bupose.core.amp import autocast

        return autocast(self.device, self.opts.amp)

    def network_maps(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fused (heatmaps (H, W, 20), limb maps (H, W, 30)) for one BGR uint8 image."""
        h, w = image_bgr.shape[:2]
        outs, pads = [], []
        for plan in plan_scales(h, w, self.opts.scale_search, self.boxsize):
            x, pb, pr = prepare_input(image_bgr, plan.multiplier_used, flip=self.opts.flip)
            t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(self.device)
            if self.input_format != "bgr01":  # a backbone trained on core's input: ImageNet-normalised RGB
                t = (t.flip(1) - self._mean.to(t.device)) / self._std.to(t.device)
            with self._autocast():
                maps = self.model(t)["maps"]
            outs.append(maps.float().cpu().numpy())
            pads.append((pb, pr))
        return fuse_outputs(outs, pads, (h, w), flip=self.opts.flip)

    def group_maps(self, heatmaps: np.ndarray, limbs: np.ndarray) -> Poses:
        """Peaks on the fused keypoint maps, then the grouper in use."""
        candidate, part = find_peaks(heatmaps, self.opts.thre1, self.opts.offset_radius)
        xy = [candidate[part == k, :2] for k in range(18)]
        scores = [candidate[part == k, 2] for k in range(18)]
        cands = Candidates(
            "cmu18", xy, scores, maps={"limb_heatmaps": np.moveaxis(limbs, 2, 0)}, image_size=tuple(heatmaps.shape[:2])
        )
        return super().group(cands)

    def predict_batch(self, images: Sequence[np.ndarray], *, stopwatch: Stopwatch | None = None) -> list[Poses]:
        """Poses for each RGB uint8 (H, W, 3) image, in image pixels.

        ``stopwatch`` (``bupose bench``) accumulates the ``forward`` stage (resize, network, maps)
        and the ``decode`` stage (peaks and limb grouping).
        """
        out = []
        for img in images:
            with stage(stopwatch, "forward"):
                bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
                heat, limbs = self.network_maps(bgr)
            with stage(stopwatch, "decode"):
                out.append(self.group_maps(heat, limbs))
        return out

    @property
    def grouping_params(self) -> LimbGroupingParams:
        return LimbGroupingParams(**{k: getattr(self.opts, k) for k in ("thre1", *_GROUPER_KEYS)})
