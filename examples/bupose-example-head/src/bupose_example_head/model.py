"""The example backbone and head."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from bupose.core.batch import Batch
from bupose.core.model import Backbone, Head, concat_at_finest
from bupose.core.specs import FeatureShape, LayoutSpec


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ExampleConvNet(Backbone):
    """Three stride-2 convolutions: outputs ``s4`` (16 ch) and ``s8`` (32 ch)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.width = width
        self.stem = _block(3, width)
        self.layer4 = _block(width, width)
        self.layer8 = _block(width, 2 * width)

    def output_shape(self) -> dict[str, FeatureShape]:
        return {"s4": FeatureShape(self.width, 4), "s8": FeatureShape(2 * self.width, 8)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s4 = self.layer4(self.stem(x))
        return {"s4": s4, "s8": self.layer8(s4)}


class ExampleHeatmapHead(Head):
    """All backbone outputs resized to the finest stride, concatenated, 1x1 conv to J heatmaps.

    Training pieces: core's default augmentation (``Head.augmentation``, the bottom-up random
    affine), Adam 1e-3 with a cosine schedule, one parameter group.
    """

    train_defaults: ClassVar[Mapping[str, Any]] = {"optimizer": "adam", "lr": 1e-3, "lr_schedule": "cosine"}

    def __init__(self, input_shapes: Mapping[str, FeatureShape], layout: LayoutSpec, hidden: int = 32) -> None:
        super().__init__(input_shapes, layout)
        self.in_names = sorted(input_shapes, key=lambda n: input_shapes[n].stride)
        self.stride = input_shapes[self.in_names[0]].stride
        cin = sum(s.channels for s in input_shapes.values())
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, layout.num_keypoints, 1)
        )

    def forward(self, features: Mapping[str, torch.Tensor], batch: Batch | None = None) -> dict[str, torch.Tensor]:
        return {"heatmap": self.conv(concat_at_finest(features, self.in_names))}

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """Weighted mean squared error against the codec's ``heatmap`` / ``weight`` targets."""
        pred, target = outputs["heatmap"], batch.targets["heatmap"]
        if pred.shape != target.shape:
            raise ValueError(
                f"ExampleHeatmapHead.loss: heatmap {tuple(pred.shape)} vs target {tuple(target.shape)}; "
                f"the codec's stride must be the head's ({self.stride})"
            )
        diff = (pred - target.to(pred.dtype)) ** 2 * batch.targets["weight"].to(pred.dtype)
        return {"heatmap_loss": diff.mean()}
