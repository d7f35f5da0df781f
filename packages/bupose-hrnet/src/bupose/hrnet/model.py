"""HRNet (High-Resolution Network) backbones built from a stage specification.

The module tree reproduces the official HRNet one (HRNet/DEKR, cherubicXN/logocap,
HRNet/HigherHRNet, mmpose 0.x), so the module's own ``state_dict`` keys are exactly the official bare
backbone keys (``conv1.weight``, ``layer1.0.conv1.weight``, ``transition1.1.0.0.weight``,
``stage4.2.fuse_layers.3.0.2.0.weight``...) and come in the official order.

Outputs (see :func:`bupose.hrnet.config.output_shapes`): ``b0..b3`` (strides 4/8/16/32) and
``concat`` (stride 4: ``b0`` with ``b1..b3`` resized bilinearly, ``align_corners=False``, the
HRNetV2 representation DEKR and LOGO-CAP feed their heads). A backbone built with
``multi_scale_output=False`` (the HigherHRNet / mmpose layout used by CenterGroup) returns ``b0``
only; the HigherHRNet deconvolution stage belongs to the head.

Inputs of any size work: the cross-resolution fusion upsamples (nearest) to the exact size of the
target branch, which equals the official ``scale_factor`` upsampling whenever the input size is a
multiple of 32 (the official code needs that).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bupose.core.model import Backbone
from bupose.core.specs import FeatureShape

from .config import BLOCK_EXPANSION, HRNetConfig, StageSpec, hrnet_config, output_shapes

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "HRNet",
    "HighResolutionModule",
    "build_hrnet",
    "higherhrnet_w32",
    "higherhrnet_w48",
    "hrnet_w18",
    "hrnet_w18_small",
    "hrnet_w32",
    "hrnet_w48",
]

BN_MOMENTUM = 0.1


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (expansion 1)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 residual block (expansion 4)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _make_blocks(block: str, inplanes: int, planes: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` residual blocks; the first gets a 1x1 projection when channels change."""
    cls = _BLOCKS[block]
    out = planes * cls.expansion
    downsample = None
    if inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, kernel_size=1, bias=False),
            nn.BatchNorm2d(out, momentum=BN_MOMENTUM),
        )
    layers: list[nn.Module] = [cls(inplanes, planes, 1, downsample)]
    layers += [cls(out, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches followed by the all-to-all fusion of their outputs.

    Fusion into branch ``i`` sums, over inputs ``j`` in order: ``x_j`` itself (``j == i``),
    1x1 conv + BN + nearest upsampling (``j > i``), or ``i - j`` stride-2 3x3 conv + BN hops
    (ReLU between hops, none after the last) (``j < i``); then a ReLU. With
    ``multi_scale_output=False`` only branch 0 is fused and returned.
    """

    def __init__(
        self,
        num_branches: int,
        block: str,
        num_blocks: tuple[int, ...],
        in_channels: tuple[int, ...],
        num_channels: tuple[int, ...],
        multi_scale_output: bool = True,
    ) -> None:
        super().__init__()
        self.num_branches = num_branches
        self.multi_scale_output = multi_scale_output
        self.branches = nn.ModuleList(
            _make_blocks(block, in_channels[b], num_channels[b], num_blocks[b]) for b in range(num_branches)
        )
        self.out_channels = tuple(c * BLOCK_EXPANSION[block] for c in num_channels)
        self.fuse_layers = self._make_fuse_layers() if num_branches > 1 else None
        self.relu = nn.ReLU(inplace=False)

    def _make_fuse_layers(self) -> nn.ModuleList:
        chans = self.out_channels
        n_out = self.num_branches if self.multi_scale_output else 1
        fuse = nn.ModuleList()
        for i in range(n_out):
            row = nn.ModuleList()
            for j in range(self.num_branches):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(chans[j], chans[i], kernel_size=1, bias=False),
                            nn.BatchNorm2d(chans[i], momentum=BN_MOMENTUM),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    hops: list[nn.Module] = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        cout = chans[i] if last else chans[j]
                        hop: list[nn.Module] = [
                            _conv3x3(chans[j], cout, stride=2),
                            nn.BatchNorm2d(cout, momentum=BN_MOMENTUM),
                        ]
                        if not last:
                            hop.append(nn.ReLU(inplace=True))
                        hops.append(nn.Sequential(*hop))
                    row.append(nn.Sequential(*hops))
            fuse.append(row)
        return fuse

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(xs) != self.num_branches:
            raise ValueError(f"HighResolutionModule expects {self.num_branches} inputs, got {len(xs)}")
        ys = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return ys
        out: list[torch.Tensor] = []
        for i, row in enumerate(self.fuse_layers):
            size = ys[i].shape[-2:]
            acc: torch.Tensor | None = None
            for j, layer in enumerate(row):
                if j == i:
                    term = ys[j]
                elif j > i:
                    term = F.interpolate(layer(ys[j]), size=size, mode="nearest")
                else:
                    term = layer(ys[j])
                acc = term if acc is None else acc + term
            assert acc is not None
            out.append(self.relu(acc))
        return out


def _make_transition(prev: tuple[int, ...], cur: tuple[int, ...]) -> nn.ModuleList:
    """Adapt the previous stage's outputs to the next stage's inputs.

    Existing branches get a 3x3 conv + BN + ReLU only where channels change (``None`` otherwise);
    the new branch is a chain of stride-2 3x3 conv + BN + ReLU hops from the lowest-resolution one.
    """
    layers = nn.ModuleList()
    for i, c in enumerate(cur):
        if i < len(prev):
            if prev[i] != c:
                layers.append(nn.Sequential(_conv3x3(prev[i], c), nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
            else:
                layers.append(None)
        else:
            hops = []
            for k in range(i + 1 - len(prev)):
                cin = prev[-1]
                cout = c if k == i - len(prev) else cin
                hops.append(
                    nn.Sequential(_conv3x3(cin, cout, stride=2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
                )
            layers.append(nn.Sequential(*hops))
    return layers


class HRNet(Backbone):
    """An HRNet built from an :class:`~bupose.hrnet.config.HRNetConfig`.

    Attribute names follow the official modules: ``conv1, bn1, conv2, bn2, layer1``, then
    ``transition{s-1}`` and ``stage{s}`` for every multi-resolution stage ``s = 2..S``.
    ``init`` picks the initialisation of a fresh model: ``"kaiming"`` (He normal, fan-out, and the
    last BatchNorm of every residual block at zero; for training from scratch) or ``"official"``
    (normal std 0.001 as the official code does before loading ImageNet weights). Other BatchNorms
    start at weight 1, bias 0.
    """

    def __init__(self, config: HRNetConfig, *, init: str = "kaiming") -> None:
        super().__init__()
        self.config = config
        stem = config.stem_channels
        self.conv1 = _conv3x3(3, stem, stride=2)
        self.bn1 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.conv2 = _conv3x3(stem, stem, stride=2)
        self.bn2 = nn.BatchNorm2d(stem, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)

        first = config.stages[0]
        self.layer1 = _make_blocks(first.block, stem, first.num_channels[0], first.num_blocks[0])
        prev = first.out_channels
        self._stage_names: list[tuple[str, str]] = []
        for s, spec in enumerate(config.stages[1:], start=2):
            last = s == len(config.stages)
            setattr(self, f"transition{s - 1}", _make_transition(prev, spec.num_channels))
            stage, prev = self._make_stage(
                spec, spec.num_channels, multi_scale_output=config.multi_scale_output or not last
            )
            setattr(self, f"stage{s}", stage)
            self._stage_names.append((f"transition{s - 1}", f"stage{s}"))
        self._outputs = output_shapes(config)
        self.init_weights(init)

    @staticmethod
    def _make_stage(
        spec: StageSpec, in_channels: tuple[int, ...], *, multi_scale_output: bool
    ) -> tuple[nn.Sequential, tuple[int, ...]]:
        modules = []
        chans = in_channels
        for m in range(spec.num_modules):
            mod = HighResolutionModule(
                spec.num_branches,
                spec.block,
                spec.num_blocks,
                chans,
                spec.num_channels,
                multi_scale_output=multi_scale_output or m < spec.num_modules - 1,
            )
            chans = mod.out_channels
            modules.append(mod)
        return nn.Sequential(*modules), chans

    def init_weights(self, init: str = "kaiming") -> None:
        """Re-initialise every convolution and BatchNorm (``"kaiming"`` or ``"official"``, see the class)."""
        if init not in ("kaiming", "official"):
            raise ValueError(f"HRNet init must be 'kaiming' or 'official', got {init!r}")
        if self.conv1.weight.is_meta:  # shape-only model: nothing to initialise
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if init == "kaiming":
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if init == "kaiming":
            # Residual branches start at zero (the last BN of every block): each block starts as
            # the identity, which keeps a fresh network's activations O(10) instead of O(1e7).
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def output_shape(self) -> dict[str, FeatureShape]:
        """Channels and stride of ``b0..b3`` and ``concat`` (``b0`` only when single-output)."""
        return dict(self._outputs)

    def forward_stages(self, x: torch.Tensor) -> dict[str, Any]:
        """The stem+``layer1`` output and every stage's list of branch outputs, by official name."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        out: dict[str, Any] = {"layer1": x}
        xs = [x]
        for t_name, s_name in self._stage_names:
            transition: nn.ModuleList = getattr(self, t_name)
            inputs = []
            for i, t in enumerate(transition):
                if t is None:
                    inputs.append(xs[i])
                else:
                    inputs.append(t(xs[i] if i < len(xs) else xs[-1]))
            xs = getattr(self, s_name)(inputs)
            out[s_name] = xs
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised images (B,3,H,W) -> ``{"b0".., "concat"}`` (``{"b0"}`` when single-output)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"HRNet expects images shaped (B,3,H,W), got {tuple(x.shape)}")
        branches = self.forward_stages(x)[self._stage_names[-1][1]]
        feats = {f"b{i}": b for i, b in enumerate(branches)}
        if "concat" in self._outputs:
            size = branches[0].shape[-2:]
            ups = [branches[0]] + [
                F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]
            ]
            feats["concat"] = torch.cat(ups, dim=1)
        return feats


def build_hrnet(config: HRNetConfig | str, *, init: str = "kaiming") -> HRNet:
    """An :class:`HRNet` from a config or a preset name (``"hrnet_w32"``...)."""
    if isinstance(config, str):
        config = hrnet_config(config)
    return HRNet(config, init=init)


def hrnet_w18(*, init: str = "kaiming") -> HRNet:
    """HRNet-W18 (branches 18/36/72/144, concat 270)."""
    return build_hrnet("hrnet_w18", init=init)


def hrnet_w18_small(*, init: str = "kaiming") -> HRNet:
    """Small HRNet for CPU demos and training (W18 widths, concat 270)."""
    return build_hrnet("hrnet_w18_small", init=init)


def hrnet_w32(*, init: str = "kaiming") -> HRNet:
    """HRNet-W32 as in DEKR/LOGO-CAP (concat 480)."""
    return build_hrnet("hrnet_w32", init=init)


def hrnet_w48(*, init: str = "kaiming") -> HRNet:
    """HRNet-W48 as in DEKR/LOGO-CAP (concat 720)."""
    return build_hrnet("hrnet_w48", init=init)


def higherhrnet_w32(*, init: str = "kaiming") -> HRNet:
    """HigherHRNet-W32 backbone (mmpose layout, ``b0`` only: 32 ch at stride 4)."""
    return build_hrnet("higherhrnet_w32", init=init)


def higherhrnet_w48(*, init: str = "kaiming") -> HRNet:
    """HigherHRNet-W48 backbone (mmpose layout, ``b0`` only: 48 ch at stride 4)."""
    return build_hrnet("higherhrnet_w48", init=init)
