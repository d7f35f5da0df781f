"""The DEKR head (heatmaps + disentangled per-joint offset regression) and the rescoring net.

Module and parameter names follow the official ``PoseHigherResolutionNet`` head exactly, so a bupose
``PoseModel`` state_dict is ``backbone.<official backbone key>`` + ``head.<official head key>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from bupose.core import ops
from bupose.core.batch import Batch
from bupose.core.model import ConcatInput, Head
from bupose.core.specs import FeatureShape, LayoutSpec

__all__ = [
    "BN_MOMENTUM",
    "AdaptBlock",
    "BasicBlock",
    "DEKRHead",
    "DeformConv2d",
    "PredictOKSNet",
    "TRAIN_DEFAULTS",
    "adapt_offsets",
    "dekr_loss",
]

BN_MOMENTUM = 0.1
HEATMAP_LOSS_FACTOR = 1.0
OFFSET_LOSS_FACTOR = 0.03

TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_schedule": "multistep",
    "lr_milestones": [90 / 140, 120 / 140],
    "lr_factor": 0.1,
}
"""The official COCO schedule (Adam 1e-3, x0.1 at epochs 90 and 120 of 140) as fractions of the run."""


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, BN, residual), as the official ``conv_block.BasicBlock``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class DeformConv2d(nn.Module):
    """Plain deformable convolution (DCNv1, one offset group, no bias) through core's op lookup.

    Holds only ``weight`` (out, in, k, k), like ``torchvision.ops.DeformConv2d(bias=False)``; the
    kernel is ``bupose.core.ops.get_op("deform_conv2d", device)`` with torchvision semantics.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
        padding: int = 1, dilation: int = 1,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # torchvision's default init

    def forward(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        op = ops.get_op("deform_conv2d", x.device)
        return op(
            x, offset, self.weight, None, stride=(self.stride, self.stride),
            padding=(self.padding, self.padding), dilation=(self.dilation, self.dilation),
        )


def adapt_offsets(
    transform_matrix: torch.Tensor, translation: torch.Tensor, regular_matrix: torch.Tensor
) -> torch.Tensor:
    """Deformable sampling offsets of an AdaptBlock: ``M·R − R + t`` per pixel.

    ``transform_matrix`` (N,4,H,W) holds M = [[c0,c1],[c2,c3]], ``translation`` (N,2,H,W) (dy,dx),
    ``regular_matrix`` (2,9) the 3x3 grid (row 0 = dy, row 1 = dx). Returns (N,18,H,W) laid out
    (dy0, dx0, dy1, dx1, ...), torchvision's layout.
    """
    n, _, h, w = transform_matrix.shape
    ry = regular_matrix[0].view(1, 9, 1, 1)
    rx = regular_matrix[1].view(1, 9, 1, 1)
    c = transform_matrix
    # Element-wise, in the order of the per-pixel product (c0*ry + c1*rx) - ry + ty: the official
    # (HW, 2, 2) @ (2, 9) matmul gives the same numbers (its products by the grid's -1/0/1 are exact),
    # without a batched matmul of 2x2 matrices.
    dy = (c[:, 0:1] * ry + c[:, 1:2] * rx) - ry + translation[:, 0:1]
    dx = (c[:, 2:3] * ry + c[:, 3:4] * rx) - rx + translation[:, 1:2]
    return torch.stack((dy, dx), dim=2).reshape(n, 18, h, w)


class AdaptBlock(nn.Module):
    """The official adaptive convolution block: an affine-deformed 3x3 conv, BN, residual, ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, outplanes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        regular = torch.tensor(
            [[-1, -1, -1, 0, 0, 0, 1, 1, 1], [-1, 0, 1, -1, 0, 1, -1, 0, 1]], dtype=torch.float32
        )
        self.register_buffer("regular_matrix", regular)
        self.transform_matrix_conv = nn.Conv2d(inplanes, 4, 3, 1, 1, bias=True)
        self.translation_conv = nn.Conv2d(inplanes, 2, 3, 1, 1, bias=True)
        self.adapt_conv = DeformConv2d(
            inplanes, outplanes, kernel_size=3, stride=stride, padding=dilation, dilation=dilation
        )
        self.bn = nn.BatchNorm2d(outplanes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

    def sampling_offsets(self, x: torch.Tensor) -> torch.Tensor:
        """The (N,18,H,W) deformable offsets this block uses for input ``x``."""
        return adapt_offsets(
            self.transform_matrix_conv(x), self.translation_conv(x), self.regular_matrix.to(x.dtype)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.adapt_conv(x, self.sampling_offsets(x)))
        return self.relu(out + x)


def _transition(inplanes: int, outplanes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, 1, 0, bias=False),
        nn.BatchNorm2d(outplanes, momentum=BN_MOMENTUM),
        nn.ReLU(True),
    )


def _smooth_l1(pred: torch.Tensor, gt: torch.Tensor, beta: float = 1.0 / 9) -> torch.Tensor:
    diff = torch.abs(pred - gt)
    return torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)


def dekr_loss(
    heatmap: torch.Tensor,
    offset: torch.Tensor,
    gt_heatmap: torch.Tensor,
    heatmap_weight: torch.Tensor,
    gt_offset: torch.Tensor,
    offset_weight: torch.Tensor,
    heatmap_factor: float = HEATMAP_LOSS_FACTOR,
    offset_factor: float = OFFSET_LOSS_FACTOR,
) -> dict[str, torch.Tensor]:
    """The official ``MultiLossFactory`` losses.

    ``heatmap_loss`` = mean((pred − gt)²·weight)·heatmap_factor; ``offset_loss`` = Σ smoothL1_{β=1/9}
    (pred − gt)·weight / #(weight > 0)·offset_factor (the count is at least 1).
    """
    if heatmap.shape != gt_heatmap.shape or offset.shape != gt_offset.shape:
        raise ValueError(
            f"DEKR loss: prediction/target shapes differ: heatmap {tuple(heatmap.shape)} vs "
            f"{tuple(gt_heatmap.shape)}, offset {tuple(offset.shape)} vs {tuple(gt_offset.shape)}"
        )
    hm = (((heatmap - gt_heatmap) ** 2) * heatmap_weight).mean()
    num_pos = max(int((offset_weight > 0).sum()), 1)
    off = (_smooth_l1(offset, gt_offset) * offset_weight).sum() / num_pos
    return {"heatmap_loss": hm * heatmap_factor, "offset_loss": off * offset_factor}


class DEKRHead(Head):
    """DEKR head: ``heatmap`` (B, J+1, h, w) with the person centre LAST and ``offset`` (B, 2J, h, w)
    laid out (x0, y0, x1, y1, ...), offset = pixel − keypoint in output pixels.

    Reads the backbone output ``concat`` when declared (HRNet's stride-4 concatenation), otherwise
    concatenates every declared output at the finest stride. ``heatmap_channels`` defaults to the
    official width rule (HRNet's concat is 15x its base width: W32 -> 32, W48 -> 48; other backbones
    32). Trains with core's default augmentation (the official random affine + flip), one parameter
    group and the official schedule (:data:`TRAIN_DEFAULTS`).
    """

    train_defaults: Mapping[str, Any] = TRAIN_DEFAULTS

    def __init__(
        self,
        input_shapes: Mapping[str, FeatureShape],
        layout: LayoutSpec,
        *,
        heatmap_channels: int | None = None,
        offset_channels_per_joint: int = 15,
        heatmap_blocks: int = 1,
        offset_blocks: int = 2,
        dilation: int = 1,
        final_conv_kernel: int = 1,
        heatmap_loss_factor: float = HEATMAP_LOSS_FACTOR,
        offset_loss_factor: float = OFFSET_LOSS_FACTOR,
        init_weights: bool = True,
    ) -> None:
        super().__init__(input_shapes, layout)
        if final_conv_kernel not in (1, 3):
            raise ValueError(f"DEKRHead: final_conv_kernel must be 1 or 3, got {final_conv_kernel}")
        self._input = ConcatInput(input_shapes, "DEKRHead")
        self.input_names = self._input.names
        in_channels = self._input.channels
        self.stride = self._input.stride
        if heatmap_channels is None:
            heatmap_channels = in_channels // 15 if in_channels % 15 == 0 else 32
        self.num_joints = layout.num_keypoints
        self.in_channels = in_channels
        self.heatmap_channels = heatmap_channels
        self.offset_prekpt = offset_channels_per_joint
        self.loss_factors = (float(heatmap_loss_factor), float(offset_loss_factor))
        j = self.num_joints
        pad = 1 if final_conv_kernel == 3 else 0

        self.transition_heatmap = _transition(in_channels, heatmap_channels)
        self.transition_offset = _transition(in_channels, j * offset_channels_per_joint)
        self.head_heatmap = nn.ModuleList(
            [
                nn.Sequential(
                    *[BasicBlock(heatmap_channels, heatmap_channels, dilation=dilation) for _ in range(heatmap_blocks)]
                ),
                nn.Conv2d(heatmap_channels, j + 1, final_conv_kernel, 1, pad),
            ]
        )
        self.offset_feature_layers = nn.ModuleList(
            nn.Sequential(
                *[
                    AdaptBlock(offset_channels_per_joint, offset_channels_per_joint, dilation=dilation)
                    for _ in range(offset_blocks)
                ]
            )
            for _ in range(j)
        )
        self.offset_final_layer = nn.ModuleList(
            nn.Conv2d(offset_channels_per_joint, 2, final_conv_kernel, 1, pad) for _ in range(j)
        )
        if init_weights:
            self.init_weights()

    def init_weights(self) -> None:
        """The official training-time init: convs N(0, 0.001²) with zero bias, BN 1/0, every
        AdaptBlock's transform/translation conv weights zero (so M = 0 and every tap starts at the
        centre pixel), and the deformable convs keep torchvision's kaiming-uniform default."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        for m in self.modules():
            if isinstance(m, AdaptBlock):
                nn.init.constant_(m.transform_matrix_conv.weight, 0)
                nn.init.constant_(m.translation_conv.weight, 0)

    def features(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The single feature map the head reads (``concat`` or the finest-stride concatenation)."""
        return self._input(features)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs for an already-concatenated feature map (B, in_channels, h, w)."""
        heatmap = self.head_heatmap[1](self.head_heatmap[0](self.transition_heatmap(x)))
        offset_feature = self.transition_offset(x)
        c = self.offset_prekpt
        offsets = [
            self.offset_final_layer[j](self.offset_feature_layers[j](offset_feature[:, j * c : (j + 1) * c]))
            for j in range(self.num_joints)
        ]
        return {"heatmap": heatmap, "offset": torch.cat(offsets, dim=1)}

    def forward(
        self, features: Mapping[str, torch.Tensor], batch: Batch | None = None
    ) -> dict[str, torch.Tensor]:
        return self.forward_features(self.features(features))

    def loss(
        self, outputs: Mapping[str, torch.Tensor], batch: Batch | Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``heatmap_loss`` and ``offset_loss`` (official factors 1.0 and 0.03 by default).

        ``batch.targets`` (or ``batch`` itself, a mapping of stacked targets) holds the batched dense
        targets of :meth:`bupose.dekr.codec.DEKRCodec.encode`: ``heatmap``, ``heatmap_weight``,
        ``offset``, ``offset_weight``.
        """
        targets = batch.targets if isinstance(batch, Batch) else batch
        missing = [k for k in ("heatmap", "heatmap_weight", "offset", "offset_weight") if k not in targets]
        if missing:
            raise KeyError(f"DEKRHead.loss: targets lack {missing}; got {sorted(targets)}")
        dtype = outputs["heatmap"].dtype
        return dekr_loss(
            outputs["heatmap"],
            outputs["offset"],
            targets["heatmap"].to(dtype),
            targets["heatmap_weight"].to(dtype),
            targets["offset"].to(dtype),
            targets["offset_weight"].to(dtype),
            *self.loss_factors,
        )


class PredictOKSNet(nn.Module):
    """The official rescoring MLP: ``l1`` (F→hidden) → ReLU → ``l2`` → ReLU → ``l3`` (→1).

    Input: (N, F) pose features (F = 74 for COCO, 59 for CrowdPose); output (N, 1) predicted OKS.
    """

    def __init__(self, input_channels: int, hidden: int = 256, output_channels: int = 1) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.l1 = nn.Linear(input_channels, hidden, bias=True)
        self.l2 = nn.Linear(hidden, hidden, bias=True)
        self.l3 = nn.Linear(hidden, output_channels, bias=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_channels:
            raise ValueError(
                f"PredictOKSNet expects {self.input_channels} features per pose, got {x.shape[-1]}"
            )
        return self.l3(self.relu(self.l2(self.relu(self.l1(x)))))

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], **kwargs: Any) -> PredictOKSNet:
        """A net sized from (and strictly loaded with) a state_dict with keys l1/l2/l3.weight/bias."""
        from bupose.core.weights import CheckpointMismatchError, load_state_dict_strict

        if "l1.weight" not in state_dict or "l2.weight" not in state_dict:
            expected = [f"l{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]
            raise CheckpointMismatchError(
                "rescore net", [k for k in expected if k not in state_dict],
                [k for k in state_dict if k not in expected],
            )
        in_ch = int(state_dict["l1.weight"].shape[1])
        hidden = int(state_dict["l1.weight"].shape[0])
        net = cls(in_ch, hidden=hidden, **kwargs)
        load_state_dict_strict(net, state_dict, "rescore net")
        return net

