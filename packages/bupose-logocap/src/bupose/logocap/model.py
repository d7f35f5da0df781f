"""The LOGO-CAP head: dense heatmap/offset/embedding heads and the KAM network ``joints_mlp``.

Module and parameter names follow the official ``logocap.models.model.Model`` head exactly, so a
bupose :class:`~bupose.core.model.PoseModel` state_dict is ``backbone.<bare HRNet key>`` +
``head.<official head key>`` (the official file stores ``backbone.<bare key>`` + ``<head key>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bupose.core.batch import Batch
from bupose.core.model import ConcatInput, Head
from bupose.core.specs import FeatureShape, LayoutSpec

__all__ = [
    "BN_MOMENTUM",
    "AttentionWeights",
    "AttnBatchNorm2d",
    "HSigmoid",
    "LogoCapHead",
    "build_joints_mlp",
]

BN_MOMENTUM = 0.1
KAM_CHANNELS = (512, 256, 128)
"""``MODEL.CONV_MSG_PASSING.DIM_CONVOLUTION`` of the official configs."""
KAM_USE_AN = (False, True, False)
"""Which KAM conv is followed by :class:`AttnBatchNorm2d` (``USE_AN``)."""
AN_NUM_AFFINE = 20
TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "lr_schedule": "multistep",
    "lr_milestones": (90 / 140, 120 / 140),
    "lr_factor": 0.1,
}
"""The official schedule: Adam lr 1e-3, MultiStepLR at epochs [90, 120] of 140, x0.1 (milestones
as fractions of the run, as the engine reads them)."""


class HSigmoid(nn.Module):
    """Hard sigmoid ``relu6(x + 3) / 6``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


class AttentionWeights(nn.Module):
    """Mixture weights of :class:`AttnBatchNorm2d`: HSigmoid(conv1x1(mean·rsqrt(var + eps))).

    The statistic is the per-channel spatial mean times the reciprocal standard deviation, with the
    unbiased variance (``torch.var_mean`` over H, W). ``attention`` holds [conv1x1 (no bias),
    Identity, HSigmoid] so the only parameter key is ``attention.0.weight``. Returns (N, K).
    """

    def __init__(self, num_channels: int, num_affine: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.attention = nn.Sequential(
            nn.Conv2d(num_channels, num_affine, 1, bias=False), nn.Identity(), HSigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True)
        stat = mean * torch.rsqrt(var + self.eps)
        return self.attention(stat).flatten(1)


class AttnBatchNorm2d(nn.BatchNorm2d):
    """Attentive normalisation: BatchNorm2d without affine, then a per-sample affine that is an
    attention-weighted mixture of ``num_affine`` (weight, bias) pairs.

    Parameters ``weight_`` / ``bias_`` are (K, C); ``attn_weights`` computes the (N, K) mixture
    weights from the input (see :class:`AttentionWeights`). Output =
    ``(a @ weight_)·BN(x) + a @ bias_`` per channel.
    """

    def __init__(
        self, num_features: int, num_affine: int = AN_NUM_AFFINE, eps: float = 1e-5,
        momentum: float = BN_MOMENTUM,
    ) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.num_affine = num_affine
        self.weight_ = nn.Parameter(torch.empty(num_affine, num_features))
        self.bias_ = nn.Parameter(torch.empty(num_affine, num_features))
        self.attn_weights = AttentionWeights(num_features, num_affine)
        self.reset_affine()

    def reset_affine(self) -> None:
        """Mixture weights start at 1 + N(0, 0.1²), mixture biases at N(0, 0.1²)."""
        with torch.no_grad():
            self.weight_.normal_(1.0, 0.1)
            self.bias_.normal_(0.0, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        attn = self.attn_weights(x)  # (N, K)
        weight = (attn @ self.weight_)[:, :, None, None]
        bias = (attn @ self.bias_)[:, :, None, None]
        return weight * out + bias


def build_joints_mlp(
    num_joints: int,
    embedding_dim: int = 64,
    channels: tuple[int, ...] = KAM_CHANNELS,
    use_an: tuple[bool, ...] = KAM_USE_AN,
    num_affine: int = AN_NUM_AFFINE,
) -> nn.Sequential:
    """The KAM network: per layer conv3x3 (no bias), BN or AttnBatchNorm2d, ReLU; then conv1x1 to
    ``num_joints`` maps with bias. Input (N, J·D, 11, 11) joint-major, output (N, J, 11, 11)."""
    if len(channels) != len(use_an):
        raise ValueError(f"joints_mlp: {len(channels)} conv widths but {len(use_an)} USE_AN flags")
    layers: list[nn.Module] = []
    cin = num_joints * embedding_dim
    for cout, an in zip(channels, use_an):
        layers.append(nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
        layers.append(AttnBatchNorm2d(cout, num_affine) if an else nn.BatchNorm2d(cout, momentum=BN_MOMENTUM))
        layers.append(nn.ReLU(inplace=True))
        cin = cout
    layers.append(nn.Conv2d(cin, num_joints, 1, 1, 0, bias=True))
    return nn.Sequential(*layers)


def _transition(inplanes: int, outplanes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, 1, 1, 0, bias=False),
        nn.BatchNorm2d(outplanes, momentum=BN_MOMENTUM),
        nn.ReLU(inplace=True),
    )


class LogoCapHead(Head):
    """LOGO-CAP head.

    Outputs of :meth:`forward`: ``heatmap`` (B, J+1, h, w) with the person centre LAST, ``offset``
    (B, 2J, h, w) laid out (x0, y0, x1, y1, ...) as pixel − keypoint in output pixels, and
    ``embedding`` (B, D, h, w), the features the KAM network reads. :attr:`joints_mlp` is the KAM
    network (run by the decoder on sampled embeddings, see :meth:`kam`).

    Reads the backbone output ``concat`` when declared (HRNet's stride-4 concatenation), otherwise
    concatenates every declared output at the finest stride. ``heatmap_channels`` defaults to the
    official width rule (HRNet's concat is 15x its base width: W32 -> 32, W48 -> 48; other
    backbones 32).

    Training: core's default augmentation (the official random affine + flip), Adam 1e-3
    (:data:`TRAIN_DEFAULTS`), and :meth:`loss` with the four LOGO-CAP terms.
    """

    train_defaults: ClassVar[Mapping[str, Any]] = TRAIN_DEFAULTS

    def __init__(
        self,
        input_shapes: Mapping[str, FeatureShape],
        layout: LayoutSpec,
        *,
        heatmap_channels: int | None = None,
        offset_channels: int = 256,
        embedding_dim: int = 64,
        kam_channels: tuple[int, ...] = KAM_CHANNELS,
        kam_use_an: tuple[bool, ...] = KAM_USE_AN,
        num_affine: int = AN_NUM_AFFINE,
        init_weights: bool = True,
    ) -> None:
        super().__init__(input_shapes, layout)
        self._input = ConcatInput(input_shapes, "LogoCapHead")
        self.input_names = self._input.names
        in_channels = self._input.channels
        self.stride = self._input.stride
        if heatmap_channels is None:
            heatmap_channels = in_channels // 15 if in_channels % 15 == 0 else 32
        j = layout.num_keypoints
        self.num_joints = j
        self.in_channels = in_channels
        self.heatmap_channels = heatmap_channels
        self.embedding_dim = embedding_dim

        self.transition_cls = _transition(in_channels, heatmap_channels)
        self.transition_reg = _transition(in_channels, offset_channels)
        self.final_layer_cls = nn.Conv2d(heatmap_channels, j + 1, 1, 1, 0)
        self.final_layer_reg = nn.Conv2d(offset_channels, 2 * j, 1, 1, 0)
        self.transition_embedding = _transition(in_channels, embedding_dim)
        self.joints_mlp = build_joints_mlp(j, embedding_dim, tuple(kam_channels), tuple(kam_use_an), num_affine)
        if init_weights:
            self.init_weights()

    def init_weights(self) -> None:
        """Training-time init: convs N(0, 0.001²) with zero bias, BN 1/0, attentive-norm mixtures
        as :meth:`AttnBatchNorm2d.reset_affine`."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, AttnBatchNorm2d):
                m.reset_affine()
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def features(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The single feature map the head reads (``concat`` or the finest-stride concatenation)."""
        return self._input(features)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dense outputs for an already-concatenated feature map (B, in_channels, h, w)."""
        return {
            "heatmap": self.final_layer_cls(self.transition_cls(x)),
            "offset": self.final_layer_reg(self.transition_reg(x)),
            "embedding": self.transition_embedding(x),
        }

    def forward(self, features: Mapping[str, torch.Tensor], batch: Batch | None = None) -> dict[str, torch.Tensor]:
        return self.forward_features(self.features(features))

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
        """``heatmap_loss``, ``offset_loss``, ``kam_loss``, ``refine_loss`` (official factors 1.0,
        0.01, 0.01, 1.0): dense terms against ``batch.targets`` (from
        :class:`~bupose.logocap.codec.LogoCapCodec`), pose-pool terms against ``batch.instances``
        (``keypoints`` in input pixels, ``areas``); see :mod:`bupose.logocap.train`."""
        from .train import logocap_losses

        if not isinstance(batch, Batch):
            raise TypeError(
                f"LogoCapHead.loss needs a bupose.core.batch.Batch (dense targets and instances), got {type(batch).__name__}"
            )
        h, w = batch.images.shape[-2:]
        instances = batch.instances or [{} for _ in range(len(batch))]
        return logocap_losses(self, outputs, batch.targets, instances, (int(h), int(w)))

    def export_parts(self) -> dict[str, torch.Tensor]:
        """The KAM network (``joints_mlp``) runs during decoding on per-person samples: exported as its
        own graph, (N, J·D, 11, 11) -> (N, J, 11, 11)."""
        return {"joints_mlp": torch.randn(2, self.num_joints * self.embedding_dim, 11, 11)}

    def kam(self, sampled: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """KAM maps (N, J, k, k) from joint-major sampled embeddings (N, J·D, k, k), clamped to
        [0, 1] as the official inference does unless ``clamp`` is False."""
        expected = self.num_joints * self.embedding_dim
        if sampled.ndim != 4 or sampled.shape[1] != expected:
            raise ValueError(
                f"LogoCapHead.kam: expected (N, {expected}, k, k) sampled embeddings, got {tuple(sampled.shape)}"
            )
        out = self.joints_mlp(sampled)
        return out.clamp(0.0, 1.0) if clamp else out
