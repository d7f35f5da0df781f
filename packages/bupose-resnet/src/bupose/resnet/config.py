"""Torch-free ResNet presets and their declared outputs (the plugin reads these without torch).

Outputs are named after detection's C2..C5 convention: ``c<l>`` is the output of ``layer<l-1>`` at
stride ``2**l`` (4, 8, 16, 32).
"""

from __future__ import annotations

from dataclasses import dataclass

from bupose.core.specs import FeatureShape

__all__ = [
    "BLOCK_EXPANSION",
    "NORMS",
    "OUTPUT_NAMES",
    "PRESETS",
    "SIZE_DIVISIBILITY",
    "ResNetConfig",
    "output_shapes",
    "resnet_config",
]

BLOCK_EXPANSION: dict[str, int] = {"basic": 1, "bottleneck": 4}
"""Output channels of a block = planes x expansion."""

NORMS: tuple[str, ...] = ("bn", "frozen_bn")
"""``bn``: trainable ``nn.BatchNorm2d``; ``frozen_bn``: :class:`~bupose.resnet.model.FrozenBatchNorm2d`."""

OUTPUT_NAMES: tuple[str, ...] = ("c2", "c3", "c4", "c5")
"""Outputs of ``layer1..layer4`` (strides 4, 8, 16, 32)."""

SIZE_DIVISIBILITY = 1  # core's rule: 1 = any input size works
"""ResNet needs no input divisibility: any size works and every output is ceil(size / stride).

A side that is a multiple of 32 gives exactly size / stride at every output.
"""


@dataclass(frozen=True)
class ResNetConfig:
    """A torchvision-style ResNet: block type and number of blocks in ``layer1..layer4``."""

    block: str
    layers: tuple[int, int, int, int]
    description: str = ""

    def __post_init__(self) -> None:
        if self.block not in BLOCK_EXPANSION:
            raise ValueError(f"ResNet block must be one of {sorted(BLOCK_EXPANSION)}, got {self.block!r}")
        if len(self.layers) != 4 or any(int(n) < 1 for n in self.layers):
            raise ValueError(f"ResNet layers must be 4 positive block counts, got {self.layers!r}")

    @property
    def expansion(self) -> int:
        """Channel expansion of the block type (1 basic, 4 bottleneck)."""
        return BLOCK_EXPANSION[self.block]

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Output channels of ``layer1..layer4``."""
        e = self.expansion
        return (64 * e, 128 * e, 256 * e, 512 * e)


PRESETS: dict[str, ResNetConfig] = {
    "resnet18": ResNetConfig("basic", (2, 2, 2, 2), "ResNet-18 (torchvision layout), C2-C5 64/128/256/512"),
    "resnet34": ResNetConfig("basic", (3, 4, 6, 3), "ResNet-34 (torchvision layout), C2-C5 64/128/256/512"),
    "resnet50": ResNetConfig(
        "bottleneck", (3, 4, 6, 3), "ResNet-50 (torchvision layout, GroupPose R-50), C2-C5 256/512/1024/2048"
    ),
    "resnet101": ResNetConfig(
        "bottleneck", (3, 4, 23, 3), "ResNet-101 (torchvision layout), C2-C5 256/512/1024/2048"
    ),
}


def resnet_config(name: str) -> ResNetConfig:
    """The preset called ``name`` (``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown ResNet preset {name!r}; known: {', '.join(PRESETS)}") from None


def output_shapes(config: ResNetConfig) -> dict[str, FeatureShape]:
    """Declared outputs ``c2..c5`` with channels and strides."""
    return {
        name: FeatureShape(channels, 2 ** (i + 2))
        for i, (name, channels) in enumerate(zip(OUTPUT_NAMES, config.channels))
    }
