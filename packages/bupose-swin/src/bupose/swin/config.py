"""Torch-free Swin presets and their declared outputs (the plugin reads these without torch).

Stage ``i`` (0..3) runs at stride ``patch_size * 2**i`` with ``embed_dim * 2**i`` channels. Outputs
are the stages in ``out_indices`` after their output norm ``norm<i>``, named after detection's C-level
convention: ``c<l>`` at stride ``2**l``. With the default ``out_indices=(1, 2, 3)`` (what GroupPose
uses) they are ``c3``, ``c4``, ``c5`` at strides 8, 16, 32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bupose.core.specs import FeatureShape

__all__ = ["PRESETS", "SIZE_DIVISIBILITY", "SwinConfig", "output_name", "output_shapes", "swin_config"]

SIZE_DIVISIBILITY = 32
"""Input sides that are multiples of 32 reach every stage without patch/merge padding.

Other sizes work too (the network pads internally to the patch size, to even sizes before each
merge and to window multiples in every block; outputs are ceil(size / stride)).
"""


@dataclass(frozen=True)
class SwinConfig:
    """A Swin Transformer: widths, depths, heads and window; the stages it outputs."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int = 4
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.2
    out_indices: tuple[int, ...] = (1, 2, 3)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.depths or any(d < 1 for d in self.depths):
            raise ValueError(f"Swin depths must be positive block counts, got {self.depths!r}")
        if len(self.num_heads) != len(self.depths):
            raise ValueError(
                f"Swin num_heads needs one entry per stage ({len(self.depths)}), got {self.num_heads!r}"
            )
        for i, heads in enumerate(self.num_heads):
            if heads < 1 or self.stage_channels(i) % heads:
                raise ValueError(
                    f"Swin stage {i}: {self.stage_channels(i)} channels are not divisible by {heads} heads"
                )
        if self.window_size < 1 or self.patch_size < 1:
            raise ValueError(
                f"Swin window_size and patch_size must be positive, got {self.window_size}, {self.patch_size}"
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"Swin drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if (
            not self.out_indices
            or sorted(set(self.out_indices)) != list(self.out_indices)
            or not all(0 <= i < len(self.depths) for i in self.out_indices)
        ):
            raise ValueError(
                f"Swin out_indices must be increasing stage indices in 0..{len(self.depths) - 1}, got {self.out_indices!r}"
            )

    def stage_channels(self, i: int) -> int:
        """Channels of stage ``i``."""
        return self.embed_dim * 2**i

    def stage_stride(self, i: int) -> int:
        """Stride of stage ``i`` (input pixels per token)."""
        return self.patch_size * 2**i


PRESETS: dict[str, SwinConfig] = {
    "swin_t": SwinConfig(
        96,
        (2, 2, 6, 2),
        (3, 6, 12, 24),
        7,
        description="Swin-T (window 7; GroupPose Swin-T), c3-c5 192/384/768",
    ),
    "swin_l": SwinConfig(
        192,
        (2, 2, 18, 2),
        (6, 12, 24, 48),
        12,
        description="Swin-L (window 12, the 384 / 22k model; GroupPose Swin-L), c3-c5 384/768/1536",
    ),
}


def swin_config(name: str) -> SwinConfig:
    """The preset called ``name`` (``swin_t``, ``swin_l``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown Swin preset {name!r}; known: {', '.join(PRESETS)}") from None


def output_name(config: SwinConfig, stage: int) -> str:
    """``c<log2(stride)>`` of a stage (stage 1 of a patch-4 Swin is ``c3``)."""
    return f"c{round(math.log2(config.stage_stride(stage)))}"


def output_shapes(config: SwinConfig) -> dict[str, FeatureShape]:
    """Declared outputs (one per ``out_indices`` stage) with channels and strides."""
    return {
        output_name(config, i): FeatureShape(config.stage_channels(i), config.stage_stride(i))
        for i in config.out_indices
    }
