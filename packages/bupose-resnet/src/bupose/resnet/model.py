"""ResNet backbones whose module tree is torchvision's (so its ``state_dict`` keys are too).

Keys: ``conv1``, ``bn1``, ``layer1..layer4`` of ``BasicBlock`` (``conv1, bn1, conv2, bn2``) or
``Bottleneck`` (``conv1..conv3, bn1..bn3``) blocks, the first block of a layer carrying
``downsample.0`` (1x1 conv) and ``downsample.1`` (norm). The stride sits on the 3x3 convolution of a
bottleneck (torchvision's "ResNet v1.5"). There is no ``fc``: the backbone ends at ``layer4``.

Options:

- ``norm="frozen_bn"``: every norm is a :class:`FrozenBatchNorm2d` (GroupPose / DETR): ``weight``,
  ``bias``, ``running_mean``, ``running_var`` are buffers, there is no ``num_batches_tracked``.
- ``frozen_stages=k``: the stem (``k >= 0``) and ``layer1..layer<k>`` get ``requires_grad=False`` and
  their BatchNorms stay in eval mode under ``train()``. GroupPose's R-50 is
  ``norm="frozen_bn", frozen_stages=1`` (stem + layer1 frozen, layer2-4 trained).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from bupose.core.model import Backbone
from bupose.core.specs import FeatureShape

from .config import NORMS, OUTPUT_NAMES, SIZE_DIVISIBILITY, ResNetConfig, output_shapes, resnet_config

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "FrozenBatchNorm2d",
    "ResNet",
    "build_resnet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters, all four stored as buffers.

    ``y = x * scale + shift`` with ``scale = weight * rsqrt(running_var + eps)`` and
    ``shift = bias - running_mean * scale`` (eps 1e-5), in the input's dtype. No
    ``num_batches_tracked``. A fresh module is the identity (weight 1, bias 0, mean 0, var 1).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.to(x.dtype).view(1, -1, 1, 1) + shift.to(x.dtype).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "bn" else FrozenBatchNorm2d(channels)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (expansion 1)."""

    expansion: ClassVar[int] = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, norm: str
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = _norm(norm, planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = _norm(norm, planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)

    def last_norm(self) -> nn.Module:
        """The norm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 residual block (expansion 4)."""

    expansion: ClassVar[int] = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None, norm: str
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = _norm(norm, planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = _norm(norm, planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = _norm(norm, planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)

    def last_norm(self) -> nn.Module:
        """The norm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn3


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(Backbone):
    """A ResNet built from a :class:`~bupose.resnet.config.ResNetConfig`; outputs ``c2..c5``.

    ``norm``: ``"bn"`` (default, trainable BatchNorm) or ``"frozen_bn"``. ``frozen_stages``: -1
    (default, nothing frozen), 0 (the stem: ``conv1``, ``bn1``) or k in 1..4 (the stem and
    ``layer1..layer<k>``). ``zero_init_residual`` (default True) starts the last BatchNorm of every
    block at weight 0 so each block begins as the identity; it applies to trainable BatchNorm only
    (a frozen norm at 0 would switch the branch off for good). Other initialisation: He normal
    (fan-out) convolutions, norms at the identity.

    ``size_divisibility`` is 1: any input size works, and each output is ceil(size / stride).
    """

    size_divisibility: ClassVar[int] = SIZE_DIVISIBILITY

    def __init__(
        self,
        config: ResNetConfig,
        *,
        norm: str = "bn",
        frozen_stages: int = -1,
        zero_init_residual: bool = True,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"ResNet norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= 4:
            raise ValueError(
                f"ResNet frozen_stages must be an integer in -1..4 (-1 none, 0 stem, k stem+layer1..k), "
                f"got {frozen_stages!r}"
            )
        self.config = config
        self.norm = norm
        self.frozen_stages = frozen_stages
        block = _BLOCKS[config.block]
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = _norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), config.layers), start=1):
            stride = 1 if i == 1 else 2
            layer, inplanes = self._make_layer(block, inplanes, planes, blocks, stride, norm)
            setattr(self, f"layer{i}", layer)
        self._outputs = output_shapes(config)
        self._init_weights(zero_init_residual)
        self._freeze()
        self.train(True)  # frozen stages' BatchNorms start (and stay) in eval mode

    @staticmethod
    def _make_layer(
        block: type[BasicBlock] | type[Bottleneck],
        inplanes: int,
        planes: int,
        blocks: int,
        stride: int,
        norm: str,
    ) -> tuple[nn.Sequential, int]:
        out = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = nn.Sequential(_conv1x1(inplanes, out, stride), _norm(norm, out))
        modules: list[nn.Module] = [block(inplanes, planes, stride, downsample, norm)]
        modules += [block(out, planes, 1, None, norm) for _ in range(1, blocks)]
        return nn.Sequential(*modules), out

    def _init_weights(self, zero_init_residual: bool) -> None:
        if self.conv1.weight.is_meta:  # shape-only model: nothing to initialise
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual and self.norm == "bn":
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.last_norm().weight)  # type: ignore[arg-type]

    def frozen_modules(self) -> list[nn.Module]:
        """The stem and layers that ``frozen_stages`` freezes, in forward order."""
        if self.frozen_stages < 0:
            return []
        mods: list[nn.Module] = [self.conv1, self.bn1]
        mods += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        return mods

    def _freeze(self) -> None:
        for m in self.frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        """Set train/eval mode; BatchNorms of frozen stages always stay in eval mode."""
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self

    def output_shape(self) -> dict[str, FeatureShape]:
        """``c2..c5``: channels of ``layer1..layer4`` at strides 4, 8, 16, 32."""
        return dict(self._outputs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (B, 3, H, W) -> ``{"c2": ..., "c3": ..., "c4": ..., "c5": ...}``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(OUTPUT_NAMES, start=1):
            x = getattr(self, f"layer{i}")(x)
            out[name] = x
        return out


def build_resnet(config: ResNetConfig | str, **kwargs: Any) -> ResNet:
    """A :class:`ResNet` from a config or a preset name (``kwargs``: ``norm``, ``frozen_stages``...)."""
    if isinstance(config, str):
        config = resnet_config(config)
    return ResNet(config, **kwargs)


def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (BasicBlock 2-2-2-2)."""
    return build_resnet("resnet18", **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (BasicBlock 3-4-6-3)."""
    return build_resnet("resnet34", **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (Bottleneck 3-4-6-3); GroupPose's R-50 is ``norm="frozen_bn", frozen_stages=1``."""
    return build_resnet("resnet50", **kwargs)


def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 (Bottleneck 3-4-23-3)."""
    return build_resnet("resnet101", **kwargs)
