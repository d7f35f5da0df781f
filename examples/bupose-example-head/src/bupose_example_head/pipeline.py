"""The example inference pipeline: letterbox to a fixed square, run, decode, map back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from bupose.core.algorithms.image import normalize_images
from bupose.core.inference import Pipeline
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .codec import ExampleHeatmapCodec


class ExamplePipeline(Pipeline):
    """Each image is scaled to fit ``input_size`` (aspect kept, zero padding) and decoded alone."""

    def __init__(self, model: PoseModel, input_size: int = 64, **options: Any) -> None:
        super().__init__(model, **options)
        self.input_size = input_size
        self.codec = ExampleHeatmapCodec(model.layout, stride=model.head.stride)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:
        s = self.input_size
        batch, scales = [], []
        for img in images:
            scale = s / max(img.shape[:2])
            h, w = round(img.shape[0] * scale), round(img.shape[1] * scale)
            canvas = np.zeros((s, s, 3), np.uint8)
            canvas[:h, :w] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            batch.append(canvas)
            scales.append(scale)
        x = normalize_images(batch, self.device)
        poses = self.codec.decode({"heatmap": self.model(x)["heatmap"].cpu()}, [{} for _ in images])
        for p, scale in zip(poses, scales, strict=True):
            p.keypoints[:, :, :2] /= scale
        return poses
