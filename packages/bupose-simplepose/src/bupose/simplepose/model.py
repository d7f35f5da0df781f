"""The IMHN backbone (SimplePose's improved multi-scale hourglass) and the ``simplepose`` head.

Module names follow the official ``PoseNet`` (``pre``, ``hourglass``, ``features``, ``outs``,
``merge_features``, ``merge_preds``), so an official ``posenet.*`` state_dict maps onto
``backbone.*`` by a prefix swap.

Where the prediction layers live: in a stacked hourglass the 1x1 prediction convs of every stack
feed the next stack (``merge_preds``), so they are part of the backbone's recurrence. IMHN therefore
owns them (``pred_channels``, 50 by default) and declares both the SE features (``stack{s}_scale{j}``)
and the predictions (``stack{s}_scale{j}_pred``) of every stack and scale. The ``simplepose`` head
reads those predictions on IMHN (the official network, no extra parameters); on any other backbone
it adds its own single-stack predictor on the finest (stride-4) features.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn

from bupose.core.algorithms.image import IMAGENET_MEAN, IMAGENET_STD
from bupose.core.model import Backbone, Head, concat_at_finest
from bupose.core.specs import FeatureShape, LayoutSpec

from .config import NUM_OUTPUTS, imhn_output_shapes

__all__ = ["IMHN", "SimplePoseHead", "imhn"]

_SLOPE = 0.01


class Conv(nn.Module):
    """k x k conv (bias only without BN), optional BN, optional LeakyReLU(0.01): ``conv``/``bn``."""

    def __init__(self, cin: int, cout: int, k: int = 3, *, bn: bool = True, relu: bool = True, dilation: int = 1):
        super().__init__()
        pad = dilation * (k - 1) // 2
        self.conv = nn.Conv2d(cin, cout, k, 1, pad, dilation=dilation, bias=not bn)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.relu = nn.LeakyReLU(_SLOPE) if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class Residual(nn.Module):
    """Bottleneck 1x1 -> 3x3 -> 1x1 (width cout/2, BN always), 1x1+BN skip when widths differ."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.convBlock = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.LeakyReLU(_SLOPE),
            nn.Conv2d(mid, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid), nn.LeakyReLU(_SLOPE),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.skipConv = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)) if cin != cout else None
        )
        self.relu = nn.LeakyReLU(_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.skipConv is None else self.skipConv(x)
        return self.relu(self.convBlock(x) + skip)


class Stem(nn.Module):
    """7x7/2 conv -> Residual -> maxpool -> Residual -> 6 dilated 3x3; output concat[res2, dilated]."""

    def __init__(self, width: int = 128, dilations: tuple[int, ...] = (3, 3, 4, 4, 5, 5)):
        super().__init__()
        half = width // 2
        self.conv1 = nn.Conv2d(3, half, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.relu = nn.LeakyReLU(_SLOPE)
        self.res1 = Residual(half, width)
        self.pool = nn.MaxPool2d(2, 2)
        self.res2 = Residual(width, width)
        self.dilation = nn.Sequential(*(Conv(width, width, 3, dilation=d) for d in dilations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res2(self.pool(self.res1(self.relu(self.bn1(self.conv1(x))))))
        return torch.cat([x, self.dilation(x)], dim=1)


class Hourglass(nn.Module):
    """The multi-scale hourglass: widths grow by ``increase`` per level; returns every scale's map."""

    def __init__(self, depth: int = 4, nfeat: int = 256, increase: int = 128):
        super().__init__()
        levels = []
        for d in range(depth):
            c = nfeat + increase * d
            level = [Residual(c, c), Residual(c, c + increase), Residual(c + increase, c), Conv(c, c, 3)]
            if d == depth - 1:
                level.append(Residual(c + increase, c + increase))
            levels.append(nn.ModuleList(level))
        self.hg = nn.ModuleList(levels)
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def _level(self, d: int, x: torch.Tensor) -> list[torch.Tensor]:
        level = self.hg[d]
        up1 = level[0](x)
        low1 = level[1](self.pool(x))
        deeper = self._level(d + 1, low1) if d + 1 < len(self.hg) else [level[4](low1)]
        low3 = level[2](deeper[0])
        return [up1 + level[3](self.up(low3)), *deeper]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._level(0, x)


class SELayer(nn.Module):
    """Squeeze-excitation: global mean -> Linear -> LeakyReLU -> Linear -> sigmoid gate (``fc``)."""

    def __init__(self, channels: int = 256, hidden: int = 16):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), nn.LeakyReLU(_SLOPE), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class Features(nn.Module):
    """Per scale: Conv3x3 (c_j -> F) -> Conv3x3 (F) -> SE (``before_regress``)."""

    def __init__(self, channels: tuple[int, ...], feat: int = 256, se_hidden: int = 16):
        super().__init__()
        self.before_regress = nn.ModuleList(
            nn.Sequential(Conv(c, feat, 3), Conv(feat, feat, 3), SELayer(feat, se_hidden)) for c in channels
        )

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [m(x) for m, x in zip(self.before_regress, maps, strict=True)]


class Merge(nn.Module):
    """1x1 conv + BN, no activation (``conv``)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = Conv(cin, cout, 1, bn=True, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class IMHN(Backbone):
    """SimplePose's stem + ``nstack`` improved multi-scale hourglasses with SE features, per-stack
    predictions and inter-stack merges (official ``PoseNet``, ``bn=True``).

    Input: (B, 3, H, W) with H and W multiples of ``4 * 2**depth`` (64). ``input_format`` says what the
    input is: ``"bgr01"`` (default, the official input: BGR in [0, 1], no mean/std) or
    ``"imagenet_rgb"`` (core's training normalisation, ImageNet mean/std RGB), which the backbone turns
    back into BGR [0, 1] before the stem, so official weights and pipelines work with either.
    Training through bupose's engine feeds ImageNet-normalised RGB: use ``input_format="imagenet_rgb"``.
    """

    INPUT_FORMATS = ("bgr01", "imagenet_rgb")

    def __init__(
        self,
        nstack: int = 4,
        depth: int = 4,
        stem_width: int = 128,
        increase: int = 128,
        feat_channels: int = 256,
        se_hidden: int = 16,
        pred_channels: int = NUM_OUTPUTS,
        input_format: str = "bgr01",
    ) -> None:
        super().__init__()
        if input_format not in self.INPUT_FORMATS:
            raise ValueError(f"imhn: input_format must be one of {', '.join(self.INPUT_FORMATS)}, got {input_format!r}")
        self.input_format = input_format
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        nfeat = 2 * stem_width
        self.channels = tuple(nfeat + increase * d for d in range(depth + 1))
        self.nstack = nstack
        self.feat_channels = feat_channels
        self.pred_channels = pred_channels
        self.pre = Stem(stem_width)
        self.hourglass = nn.ModuleList(Hourglass(depth, nfeat, increase) for _ in range(nstack))
        self.features = nn.ModuleList(Features(self.channels, feat_channels, se_hidden) for _ in range(nstack))
        self.outs = nn.ModuleList(
            nn.ModuleList(Conv(feat_channels, pred_channels, 1, bn=False, relu=False) for _ in self.channels)
            for _ in range(nstack)
        )
        self.merge_features = nn.ModuleList(
            nn.ModuleList(Merge(feat_channels, c) for c in self.channels) for _ in range(nstack - 1)
        )
        self.merge_preds = nn.ModuleList(
            nn.ModuleList(Merge(pred_channels, c) for c in self.channels) for _ in range(nstack - 1)
        )

    def output_shape(self) -> dict[str, FeatureShape]:
        shapes = imhn_output_shapes(self.nstack, self.channels, self.pred_channels, self.feat_channels)
        return {k: FeatureShape(c, s) for k, (c, s) in shapes.items()}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.input_format == "imagenet_rgb":
            x = (x * self._std.to(x.dtype) + self._mean.to(x.dtype)).flip(1)
        x = self.pre(x)
        out: dict[str, torch.Tensor] = {}
        cache: list[torch.Tensor] | None = None
        for s in range(self.nstack):
            maps = self.hourglass[s](x)
            if cache is not None:
                maps = [m + c for m, c in zip(maps, cache, strict=True)]
            feats = self.features[s](maps)
            preds = [conv(f) for conv, f in zip(self.outs[s], feats, strict=True)]
            for j, (f, p) in enumerate(zip(feats, preds, strict=True)):
                out[f"stack{s}_scale{j}"] = f
                out[f"stack{s}_scale{j}_pred"] = p
            if s < self.nstack - 1:
                cache = [
                    self.merge_preds[s][j](p) + self.merge_features[s][j](f)
                    for j, (f, p) in enumerate(zip(feats, preds, strict=True))
                ]
                x = x + cache[0]
        return out


def imhn(**kwargs: Any) -> IMHN:
    """The official 4-stack IMHN (129M parameters with the 50-channel predictions)."""
    return IMHN(**kwargs)



class SimplePoseHead(Head):
    """SimplePose's 50 output maps: 30 limb heatmaps, 18 CMU keypoint maps, person mask, reverse keypoint.

    On IMHN the maps are the backbone's per-stack, per-scale predictions (``stack{s}_scale{j}_pred``).
    On any other backbone a single-stack predictor (Conv3x3 + BN + LeakyReLU, then 1x1 -> 50) runs
    on the finest declared outputs (concatenated, which must be at stride 4) and is trained from scratch.

    Output fields: ``maps`` (B, 50, H/4, W/4), the last stack at stride 4 (what inference reads), and
    ``pyramid_s{s}_{j}`` for every supervised stack s and scale j (training).
    """

    augmentation: ClassVar[str] = "bupose.simplepose.augment:simplepose_augmentation"
    train_defaults: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {"optimizer": "sgd", "lr": 2.5e-5, "weight_decay": 5e-4, "lr_schedule": "multistep", "lr_factor": 0.2}
    )
    """The official SGD (momentum 0.9, weight decay 5e-4, lr 2.5e-5 per 4-image GPU batch, x0.2 steps);
    ``TrainConfig`` values win (the synthetic-data script uses Adam)."""

    def __init__(self, input_shapes: Mapping[str, FeatureShape], layout: LayoutSpec, hidden: int = 256) -> None:
        super().__init__(input_shapes, layout)
        preds = sorted(k for k, v in input_shapes.items() if k.endswith("_pred") and v.channels == NUM_OUTPUTS)
        self.pred_names = preds
        self.predictor: nn.Module | None = None
        self.in_names: list[str] = []
        if preds:
            self.stacks = 1 + max(int(k.split("_")[0][5:]) for k in preds)
            self.scales = 1 + max(int(k.split("_")[1][5:]) for k in preds)
        else:
            finest = min(v.stride for v in input_shapes.values())
            if finest != 4:
                raise ValueError(
                    f"simplepose head needs a stride-4 backbone output; the finest declared stride is {finest}"
                )
            self.in_names = [k for k, v in input_shapes.items() if v.stride == 4 and k != "concat"]
            if "concat" in input_shapes:
                self.in_names = ["concat"]
            else:
                self.in_names += [k for k, v in input_shapes.items() if v.stride != 4]
            cin = sum(input_shapes[k].channels for k in self.in_names)
            self.predictor = nn.Sequential(
                Conv(cin, hidden, 3), Conv(hidden, NUM_OUTPUTS, 1, bn=False, relu=False)
            )
            self.stacks, self.scales = 1, 1

    def forward(self, features: Mapping[str, torch.Tensor], batch: Any = None) -> dict[str, torch.Tensor]:
        if self.predictor is None:
            out = {
                f"pyramid_s{s}_{j}": features[f"stack{s}_scale{j}_pred"]
                for s in range(self.stacks)
                for j in range(self.scales)
            }
            out["maps"] = out[f"pyramid_s{self.stacks - 1}_0"]
            return out
        x = concat_at_finest(features, self.in_names)
        maps = self.predictor(x)
        return {"maps": maps, "pyramid_s0_0": maps}

    def pyramid(self, outputs: Mapping[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """The supervised predictions as [stack][scale]."""
        return [[outputs[f"pyramid_s{s}_{j}"] for j in range(self.scales)] for s in range(self.stacks)]

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Any) -> dict[str, torch.Tensor]:
        """Focal-L2 multi-scale loss against ``batch.targets`` (or a mapping): ``maps`` (B, 50, h, w)
        and ``mask_misses`` (B, 1, h, w) at stride 4. Divided by the real batch size (the official code
        divides by its configured batch size, 4)."""
        from .loss import focal_l2_loss

        targets = batch.targets if hasattr(batch, "targets") else batch
        heatmaps = targets["maps"]
        mask = targets["mask_misses"]
        total = focal_l2_loss(self.pyramid(outputs), heatmaps, mask, batch_size=int(heatmaps.shape[0]))
        return {"focal_l2": total}
