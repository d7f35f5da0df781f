"""A tiny backbone + head + codec + dataset for engine tests (no DEKR, no HRNet, no real data).

Also runnable as a script (single process or under torchrun) so subprocess tests can train with
it: ``python test_engine_helpers.py --out DIR [--steps N] [--batch B] [--resume] [--set k=v ...]``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from bupose.core.batch import Batch
from bupose.core.codec import BaseCodec, Encoded
from bupose.core.model import Backbone, Head, PoseModel
from bupose.core.specs import FeatureShape, LayoutSpec

TINY_LAYOUT = LayoutSpec(
    name="tiny3",
    keypoints=("a", "b", "c"),
    flip_index=(0, 2, 1),
    sigmas=(0.05, 0.05, 0.05),
    skeleton=((0, 1), (0, 2)),
)
SIZE = 32
STRIDE = 4


class TinyBackbone(Backbone):
    """Two convolutions, stride 4, no batch norm (so N-process DDP equals 1 process exactly)."""

    def __init__(self, width: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.width = width
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Dropout2d(dropout),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )

    def output_shape(self) -> dict[str, FeatureShape]:
        return {"s4": FeatureShape(self.width, STRIDE)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"s4": self.body(x)}


class TinyHead(Head):
    """A 1x1 convolution to one heatmap per keypoint; mean-squared-error loss."""

    train_defaults: Mapping[str, Any] = {"optimizer": "adam", "lr": 5e-3, "lr_schedule": "multistep",
                                         "lr_milestones": [0.5], "lr_factor": 0.1}

    def __init__(self, input_shapes: Mapping[str, FeatureShape], layout: LayoutSpec) -> None:
        super().__init__(input_shapes, layout)
        self.conv = nn.Conv2d(input_shapes["s4"].channels, layout.num_keypoints, 1)

    def forward(self, features: Mapping[str, torch.Tensor], batch: Batch | None = None) -> dict[str, torch.Tensor]:
        return {"heatmap": self.conv(features["s4"])}

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        return {"heatmap": ((outputs["heatmap"] - batch.targets["heatmap"]) ** 2).mean() * 100}


class TinyCodec(BaseCodec):
    """Gaussian heatmaps at stride 4 (encode only: decode is not needed by the engine tests)."""

    sample_keys = ("keypoints",)
    output_fields = ("heatmap",)

    def __init__(self, size: int = SIZE, sigma: float = 1.0, *, layout: Any = None, input_size: int | None = None) -> None:
        super().__init__(TINY_LAYOUT if layout is None else layout, input_size or size)
        self.size = input_size or size
        self.sigma = sigma

    def output_sizes(self, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        s = int(input_size if isinstance(input_size, int) else self.size) // STRIDE
        return {"1/4": (s, s)}

    def encode(self, sample: Mapping[str, Any]) -> Encoded:
        self.check_sample(sample)
        h = self.size // STRIDE
        ys, xs = np.mgrid[0:h, 0:h].astype(np.float32)
        kps = np.asarray(sample["keypoints"], dtype=np.float32)
        hm = np.zeros((kps.shape[1], h, h), dtype=np.float32)
        for person in kps:
            for j, (x, y, v) in enumerate(person):
                if v > 0:
                    g = np.exp(-((xs - x / STRIDE) ** 2 + (ys - y / STRIDE) ** 2) / (2 * self.sigma**2))
                    hm[j] = np.maximum(hm[j], g)
        return Encoded(dense={"heatmap": torch.from_numpy(hm)}, instances={"keypoints": torch.from_numpy(kps)})


class TinyDataset:
    """Deterministic random images with one bright dot per keypoint."""

    def __init__(self, n: int = 32, size: int = SIZE, seed: int = 0) -> None:
        self.n, self.size, self.seed = n, size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, i])
        img = rng.integers(0, 60, (self.size, self.size, 3), dtype=np.uint8)
        kps = np.zeros((1, 3, 3))
        kps[0, :, :2] = rng.uniform(4, self.size - 4, (3, 2))
        kps[0, :, 2] = 2
        for j, (x, y, _) in enumerate(kps[0]):
            img[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2, j] = 255
        return {"image": img, "keypoints": kps}


def tiny_flip(sample: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A random horizontal flip plus a random brightness shift (uses ``rng`` only)."""
    img = sample["image"].copy()
    kps = np.array(sample["keypoints"], dtype=np.float64)
    if rng.random() < 0.5:
        img = img[:, ::-1].copy()
        kps[:, :, 0] = img.shape[1] - 1 - kps[:, :, 0]
        kps = kps[:, list(TINY_LAYOUT.flip_index)]
    img = np.clip(img.astype(np.int16) + int(rng.integers(-10, 10)), 0, 255).astype(np.uint8)
    return {**sample, "image": img, "keypoints": kps}


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0 - 0.5


def make_model(dropout: float = 0.0) -> PoseModel:
    bb = TinyBackbone(dropout=dropout)
    hd = TinyHead(bb.output_shape(), TINY_LAYOUT)
    return PoseModel(bb, hd, head_name="tiny", backbone_name="tiny", layout=TINY_LAYOUT)


def heatmap_ap(model: PoseModel) -> dict[str, float]:
    """A stand-in metric: fraction of keypoints whose heatmap argmax is within 1 cell."""
    ds = TinyDataset(n=8, seed=99)
    hits = 0
    with torch.no_grad():
        for i in range(len(ds)):
            s = ds[i]
            hm = model(to_tensor(s["image"])[None])["heatmap"][0]
            for j in range(3):
                idx = int(hm[j].flatten().argmax())
                y, x = divmod(idx, hm.shape[-1])
                tx, ty = s["keypoints"][0, j, :2] / STRIDE
                hits += abs(x - tx) <= 1.0 and abs(y - ty) <= 1.0
    return {"AP": hits / (3 * len(ds))}


def make_components(dropout: float = 0.0, with_eval: bool = False, n: int = 32) -> Any:
    from bupose.core.engine.trainer import TrainComponents

    codec = TinyCodec()
    return TrainComponents(
        model_factory=lambda: make_model(dropout),
        train_set=TinyDataset(n=n),
        encode=codec.encode,
        to_tensor=to_tensor,
        transform=tiny_flip,
        evaluator=heatmap_ap if with_eval else None,
        train_defaults=TinyHead.train_defaults,
        sample_keys=codec.sample_keys,
    )


def main(argv: list[str] | None = None) -> int:
    from bupose.core.engine.config import load_config
    from bupose.core.engine.trainer import Trainer

    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--eval", action="store_true")
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args(argv)
    cfg = load_config(
        None,
        ["head=tiny", "backbone=tiny", "data=tiny", f"out={args.out}", "input_size=32", "progress=false",
         "tensorboard=false", *args.set],
    )
    Trainer(cfg, make_components(args.dropout, args.eval), resume=args.resume).fit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
