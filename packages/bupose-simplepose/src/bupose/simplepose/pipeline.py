"""SimplePose inference as the official ``evaluate.py``: scale search x flip, fusion, peaks, limb grouping.

``SimplePosePipeline(model, **options)`` (options: :class:`~bupose.simplepose.options.SimplePoseOptions`)
turns RGB uint8 images into COCO-17 :class:`~bupose.core.poses.Poses`: x, y and v (1 found, 0 missing,
missing joints at (0, 0)), person score 1 - 1/total, no NMS — the official results file.

The network input is BGR / 255 when the backbone says ``input_format == "bgr01"`` (IMHN's default, the
official input); any other backbone (or IMHN built with ``input_format="imagenet_rgb"``, as trained by
bupose's engine) gets the same resized, padded image as ImageNet-normalised RGB.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np
import torch

from bupose.core.inference import IMAGENET_MEAN, IMAGENET_STD, Pipeline
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .grouper import LimbCandidates, SimplePoseLimbGrouper
from .grouping import LimbGroupingParams, find_peaks
from .options import SimplePoseOptions
from .preprocess import fuse_outputs, plan_scales, prepare_input

__all__ = ["SimplePosePipeline"]

try:  # core's grouper protocol ("method-neutral middle"); older cores: the grouper is called directly
    from bupose.core.grouping import Candidates as _Candidates
    from bupose.core.grouping import resolve_grouper as _resolve
except ImportError:  # pragma: no cover - depends on the installed bupose-core
    _Candidates = LimbCandidates  # type: ignore[assignment,misc]
    _resolve = None

_GROUPER_KEYS = ("thre2", "connect_ration", "mid_num", "len_rate", "connection_tole", "offset_radius", "remove_recon")


class SimplePosePipeline(Pipeline):
    """Official SimplePose test-time pipeline around a ``simplepose`` model.

    ``SimplePosePipeline(model, **options)`` (or ``(model, SimplePoseOptions(...))`` with core's declared
    options); ``grouper`` is a registered grouper name (default ``simplepose_limbs``) or a grouper object.
    """

    options_class = SimplePoseOptions

    def __init__(self, model: PoseModel, options: Any = None, /, *, grouper: Any = None, **values: Any) -> None:
        known = {f.name for f in fields(SimplePoseOptions)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"simplepose pipeline: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if values.get("input_size") is None and isinstance(model.config, dict) and model.config.get("input_size"):
            values["input_size"] = int(model.config["input_size"])
        if options is None:
            super().__init__(model, **values)
        else:
            super().__init__(model, options, **values)
        if isinstance(self.options, SimplePoseOptions):
            self.opts = self.options
        else:  # a core without declared options: values as given
            if values.get("scales") is not None:
                values["scales"] = tuple(float(s) for s in values["scales"])
            self.opts = SimplePoseOptions(**values)
        self.input_format = str(getattr(model.backbone, "input_format", "imagenet_rgb"))
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.grouper = self._resolve_grouper(model, grouper)

    def _resolve_grouper(self, model: PoseModel, grouper: Any) -> Any:
        """The grouper in use: core's resolution by name when this core has groupers, else ours."""
        limbs_options = {k: getattr(self.opts, k) for k in _GROUPER_KEYS}
        if grouper is not None and not isinstance(grouper, str):
            return grouper
        if _resolve is None:
            if grouper not in (None, "simplepose_limbs"):
                raise TypeError(f"grouper {grouper!r}: this bupose-core has no grouper registry")
            return SimplePoseLimbGrouper("coco17", **limbs_options)
        name = grouper or "simplepose_limbs"
        resolved, _spec = _resolve(
            model.head_name, grouper, model.layout, options=limbs_options if name == "simplepose_limbs" else None
        )
        return resolved

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        from bupose.core.amp import autocast

        return autocast(self.device, self.opts.amp)

    def network_maps(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fused (heatmaps (H, W, 20), limb maps (H, W, 30)) for one BGR uint8 image."""
        h, w = image_bgr.shape[:2]
        outs, pads = [], []
        for plan in plan_scales(h, w, self.opts.scale_search, self.opts.boxsize):
            x, pb, pr = prepare_input(image_bgr, plan.multiplier_used, flip=self.opts.flip)
            t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(self.device)
            if self.input_format != "bgr01":  # a backbone trained on core's input: ImageNet-normalised RGB
                t = (t.flip(1) - self._mean.to(t.device)) / self._std.to(t.device)
            with self._autocast():
                maps = self.model(t)["maps"]
            outs.append(maps.float().cpu().numpy())
            pads.append((pb, pr))
        return fuse_outputs(outs, pads, (h, w), flip=self.opts.flip)

    def group(self, heatmaps: np.ndarray, limbs: np.ndarray) -> Poses:
        """Peaks on the fused keypoint maps, then the registered limb grouper."""
        candidate, part = find_peaks(heatmaps, self.opts.thre1, self.opts.offset_radius)
        xy = [candidate[part == k, :2] for k in range(18)]
        scores = [candidate[part == k, 2] for k in range(18)]
        cands = _Candidates(
            "coco17", xy, scores, maps={"limb_heatmaps": np.moveaxis(limbs, 2, 0)}, image_size=tuple(heatmaps.shape[:2])
        )
        return self.grouper(cands)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:
        out = []
        for img in images:
            bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
            heat, limbs = self.network_maps(bgr)
            out.append(self.group(heat, limbs))
        return out

    @property
    def grouping_params(self) -> LimbGroupingParams:
        return LimbGroupingParams(**{k: getattr(self.opts, k) for k in ("thre1", *_GROUPER_KEYS)})
