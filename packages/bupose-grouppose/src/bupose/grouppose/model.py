"""The GroupPose head: input projections, sine positions, the transformer and per-layer heads.

``GroupPoseHead(input_shapes, layout, **kwargs)`` reads the backbone's three outputs at strides 8,
16 and 32 (ResNet ``c3..c5``, Swin ``c3..c5``, any backbone declaring them), projects them to 256
channels (1x1 conv + GroupNorm(32)) and adds a 4th level (3x3 stride-2 conv on the stride-32 map +
GroupNorm). Module names are the official ones without the ``backbone.`` part: ``input_proj.<l>``,
``transformer.*``, ``class_embed.<l>``, ``pose_embed.<l>``.

Output fields (every tensor keeps the batch first):

- ``pred_logits`` (B, Q, 2) and ``pred_keypoints`` (B, Q, 3K) = [x1, y1, ..., xK, yK, v1..vK] of the
  last decoder layer, coordinates normalised to each image's valid (unpadded) area, v ≡ sigmoid(1);
- ``aux_pred_logits`` (B, L-1, Q, 2), ``aux_pred_keypoints`` (B, L-1, Q, 3K): decoder layers 0..L-2;
- ``interm_pred_logits`` (B, Q, 2), ``interm_pred_keypoints`` (B, Q, 2K): the encoder proposals.

The official decoder adds the query position *in place* to its input, which is the previous layer's
stored output: the auxiliary keypoints of layers 0..L-2 are therefore predicted from
``hidden_l + pos_{l+1}`` on the keypoint tokens (``inplace_pos_quirk=True``, the default, reproduces
it; the last layer and every logit are unaffected, so inference is too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bupose.core.batch import Batch
from bupose.core.model import Head, ParamGroupRule
from bupose.core.specs import FeatureShape, LayoutSpec

from .transformer import MLP, DecoderOutput, GroupPoseTransformer, inverse_sigmoid, sine_position_embedding

__all__ = ["FEATURE_STRIDES", "VISIBILITY", "GroupPoseHead", "select_features"]

FEATURE_STRIDES = (8, 16, 32)
"""The backbone strides GroupPose reads (C3, C4, C5)."""

VISIBILITY = 1.0 / (1.0 + math.exp(-1.0))
"""The constant visibility GroupPose outputs for every joint: sigmoid(1) = 0.7311."""


def select_features(input_shapes: Mapping[str, FeatureShape], who: str = "grouppose") -> list[str]:
    """Names of the backbone outputs at strides 8, 16 and 32 (one each), in that order."""
    names = []
    for stride in FEATURE_STRIDES:
        found = sorted(n for n, s in input_shapes.items() if s.stride == stride)
        if len(found) != 1:
            declared = ", ".join(f"{n} (stride {s.stride})" for n, s in input_shapes.items()) or "none"
            raise ValueError(
                f"{who}: the backbone must declare exactly one output at stride {stride} "
                f"(GroupPose reads strides 8/16/32); it declares {declared}"
            )
        names.append(found[0])
    return names


class GroupPoseHead(Head):
    """GroupPose (ICCV 2023) on any backbone with outputs at strides 8/16/32; see the module docstring.

    Keyword arguments (official defaults): ``hidden_dim`` 256, ``num_queries`` 100, ``nheads`` 8,
    ``enc_layers`` / ``dec_layers`` 6, ``dim_feedforward`` 2048, ``dropout`` 0, ``enc_n_points`` /
    ``dec_n_points`` 4, ``inplace_pos_quirk`` True, ``freeze_backbone_bn`` True, ``backbone_lr_scale``
    0.1 (training: the backbone's learning rate relative to the run's); loss settings are the :class:`~bupose.grouppose.
    criterion.SetCriterion` ones (``cls_loss_coef`` 2, ``keypoints_loss_coef`` 10, ``oks_loss_coef`` 4,
    ``interm_loss_coef`` 1, ``focal_alpha`` 0.25, matcher costs 2/10/4).
    """

    augmentation: ClassVar[str] = "bupose.grouppose.augment:DetrAugmentation"
    train_defaults: ClassVar[Mapping[str, Any]] = {
        "optimizer": "adamw",
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "lr_schedule": "multistep",
        "lr_milestones": [50 / 60],
        "lr_factor": 0.1,
    }
    """AdamW lr 1e-4, weight decay 1e-4; the official StepLR (drop x0.1 at epoch 50 of 60) as a
    multistep schedule at 50/60 of the run. Gradient clipping (official 0.1) is the run's
    ``grad_clip`` setting (core has no head default for it)."""
    num_classes: ClassVar[int] = 2

    def __init__(
        self,
        input_shapes: Mapping[str, FeatureShape],
        layout: LayoutSpec,
        *,
        hidden_dim: int = 256,
        num_queries: int = 100,
        nheads: int = 8,
        enc_layers: int = 6,
        dec_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        enc_n_points: int = 4,
        dec_n_points: int = 4,
        inplace_pos_quirk: bool = True,
        freeze_backbone_bn: bool = True,
        backbone_lr_scale: float = 0.1,
        cls_loss_coef: float = 2.0,
        keypoints_loss_coef: float = 10.0,
        oks_loss_coef: float = 4.0,
        interm_loss_coef: float = 1.0,
        focal_alpha: float = 0.25,
        set_cost_class: float = 2.0,
        set_cost_keypoints: float = 10.0,
        set_cost_oks: float = 4.0,
    ) -> None:
        super().__init__(input_shapes, layout)
        if dec_layers < 1 or enc_layers < 0:
            raise ValueError(f"grouppose: dec_layers must be >= 1 and enc_layers >= 0, got {dec_layers}, {enc_layers}")
        if hidden_dim % 32:
            raise ValueError(f"grouppose: hidden_dim must be a multiple of 32 (GroupNorm(32)), got {hidden_dim}")
        self.feature_names = select_features(input_shapes)
        self.num_keypoints = layout.num_keypoints
        self.num_queries = num_queries
        self.hidden_dim = hidden_dim
        self.inplace_pos_quirk = bool(inplace_pos_quirk)
        self.freeze_backbone_bn = bool(freeze_backbone_bn)
        if not backbone_lr_scale >= 0:
            raise ValueError(f"grouppose: backbone_lr_scale must be >= 0, got {backbone_lr_scale}")
        self.backbone_lr_scale = float(backbone_lr_scale)
        chans = [input_shapes[n].channels for n in self.feature_names]
        projs: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=1), nn.GroupNorm(32, hidden_dim)) for c in chans
        ]
        projs.append(
            nn.Sequential(
                nn.Conv2d(chans[-1], hidden_dim, kernel_size=3, stride=2, padding=1), nn.GroupNorm(32, hidden_dim)
            )
        )
        self.input_proj = nn.ModuleList(projs)
        self.transformer = GroupPoseTransformer(
            self.num_keypoints,
            d_model=hidden_dim,
            nhead=nheads,
            num_queries=num_queries,
            num_encoder_layers=enc_layers,
            num_decoder_layers=dec_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            num_feature_levels=4,
            enc_n_points=enc_n_points,
            dec_n_points=dec_n_points,
            num_classes=self.num_classes,
        )
        self.class_embed = nn.ModuleList(nn.Linear(hidden_dim, self.num_classes) for _ in range(dec_layers))
        self.pose_embed = nn.ModuleList(MLP(hidden_dim, hidden_dim, 2, 3) for _ in range(dec_layers))
        self._init_heads()
        from .criterion import SetCriterion

        self.criterion = SetCriterion(
            layout,
            cls_loss_coef=cls_loss_coef,
            keypoints_loss_coef=keypoints_loss_coef,
            oks_loss_coef=oks_loss_coef,
            interm_loss_coef=interm_loss_coef,
            focal_alpha=focal_alpha,
            set_cost_class=set_cost_class,
            set_cost_keypoints=set_cost_keypoints,
            set_cost_oks=set_cost_oks,
        )

    def _init_heads(self) -> None:
        if self.class_embed[0].weight.is_meta:
            return
        prior = -math.log((1 - 0.01) / 0.01)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        for cls in self.class_embed:
            nn.init.constant_(cls.bias, prior)
        for mlp in self.pose_embed:
            nn.init.constant_(mlp.layers[-1].weight, 0)
            nn.init.constant_(mlp.layers[-1].bias, 0)

    def param_group_rules(self) -> list[ParamGroupRule]:
        """The backbone at lr x ``backbone_lr_scale`` (official 0.1: 1e-5 for lr 1e-4) with its batch
        norms frozen (GroupPose's FrozenBatchNorm2d) unless ``freeze_backbone_bn=False`` (a backbone
        trained from scratch has no statistics worth freezing)."""
        return [ParamGroupRule("backbone.", lr_scale=self.backbone_lr_scale, freeze_bn=self.freeze_backbone_bn)]

    def _levels(
        self, features: Mapping[str, torch.Tensor], batch: Batch | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        missing = [n for n in self.feature_names if n not in features]
        if missing:
            raise KeyError(f"grouppose: backbone features lack {missing}; got {sorted(features)}")
        maps = [features[n] for n in self.feature_names]
        b = maps[0].shape[0]
        pad = batch.pad_mask if batch is not None else None
        if pad is None:
            hw = batch.images.shape[-2:] if batch is not None else (maps[0].shape[-2] * 8, maps[0].shape[-1] * 8)
            pad = torch.zeros((b, *hw), dtype=torch.bool, device=maps[0].device)
        pad = pad.to(maps[0].device)
        srcs, masks, pos = [], [], []
        for lvl in range(4):
            src = self.input_proj[lvl](maps[lvl] if lvl < 3 else maps[-1])
            mask = F.interpolate(pad[None].float(), size=src.shape[-2:]).to(torch.bool)[0]
            srcs.append(src)
            masks.append(mask)
            pos.append(sine_position_embedding(mask, self.hidden_dim // 2).to(src.dtype))
        return srcs, masks, pos

    def run(self, features: Mapping[str, torch.Tensor], batch: Batch | None = None) -> DecoderOutput:
        """The transformer's raw result (hidden states, positions, reference points, selection)."""
        srcs, masks, pos = self._levels(features, batch)
        return self.transformer(srcs, masks, pos, self.pose_embed)

    def layer_outputs(self, dec: DecoderOutput) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(logits (B, Q, 2), keypoints (B, Q, K, 2)) of every decoder layer, the in-place position
        quirk applied to layers 0..L-2 when ``inplace_pos_quirk``."""
        outs = []
        n = len(dec.hidden)
        for lid, hs in enumerate(dec.hidden):
            kp_tokens = hs[:, :, 1:]
            if self.inplace_pos_quirk and lid + 1 < n:
                kp_tokens = kp_tokens + dec.positions[lid + 1]
            logits = self.class_embed[lid](hs[:, :, 0])
            kp = (inverse_sigmoid(dec.references[lid][:, :, 1:]) + self.pose_embed[lid](kp_tokens)).sigmoid()
            outs.append((logits, kp))
        return outs

    def _full_keypoints(self, kp: torch.Tensor) -> torch.Tensor:
        """(B, Q, K, 2) -> (B, Q, 3K) official layout [x1, y1, ..., xK, yK, v1..vK]."""
        vis = torch.full(kp.shape[:-1], VISIBILITY, dtype=kp.dtype, device=kp.device)
        return torch.cat([kp.flatten(-2), vis], -1)

    def forward(self, features: Mapping[str, torch.Tensor], batch: Batch | None = None) -> dict[str, torch.Tensor]:
        dec = self.run(features, batch)
        layers = self.layer_outputs(dec)
        logits, kp = layers[-1]
        out = {
            "pred_logits": logits,
            "pred_keypoints": self._full_keypoints(kp),
            "interm_pred_logits": dec.interm_logits,
            "interm_pred_keypoints": dec.interm_keypoints.flatten(-2),
        }
        if len(layers) > 1:
            out["aux_pred_logits"] = torch.stack([lg for lg, _ in layers[:-1]], 1)
            out["aux_pred_keypoints"] = torch.stack([self._full_keypoints(k) for _, k in layers[:-1]], 1)
        return out

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """The weighted SetCriterion terms (final, auxiliary and encoder outputs) against the batch's
        instances (``keypoints`` (N, K, 3) normalised, ``areas`` (N,) normalised)."""
        return self.criterion.weighted(outputs, self.criterion.targets_from_batch(batch))
