"""Stage specifications of the HRNet family and the registered presets.

Pure data (no torch): the plugin module reads the presets to declare every backbone's outputs
without importing any model code.

An HRNet is a stem (two 3x3 stride-2 convolutions, ``stem_channels`` wide), stage 1 (one branch of
residual blocks, the official ``layer1``) and stages 2..S, each a sequence of multi-resolution
modules; stage ``s`` has one branch more than stage ``s-1``, the new branch at half the resolution of
the previous lowest one. The spelling follows the official configs (``NUM_MODULES``,
``NUM_BRANCHES``, ``BLOCK``, ``NUM_BLOCKS``, ``NUM_CHANNELS``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bupose.core.specs import FeatureShape

__all__ = [
    "BLOCK_EXPANSION",
    "PRESETS",
    "HRNetConfig",
    "StageSpec",
    "hrnet_config",
    "output_shapes",
]

BLOCK_EXPANSION: dict[str, int] = {"basic": 1, "bottleneck": 4}
"""Output channels of a residual block = planes x expansion."""

STEM_STRIDE = 4


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``num_modules`` modules of ``num_branches`` branches of ``block`` residual blocks.

    ``num_blocks[b]`` and ``num_channels[b]`` (the block planes) are per branch.
    """

    num_modules: int
    num_branches: int
    block: str
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.block not in BLOCK_EXPANSION:
            raise ValueError(f"StageSpec.block must be one of {sorted(BLOCK_EXPANSION)}, got {self.block!r}")
        if self.num_modules < 1 or self.num_branches < 1:
            raise ValueError(f"StageSpec needs num_modules >= 1 and num_branches >= 1, got {self}")
        if len(self.num_blocks) != self.num_branches or len(self.num_channels) != self.num_branches:
            raise ValueError(
                f"StageSpec: num_blocks {self.num_blocks} and num_channels {self.num_channels} "
                f"need one entry per branch ({self.num_branches})"
            )
        if min(self.num_blocks) < 1 or min(self.num_channels) < 1:
            raise ValueError(f"StageSpec: block counts and channels must be positive, got {self}")

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of every branch output (planes x block expansion)."""
        return tuple(c * BLOCK_EXPANSION[self.block] for c in self.num_channels)


@dataclass(frozen=True)
class HRNetConfig:
    """A whole HRNet: stem width, stage 1 (``layer1``) and the multi-resolution stages.

    ``multi_scale_output=False`` builds the last module of the last stage with branch 0 only (the
    HigherHRNet / mmpose layout: no ``fuse_layers.{1..}`` in that module, only ``b0`` returned).
    """

    stages: tuple[StageSpec, ...]
    stem_channels: int = 64
    multi_scale_output: bool = True
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if len(self.stages) < 2:
            raise ValueError("HRNetConfig needs stage 1 and at least one multi-resolution stage")
        first = self.stages[0]
        if first.num_modules != 1 or first.num_branches != 1:
            raise ValueError(f"HRNetConfig: stage 1 is one module with one branch, got {first}")
        for s, (prev, cur) in enumerate(zip(self.stages[:-1], self.stages[1:]), start=2):
            if cur.num_branches != prev.num_branches + 1:
                raise ValueError(
                    f"HRNetConfig: stage {s} must add exactly one branch "
                    f"({prev.num_branches} -> {cur.num_branches})"
                )

    @property
    def num_branches(self) -> int:
        """Branches of the last stage."""
        return self.stages[-1].num_branches

    @property
    def branch_channels(self) -> tuple[int, ...]:
        """Channels of every branch output of the last stage."""
        return self.stages[-1].out_channels


def output_shapes(config: HRNetConfig) -> dict[str, FeatureShape]:
    """Every output of a backbone built from ``config``: ``b0..b{n-1}`` and ``concat``.

    With ``multi_scale_output=False`` only ``b0`` exists.
    """
    chans = config.branch_channels
    if not config.multi_scale_output:
        return {"b0": FeatureShape(chans[0], STEM_STRIDE)}
    out = {f"b{i}": FeatureShape(c, STEM_STRIDE * 2**i) for i, c in enumerate(chans)}
    out["concat"] = FeatureShape(sum(chans), STEM_STRIDE)
    return out


def _standard(width: int, *, multi_scale_output: bool, description: str) -> HRNetConfig:
    """The topology every official pose config uses (stage modules 1/4/3, 4 blocks per branch)."""
    w = width
    return HRNetConfig(
        stages=(
            StageSpec(1, 1, "bottleneck", (4,), (64,)),
            StageSpec(1, 2, "basic", (4, 4), (w, 2 * w)),
            StageSpec(4, 3, "basic", (4, 4, 4), (w, 2 * w, 4 * w)),
            StageSpec(3, 4, "basic", (4, 4, 4, 4), (w, 2 * w, 4 * w, 8 * w)),
        ),
        multi_scale_output=multi_scale_output,
        description=description,
    )


PRESETS: dict[str, HRNetConfig] = {
    "hrnet_w18": _standard(
        18, multi_scale_output=True, description="HRNet-W18 (18/36/72/144 ch), stride-4 concat 270 ch"
    ),
    "hrnet_w32": _standard(
        32,
        multi_scale_output=True,
        description="HRNet-W32 as in DEKR/LOGO-CAP (32/64/128/256 ch), stride-4 concat 480 ch",
    ),
    "hrnet_w48": _standard(
        48,
        multi_scale_output=True,
        description="HRNet-W48 as in DEKR/LOGO-CAP (48/96/192/384 ch), stride-4 concat 720 ch",
    ),
    "hrnet_w18_small": HRNetConfig(
        stages=(
            StageSpec(1, 1, "bottleneck", (1,), (32,)),
            StageSpec(1, 2, "basic", (2, 2), (18, 36)),
            StageSpec(1, 3, "basic", (2, 2, 2), (18, 36, 72)),
            StageSpec(1, 4, "basic", (2, 2, 2, 2), (18, 36, 72, 144)),
        ),
        multi_scale_output=True,
        description=(
            "small HRNet for CPU demos/training (W18 widths, 1 module per stage, 2 blocks per branch, "
            "1-block 32-plane stage 1), stride-4 concat 270 ch"
        ),
    ),
    "higherhrnet_w32": _standard(
        32,
        multi_scale_output=False,
        description="HigherHRNet-W32 backbone (mmpose/CenterGroup layout): branch 0 only, 32 ch at stride 4",
    ),
    "higherhrnet_w48": _standard(
        48,
        multi_scale_output=False,
        description="HigherHRNet-W48 backbone (mmpose/CenterGroup layout): branch 0 only, 48 ch at stride 4",
    ),
}
"""Registered backbone name -> its configuration."""


def hrnet_config(name: str) -> HRNetConfig:
    """The preset called ``name``; a clear error listing the presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown HRNet preset {name!r}; presets: {', '.join(sorted(PRESETS))}") from None
