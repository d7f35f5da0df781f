"""The CenterGroup head: HigherHRNet detector head with person centres, embedding CNNs, grouping model.

Module names follow the official ``CenterGroup`` so that a bupose PoseModel state_dict is
``backbone.<bare HRNet key>`` + ``head.keypoint_head.*`` (official ``bu_model.keypoint_head.*``) +
``head.kp_embed_cnn.*`` + ``head.person_embed_cnn.*`` + ``head.group_model.*``, in the official order.

:meth:`CenterGroupHead.forward` returns the dense detector outputs (``heatmaps_0`` (B, J+1, H/4,
W/4): J+1 heatmaps with the centre LAST; ``tags_0`` (B, J+1, H/4, W/4) the associative-embedding
tags (unused by CenterGroup); ``heatmaps_1`` (B, J+1, H/2, W/2);
``kp_embed`` / ``person_embed`` (B, 128, H/4, W/4)); in stage-2 training it also runs node extraction
and the grouping model on the batch and returns the grouping predictions (batch-first).
Inference composes the same pieces in :mod:`bupose.centergroup.pipeline` (flip test, two branches).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bupose.core.batch import Batch
from bupose.core.model import Head, ParamGroupRule
from bupose.core.specs import FeatureShape, LayoutSpec

from .grouping import GroupingModel, GroupPredictions, Nodes
from .nodes import CENTRES, KEYPOINTS, Candidates, ParsingConfig, extract_nodes, stage_average

__all__ = ["BasicBlock", "CenterGroupHead", "HigherResolutionHead", "TRAIN_DEFAULTS", "build_embed_cnn"]

BN_MOMENTUM = 0.1
TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "lr_schedule": "multistep",
    "lr_milestones": (0.2, 0.4),
    "lr_factor": 0.1,
}
"""Stage 2 (official ``train_cfg``): Adam lr 1e-4 for the embedding CNNs and the grouping model,
MultiStepLR x0.1 at epochs 20 and 40 (here fractions of a 100-epoch run, Lightning's ``min_epochs``);
the detector's 1e-5 is the param-group rule ``lr_scale`` 0.1."""


class BasicBlock(nn.Module):
    """mmpose ``BasicBlock`` (two 3x3 convs, BN, residual; keys ``conv1 bn1 conv2 bn2``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class _BlockWrap(nn.Sequential):
    """``deconv_layers.0.<i>.0.*``: mmpose nests each BasicBlock in a one-element Sequential."""


def build_embed_cnn(in_channels: int, hidden: int = 128, num_blocks: int = 2) -> nn.Sequential:
    """Official ``build_basicblock_cnn``: conv1x1 (bias) -> BN -> ReLU -> ``num_blocks`` BasicBlocks."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 1, 1, 0, bias=True),
        nn.BatchNorm2d(hidden, momentum=BN_MOMENTUM),
        nn.ReLU(inplace=True),
        *[BasicBlock(hidden) for _ in range(num_blocks)],
    )


class HigherResolutionHead(nn.Module):
    """mmpose ``AEHigherResolutionHead`` as CenterGroup configures it: ``final_layers.0`` (1x1 ->
    heatmaps + tags at 1/4), concat with the input, one 4x4 stride-2 transposed conv (no bias) + BN +
    ReLU and 4 BasicBlocks (``deconv_layers.0``), ``final_layers.1`` (1x1 -> heatmaps at 1/2)."""

    def __init__(self, in_channels: int, num_heatmaps: int, num_blocks: int = 4) -> None:
        super().__init__()
        self.final_layers = nn.ModuleList(
            [nn.Conv2d(in_channels, 2 * num_heatmaps, 1, 1, 0), nn.Conv2d(in_channels, num_heatmaps, 1, 1, 0)]
        )
        deconv = nn.Sequential(
            nn.ConvTranspose2d(in_channels + 2 * num_heatmaps, in_channels, 4, 2, 1, 0, bias=False),
            nn.BatchNorm2d(in_channels, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.deconv_layers = nn.ModuleList(
            [nn.Sequential(deconv, *[_BlockWrap(BasicBlock(in_channels)) for _ in range(num_blocks)])]
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(1/4 output, 1/2 output, 1/2 deconv feature)``."""
        y0 = self.final_layers[0](x)
        feat = self.deconv_layers[0](torch.cat([x, y0], dim=1))
        return y0, self.final_layers[1](feat), feat


class CenterGroupHead(Head):
    """CenterGroup head on a backbone's stride-4 output (``b0`` of ``higherhrnet_*``/``hrnet_*``, or
    the finest declared output).

    ``stage``: 1 trains the detector alone (heatmap loss), 2 trains end to end (grouping losses +
    10 x heatmap loss, the official stage 2). ``dropout`` is the transformer's (official 0.1).
    """

    train_defaults: ClassVar[Mapping[str, Any]] = TRAIN_DEFAULTS

    def __init__(
        self,
        input_shapes: Mapping[str, FeatureShape],
        layout: LayoutSpec,
        *,
        stage: int = 2,
        embed_dim: int = 128,
        num_layers: int = 3,
        dropout: float = 0.1,
        max_people: int = 30,
        init_weights: bool = True,
    ) -> None:
        super().__init__(input_shapes, layout)
        if not input_shapes:
            raise ValueError("CenterGroupHead: the backbone declares no outputs")
        name = "b0" if "b0" in input_shapes else min(input_shapes, key=lambda n: input_shapes[n].stride)
        shape = input_shapes[name]
        if shape.stride != 4:
            raise ValueError(f"CenterGroupHead needs a stride-4 backbone output, {name!r} has stride {shape.stride}")
        if stage not in (1, 2):
            raise ValueError(f"CenterGroupHead: stage must be 1 or 2, got {stage}")
        self.input_name = name
        self.in_channels = shape.channels
        self.stride = 4
        self.stage = stage
        j = layout.num_keypoints
        self.num_joints = j
        self.flip_index = [int(i) for i in layout.flip_index]
        self.keypoints_cfg: ParsingConfig = KEYPOINTS
        self.centres_cfg: ParsingConfig = ParsingConfig(CENTRES.nms_kernel, max_people, CENTRES.min_score, CENTRES.min_top_k)
        self.keypoint_head = HigherResolutionHead(shape.channels, j + 1)
        self.kp_embed_cnn = build_embed_cnn(shape.channels, embed_dim)
        self.person_embed_cnn = build_embed_cnn(shape.channels, embed_dim)
        self.group_model = GroupingModel(j, embed_dim, num_layers, dropout=dropout)
        if init_weights:
            self.init_weights()

    def init_weights(self) -> None:
        """Convolutions N(0, 0.001²) with zero bias and BN 1/0 (mmpose's head init); linear layers
        keep PyTorch's default init, as the official grouping model does."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    # -- pieces
    def detector(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dense outputs of the stride-4 feature ``x``."""
        y0, y1, _ = self.keypoint_head(x)
        k = self.num_joints + 1
        return {
            "heatmaps_0": y0[:, :k],
            "tags_0": y0[:, k:],
            "heatmaps_1": y1,
            "kp_embed": self.kp_embed_cnn(x),
            "person_embed": self.person_embed_cnn(x),
        }

    def heatmaps(self, out: Mapping[str, torch.Tensor], size_hw: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoint (B, J, ·) and centre (B, 1, ·) multi-stage heatmaps, at ``size_hw`` when given."""
        j = self.num_joints
        hm = stage_average(out["heatmaps_0"], out["heatmaps_1"], range(j + 1), size_hw)
        return hm[:, :j], hm[:, j:]

    def nodes(
        self,
        kp_heatmap: torch.Tensor,
        centre_heatmap: torch.Tensor,
        valid_full: torch.Tensor,
        valid_quarter: torch.Tensor,
        kp_embed: Any,
        person_embed: Any,
        weights: Any = None,
    ) -> tuple[Nodes, Candidates, Candidates]:
        """Graph nodes (see :func:`bupose.centergroup.nodes.extract_nodes`)."""
        return extract_nodes(
            kp_heatmap, centre_heatmap, valid_full, valid_quarter, kp_embed, person_embed,
            weights=weights, keypoints=self.keypoints_cfg, centres=self.centres_cfg,
        )

    def group(self, nodes: Nodes) -> GroupPredictions:
        """The grouping model's predictions for every centre slot."""
        return self.group_model(nodes)

    def features(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if self.input_name not in features:
            raise KeyError(f"CenterGroupHead: backbone features lack {self.input_name!r}; got {sorted(features)}")
        return features[self.input_name]

    def forward(self, features: Mapping[str, torch.Tensor], batch: Batch | None = None) -> dict[str, torch.Tensor]:
        x = self.features(features)
        out = self.detector(x)
        if self.training and self.stage == 2:
            out.update(self.train_grouping(out, batch, x.shape[-2:]))
        return out

    def train_grouping(self, out: Mapping[str, torch.Tensor], batch: Batch | None, feat_hw: Any) -> dict[str, torch.Tensor]:
        """Stage-2 training forward: nodes from the (un-flipped) heatmaps at input resolution,
        grouping predictions of every head, batch-first: ``group_loc`` / ``group_hard_loc``
        (B, H, P, J, 2), ``group_vis`` (B, H, P, J), ``group_person`` (B, H, P), plus the centre
        candidates ``centre_xy`` (B, P, 2) and ``centre_keep`` (B, P)."""
        h, w = int(feat_hw[0]) * 4, int(feat_hw[1]) * 4
        b = out["heatmaps_0"].shape[0]
        device = out["heatmaps_0"].device
        if batch is not None and batch.pad_mask is not None:
            valid = (~batch.pad_mask).to(torch.float32)
        else:
            valid = torch.ones((b, h, w), device=device)
        valid_q = F.max_pool2d(valid[:, None], 4, 4)[:, 0] if valid.shape[-2:] == (h, w) else torch.ones((b, h // 4, w // 4), device=device)
        with torch.no_grad():
            kp_hm, c_hm = self.heatmaps({k: v.detach() for k, v in out.items()}, (h, w))
        nodes, _, _ = self.nodes(kp_hm, c_hm, valid, valid_q, out["kp_embed"], out["person_embed"])
        preds = self.group(nodes)
        return {
            "group_loc": preds.loc.transpose(0, 1),
            "group_hard_loc": preds.hard_loc.transpose(0, 1),
            "group_vis": preds.vis.transpose(0, 1),
            "group_person": preds.person.transpose(0, 1),
            "centre_xy": nodes.c_xy,
            "centre_keep": nodes.c_keep.float(),
        }

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """Stage 1: ``heatmap_loss``. Stage 2: ``heatmap_loss`` (x10), ``person_loss``, ``vis_loss``,
        ``loc_loss`` (x0.02), official factors (see :mod:`bupose.centergroup.train`)."""
        from .train import centergroup_losses

        if not isinstance(batch, Batch):
            raise TypeError(f"CenterGroupHead.loss needs a bupose.core.batch.Batch, got {type(batch).__name__}")
        return centergroup_losses(self, outputs, batch)

    def param_group_rules(self) -> list[ParamGroupRule]:
        """Official stage-2 groups: detector (backbone + ``keypoint_head``) at lr x0.1 (1e-5 vs 1e-4)
        with frozen batch norm; embedding CNNs and grouping model at the run's lr. Stage 1 trains
        the detector at the run's lr with batch norm updating."""
        if self.stage == 1:
            return []
        return [
            ParamGroupRule("backbone.", lr_scale=0.1, freeze_bn=True),
            ParamGroupRule("head.keypoint_head.", lr_scale=0.1, freeze_bn=True),
        ]
