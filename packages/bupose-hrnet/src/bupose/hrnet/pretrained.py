"""ImageNet-pretrained HRNet classification checkpoints as backbone initialisations.

The classification files (``hrnet_w32-36af842e.pth``, ``hrnetv2_w48_imagenet_pretrained.pth``,
``hrnet_w48-8ef0771d.pth``, ``hrnetv2_w18_imagenet_pretrained.pth``) hold the bare HRNet backbone
keys with the full stage-4 fusion plus the classification extras
(:data:`IMAGENET_EXTRA_MODULES`). The official pose code loads them with ``strict=False``; here the
extras are dropped by name and everything else must match exactly: any other missing, unexpected
or mis-shaped entry is an error that lists it. A single-output (HigherHRNet) backbone additionally
drops, by name, the fusion into branches 1..3 of its last module, which it does not have.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch

from bupose.core.weights import (
    CheckpointMismatchError,
    load_state_dict_strict,
    read_checkpoint,
    unwrap_checkpoint,
)

from .config import HRNetConfig, hrnet_config
from .keys import BACKBONE_KEY_RE, is_multi_scale
from .model import HRNet

__all__ = [
    "IMAGENET_EXTRA_MODULES",
    "IMAGENET_W18",
    "IMAGENET_W32",
    "IMAGENET_W48",
    "IMAGENET_W48_HIGHER",
    "ImageNetHRNetConverter",
    "convert_imagenet",
    "expected_shapes",
    "load_backbone_state_dict",
    "load_imagenet_pretrained",
]

IMAGENET_EXTRA_MODULES: tuple[str, ...] = ("incre_modules", "downsamp_modules", "final_layer", "classifier")
"""Top-level modules of the classification HRNet that a pose backbone does not have."""


@lru_cache(maxsize=16)
def _shapes(config: HRNetConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        model = HRNet(config)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def expected_shapes(config: HRNetConfig | str) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of a backbone built from ``config`` with its shape, in module order."""
    if isinstance(config, str):
        config = hrnet_config(config)
    return dict(_shapes(config))


def _full(config: HRNetConfig) -> HRNetConfig:
    """The same network with fusion into every branch in the last module (the classification layout)."""
    if config.multi_scale_output:
        return config
    return HRNetConfig(stages=config.stages, stem_channels=config.stem_channels, multi_scale_output=True)


def convert_imagenet(
    state_dict: Mapping[str, Any],
    config: HRNetConfig | str = "hrnet_w32",
    *,
    where: str = "ImageNet checkpoint",
) -> dict[str, torch.Tensor]:
    """A classification HRNet state_dict -> the bare keys of a backbone built from ``config``.

    Drops :data:`IMAGENET_EXTRA_MODULES` by name; raises
    :class:`~bupose.core.weights.CheckpointMismatchError` listing every other missing, unexpected
    or mis-shaped key (checked against the classification layout of ``config``).
    """
    if isinstance(config, str):
        config = hrnet_config(config)
    sd = unwrap_checkpoint(state_dict, where)
    kept = {k: v for k, v in sd.items() if k.split(".", 1)[0] not in IMAGENET_EXTRA_MODULES}
    full = expected_shapes(_full(config))
    missing = [k for k in full if k not in kept]
    unexpected = [k for k in kept if k not in full]
    shapes = [
        f"{k} {tuple(kept[k].shape)} vs {full[k]}"
        for k in full
        if k in kept and tuple(kept[k].shape) != full[k]
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"{where} (after dropping {', '.join(IMAGENET_EXTRA_MODULES)})", missing, unexpected, shapes
        )
    if config.multi_scale_output:
        return {k: kept[k] for k in full}
    own = expected_shapes(config)
    return {k: kept[k] for k in own}


def load_backbone_state_dict(backbone: HRNet, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    """Load bare backbone keys strictly (errors name every missing/unexpected/mis-shaped key)."""
    load_state_dict_strict(backbone, state_dict, where)


def load_imagenet_pretrained(backbone: HRNet, source: str | os.PathLike[str] | Mapping[str, Any]) -> HRNet:
    """Initialise ``backbone`` from an ImageNet classification checkpoint file or state_dict.

    Files are read with ``torch.load(weights_only=True)``. Returns ``backbone``.
    """
    if isinstance(source, Mapping):
        where, sd = "ImageNet state_dict", source
    else:
        where = os.fspath(source)
        sd, _ = read_checkpoint(source)
    converted = convert_imagenet(sd, backbone.config, where=where)
    load_backbone_state_dict(backbone, converted, where)
    return backbone


class ImageNetHRNetConverter:
    """Converter object of a registered ImageNet weights spec (``detect`` / ``convert``).

    ``detect`` recognises a classification HRNet state_dict of this width (bare backbone keys with
    the full stage-4 fusion and at least one classification extra); ``convert`` returns the bare
    backbone keys of the preset ``backbone`` (the backbone module's own state_dict layout).
    """

    def __init__(self, width: int, backbone: str) -> None:
        self.width = width
        self.backbone = backbone

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        """Whether ``state_dict`` is a classification HRNet checkpoint of this width."""
        try:
            sd = unwrap_checkpoint(state_dict)
        except ValueError:
            return False
        if not any(k.split(".", 1)[0] in IMAGENET_EXTRA_MODULES for k in sd):
            return False
        if any(not BACKBONE_KEY_RE.match(k) and k.split(".", 1)[0] not in IMAGENET_EXTRA_MODULES for k in sd):
            return False
        t = sd.get("transition1.0.0.weight")
        return t is not None and tuple(t.shape)[:1] == (self.width,) and is_multi_scale(list(sd))

    def convert(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Bare backbone keys for the ``backbone`` preset (strict; extras dropped by name)."""
        return convert_imagenet(state_dict, self.backbone, where=f"ImageNet HRNet-W{self.width} checkpoint")

    def __call__(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Same as :meth:`convert` (a WeightsSpec factory may also be called as a function)."""
        return self.convert(state_dict)

    def __repr__(self) -> str:
        return f"ImageNetHRNetConverter(width={self.width}, backbone={self.backbone!r})"


IMAGENET_W18 = ImageNetHRNetConverter(18, "hrnet_w18")
IMAGENET_W32 = ImageNetHRNetConverter(32, "hrnet_w32")
IMAGENET_W48 = ImageNetHRNetConverter(48, "hrnet_w48")
IMAGENET_W48_HIGHER = ImageNetHRNetConverter(48, "higherhrnet_w48")
