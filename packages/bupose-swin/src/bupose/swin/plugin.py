"""The bupose plugin of bupose-swin: Swin backbones and the original ImageNet weights specs.

Imports no torch: outputs are declared from the torch-free presets in :mod:`bupose.swin.config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from bupose.core import BackboneSpec, WeightsSpec, hookimpl

from .config import PRESETS, SIZE_DIVISIBILITY, output_shapes

_RELEASES = "https://github.com/SwinTransformer/storage/releases/download/v1.0.0"


def _spec_extras() -> dict[str, Any]:
    """``size_divisibility`` for core versions whose BackboneSpec has that field."""
    names = {f.name for f in dataclasses.fields(BackboneSpec)}
    return {"size_divisibility": SIZE_DIVISIBILITY} if "size_divisibility" in names else {}


@hookimpl
def bupose_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    """``swin_t`` and ``swin_l`` (outputs ``c3``, ``c4``, ``c5`` at strides 8, 16, 32)."""
    for name, config in PRESETS.items():
        register(
            BackboneSpec(
                name=name,
                factory=f"bupose.swin.model:{name}",
                summary=config.description,
                outputs=output_shapes(config),
                **_spec_extras(),
            )
        )


@hookimpl
def bupose_register_weights(register: Callable[[WeightsSpec], None]) -> None:
    """The original Swin ImageNet files GroupPose starts from (classifier dropped on conversion)."""
    register(
        WeightsSpec(
            name="swin_t_imagenet",
            factory="bupose.swin.pretrained:IMAGENET_SWIN_T",
            summary="Swin-T ImageNet-1k, 224, window 7 (MIT; init of GroupPose Swin-T)",
            backbone="swin_t",
            file_names=("swin_tiny_patch4_window7_224.pth",),
            source=f"{_RELEASES}/swin_tiny_patch4_window7_224.pth",
            role="backbone",
            source_page="https://github.com/microsoft/Swin-Transformer",
            licence="MIT (microsoft/Swin-Transformer)",
        )
    )
    register(
        WeightsSpec(
            name="swin_l_imagenet22k",
            factory="bupose.swin.pretrained:IMAGENET_SWIN_L",
            summary="Swin-L ImageNet-22k, 384, window 12 (MIT; init of GroupPose Swin-L)",
            backbone="swin_l",
            file_names=("swin_large_patch4_window12_384_22k.pth",),
            source=f"{_RELEASES}/swin_large_patch4_window12_384_22k.pth",
            role="backbone",
            source_page="https://github.com/microsoft/Swin-Transformer",
            licence="MIT (microsoft/Swin-Transformer)",
        )
    )
