"""GroupPose inference pipeline: DETR val resize, padded batch with mask, network, PostProcess.

``GroupPosePipeline(model).predict_batch(images)`` turns RGB uint8 images into one
:class:`~bupose.core.poses.Poses` per image, in image pixels: the person-class (label 1) selections
of ``PostProcess(num_select=50)``, best first, each joint's score the model's constant v
(sigmoid(1)). Class-0 selections are not people (COCOeval ignores them) and are left out.

Batching (``batch_mode``):

- ``independent`` (default): images are grouped by resized size and each group runs unpadded, so
  every image gives the same result whatever the batch size (the official eval at batch 1);
- ``pad``: the whole batch is padded bottom-right to its largest image with a mask, exactly as the
  official eval does (``batch_size`` 2 by default): an image's result then depends on its batch mates
  (padding changes the Swin/ResNet features at the border, the valid ratios and the selection).

The backbone's ``size_divisibility`` is not applied: the official pipeline pads only to the largest
image of the batch (Swin pads internally).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from bupose.core.amp import autocast
from bupose.core.benchmark import Stopwatch, stage
from bupose.core.inference import Pipeline, check_image
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .options import GroupPoseOptions
from .postprocess import PostProcessed, postprocess
from .preprocess import DEFAULT_SHORT_SIDE, default_max_size, pad_batch, resize_image, to_network_input

__all__ = ["GroupPosePipeline", "to_poses"]


def to_poses(res: PostProcessed, layout: str, num_keypoints: int) -> Poses:
    """The person-class (label 1) selections of one image as Poses, best first."""
    keep = res.labels == 1
    kp = res.keypoints[keep].reshape(-1, num_keypoints, 3).cpu().numpy().astype(np.float64)
    return Poses(kp, res.scores[keep].cpu().numpy().astype(np.float64), layout)


class GroupPosePipeline(Pipeline):
    """GroupPose test pipeline, built from :class:`~bupose.grouppose.options.GroupPoseOptions`."""

    options_class: ClassVar[type] = GroupPoseOptions

    def __init__(self, model: PoseModel, options: GroupPoseOptions | None = None, /, **values: Any) -> None:
        super().__init__(model, options, **values)
        if not hasattr(model.head, "transformer") or not hasattr(model.head, "class_embed"):
            raise TypeError(f"GroupPosePipeline needs a GroupPose head, got {type(model.head).__name__}")
        opts: GroupPoseOptions = self.options
        stored = model.config.get("input_size") if isinstance(model.config, dict) else None
        size = opts.input_size if opts.input_size is not None else stored
        if isinstance(size, (list, tuple)):
            size = min(int(s) for s in size)
        self.short_side = int(size) if size is not None else DEFAULT_SHORT_SIDE
        self.max_size = int(opts.max_size) if opts.max_size is not None else default_max_size(self.short_side)
        self.batch_mode = opts.batch_mode
        self.num_select = int(opts.num_select)
        self.amp = bool(opts.amp)

    def prepare(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Resized, normalised (3, h, w) network inputs of RGB uint8 images."""
        return [to_network_input(resize_image(im, self.short_side, self.max_size), self.device) for im in images]

    def network(self, tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Head outputs (float32) of one padded batch of network inputs."""
        batch = pad_batch(list(tensors)).to(self.device)
        with autocast(self.device, self.amp):
            out = self.model(batch)
        return {"pred_logits": out["pred_logits"].float(), "pred_keypoints": out["pred_keypoints"].float()}

    def raw_results(self, images: Sequence[np.ndarray], *, stopwatch: Stopwatch | None = None) -> list[PostProcessed]:
        """PostProcess selections (all 50, both classes) for each image, in original-image pixels.

        ``stopwatch`` (``bupose bench``) accumulates the ``forward`` stage (resize, normalise, pad,
        network) and the ``decode`` stage (PostProcess top-k and scaling to image pixels).
        """
        arrays = [check_image(im, k) for k, im in enumerate(images)]
        if not arrays:
            return []
        with stage(stopwatch, "forward"):
            tensors = self.prepare(arrays)
        if self.batch_mode == "pad":
            groups = [list(range(len(arrays)))]
        else:
            by_size: dict[tuple[int, int], list[int]] = {}
            for i, t in enumerate(tensors):
                by_size.setdefault((int(t.shape[1]), int(t.shape[2])), []).append(i)
            groups = list(by_size.values())
        results: list[PostProcessed | None] = [None] * len(arrays)
        for idx in groups:
            with stage(stopwatch, "forward"):
                out = self.network([tensors[i] for i in idx])
            with stage(stopwatch, "decode"):
                orig = [arrays[i].shape[:2] for i in idx]
                for i, res in zip(idx, postprocess(out["pred_logits"], out["pred_keypoints"], orig, self.num_select)):
                    results[i] = res
        return [r for r in results if r is not None]

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray], *, stopwatch: Stopwatch | None = None) -> list[Poses]:
        """Poses (person class) for each RGB uint8 (H, W, 3) image, in image pixels (``stopwatch``:
        see :meth:`raw_results`)."""
        k = self.model.layout.num_keypoints
        results = self.raw_results(images, stopwatch=stopwatch)
        with stage(stopwatch, "decode"):
            return [to_poses(r, self.model.layout.name, k) for r in results]
