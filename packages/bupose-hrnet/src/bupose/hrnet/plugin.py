"""The bupose plugin of bupose-hrnet: HRNet/HigherHRNet backbones and ImageNet weights specs.

Imports no torch: outputs are declared from the torch-free presets in :mod:`bupose.hrnet.config`.
"""

from __future__ import annotations

from collections.abc import Callable

from bupose.core import BackboneSpec, WeightsSpec, hookimpl

from .config import PRESETS, output_shapes

_MMPOSE = "https://download.openmmlab.com/mmpose/pretrain_models"
_HRNET_CLS = (
    "HRNet/HRNet-Image-Classification release (also in cherubicXN/logocap's release asset imagenet.tar.gz)"
)


@hookimpl
def bupose_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    """One backbone per preset (``hrnet_w18/_small/w32/w48``, ``higherhrnet_w32/w48``)."""
    for name, config in PRESETS.items():
        register(
            BackboneSpec(
                name=name,
                factory=f"bupose.hrnet.model:{name}",
                summary=config.description,
                outputs=output_shapes(config),
                size_divisibility=32,  # four branches down to stride 32: inputs must divide by 32
            )
        )


@hookimpl
def bupose_register_weights(register: Callable[[WeightsSpec], None]) -> None:
    """The ImageNet-pretrained classification HRNets the official pose configs start from."""
    register(
        WeightsSpec(
            name="hrnet_w32_imagenet",
            factory="bupose.hrnet.pretrained:IMAGENET_W32",
            summary="ImageNet HRNet-W32 (init of DEKR, LOGO-CAP, HigherHRNet and CenterGroup W32)",
            backbone="hrnet_w32",
            file_names=("hrnet_w32-36af842e.pth",),
            source=f"{_MMPOSE}/hrnet_w32-36af842e.pth",
            role="backbone",
            hash_in_name=True,  # OpenMMLab names carry the first 8 hex digits of the sha256
            source_page="https://github.com/open-mmlab/mmpose",
        )
    )
    register(
        WeightsSpec(
            name="hrnet_w48_imagenet",
            factory="bupose.hrnet.pretrained:IMAGENET_W48",
            summary="ImageNet HRNetV2-W48 (init of DEKR and LOGO-CAP W48)",
            backbone="hrnet_w48",
            file_names=("hrnetv2_w48_imagenet_pretrained.pth",),
            source=_HRNET_CLS,
            role="backbone",
            source_page="https://github.com/HRNet/HRNet-Image-Classification",
        )
    )
    register(
        WeightsSpec(
            name="hrnet_w48_imagenet_mmpose",
            factory="bupose.hrnet.pretrained:IMAGENET_W48_HIGHER",
            summary="ImageNet HRNet-W48 as mmpose ships it (init of HigherHRNet and CenterGroup W48)",
            backbone="higherhrnet_w48",
            file_names=("hrnet_w48-8ef0771d.pth",),
            source=f"{_MMPOSE}/hrnet_w48-8ef0771d.pth",
            role="backbone",
            hash_in_name=True,
            source_page="https://github.com/open-mmlab/mmpose",
        )
    )
    register(
        WeightsSpec(
            name="hrnet_w18_imagenet",
            factory="bupose.hrnet.pretrained:IMAGENET_W18",
            summary="ImageNet HRNetV2-W18 (no official bottom-up pose config uses it)",
            backbone="hrnet_w18",
            file_names=("hrnetv2_w18_imagenet_pretrained.pth",),
            source=_HRNET_CLS,
            role="backbone",
            source_page="https://github.com/HRNet/HRNet-Image-Classification",
        )
    )
