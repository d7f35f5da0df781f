"""The original Swin ImageNet files (``swin_tiny_patch4_window7_224.pth``...) as backbone initialisations.

Those files (microsoft/Swin-Transformer releases) are ``{"model": state_dict}`` of the classification
network: this package's backbone keys without the output norms, plus the classifier. Users bring
the file; nothing is downloaded. Conversion rules, all by name, everything else strict (a missing,
unexpected or mis-shaped key is a :class:`~bupose.core.weights.CheckpointMismatchError` that lists
it and names the file):

- ``head.*`` (the classifier) and ``norm.*`` (the classifier's final norm; the backbone has its own
  output norms instead) are dropped;
- ``*.attn_mask`` buffers (shift masks the classification network stores for its fixed input size)
  are ignored;
- ``*.relative_position_index``, when present, must equal the constant the backbone builds; when
  absent it is filled with that constant;
- the output norms ``norm<i>`` are not in these files: they are filled with the LayerNorm identity
  (weight 1, bias 0), which is also what the official detection code leaves them at.
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

from .config import SwinConfig, swin_config
from .model import SwinTransformer, build_swin, relative_position_index

__all__ = [
    "IMAGENET_DROPPED",
    "IMAGENET_SWIN_L",
    "IMAGENET_SWIN_T",
    "SwinImageNetConverter",
    "convert_imagenet",
    "expected_shapes",
    "load_imagenet_pretrained",
]

IMAGENET_DROPPED: tuple[str, ...] = ("head", "norm")
"""Top-level modules of the classification Swin that the backbone does not have."""

_INDEX = "relative_position_index"


@lru_cache(maxsize=8)
def _shapes(config: SwinConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        model = SwinTransformer(config)
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def expected_shapes(config: SwinConfig | str) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of a backbone built from ``config`` with its shape, in module order."""
    if isinstance(config, str):
        config = swin_config(config)
    return dict(_shapes(config))


def _output_norm(key: str, config: SwinConfig) -> bool:
    return key.split(".", 1)[0] in {f"norm{i}" for i in config.out_indices}


def _shape(value: Any) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _convert(
    sd: Mapping[str, Any], config: SwinConfig
) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    own = expected_shapes(config)
    kept = {
        k: v
        for k, v in sd.items()
        if isinstance(k, str) and k.split(".", 1)[0] not in IMAGENET_DROPPED and not k.endswith(".attn_mask")
    }
    index = relative_position_index(config.window_size)
    problems: list[str] = []
    for key, shape in own.items():
        if key.endswith("." + _INDEX):
            if key not in kept:
                kept[key] = index
            elif (
                _shape(kept[key]) == shape
                and not kept[key].is_meta
                and not torch.equal(kept[key].long(), index)
            ):
                problems.append(f"{key} differs from the constant built for window {config.window_size}")
        elif _output_norm(key, config) and key not in kept:
            kept[key] = torch.ones(shape) if key.endswith(".weight") else torch.zeros(shape)
    missing = [k for k in own if k not in kept]
    unexpected = [k for k in kept if k not in own]
    problems += [
        f"{k} {_shape(kept[k]) if _shape(kept[k]) is not None else type(kept[k]).__name__} vs {own[k]}"
        for k in own
        if k in kept and _shape(kept[k]) != own[k]
    ]
    return {k: kept[k] for k in own if k in kept}, missing, unexpected, problems


def convert_imagenet(
    state_dict: Mapping[str, Any],
    config: SwinConfig | str = "swin_t",
    *,
    where: str = "Swin ImageNet checkpoint",
) -> dict[str, torch.Tensor]:
    """An original Swin classification state_dict -> the bare keys of a backbone built from ``config``.

    Applies the by-name rules of the module docstring; raises
    :class:`~bupose.core.weights.CheckpointMismatchError` listing every other missing, unexpected or
    mis-shaped key (and any ``relative_position_index`` that is not the built constant).
    """
    if isinstance(config, str):
        config = swin_config(config)
    sd = unwrap_checkpoint(state_dict, where)
    out, missing, unexpected, problems = _convert(sd, config)
    if missing or unexpected or problems:
        raise CheckpointMismatchError(
            f"{where} (after dropping head.*, norm.* and *.attn_mask)", missing, unexpected, problems
        )
    return out


def load_imagenet_pretrained(
    backbone: SwinTransformer, source: str | os.PathLike[str] | Mapping[str, Any]
) -> SwinTransformer:
    """Initialise ``backbone`` from an original Swin ImageNet file or state_dict; returns ``backbone``.

    Files are read with ``torch.load(weights_only=True)``.
    """
    if isinstance(source, Mapping):
        where, sd = "Swin ImageNet state_dict", source
    else:
        where = os.fspath(source)
        sd, _ = read_checkpoint(source)
    load_state_dict_strict(backbone, convert_imagenet(sd, backbone.config, where=where), where)
    return backbone


class SwinImageNetConverter:
    """Converter object of a registered ImageNet weights spec (``detect`` / ``convert`` / ``build``).

    ``detect`` recognises an original classification Swin file of this preset (``head`` present, every
    other key and shape as the preset's, window size included); ``convert`` returns the preset
    backbone's bare keys; ``build`` loads them into that backbone.
    """

    def __init__(self, backbone: str) -> None:
        self.backbone = backbone

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        """Whether ``state_dict`` is an original Swin ImageNet checkpoint of this preset."""
        try:
            sd = unwrap_checkpoint(state_dict)
        except ValueError:
            return False
        if "head.weight" not in sd:
            return False
        _, missing, unexpected, problems = _convert(sd, swin_config(self.backbone))
        return not (missing or unexpected or problems)

    def convert(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Bare backbone keys of the preset (strict, by-name rules of :func:`convert_imagenet`)."""
        return convert_imagenet(state_dict, self.backbone, where=f"Swin ImageNet {self.backbone} checkpoint")

    def build(self, state_dict: Mapping[str, torch.Tensor]) -> SwinTransformer:
        """The preset backbone with ``state_dict`` (the output of :meth:`convert`) loaded strictly."""
        backbone = build_swin(self.backbone)
        load_state_dict_strict(backbone, state_dict, f"converted Swin {self.backbone}")
        return backbone

    def __call__(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Same as :meth:`convert` (a WeightsSpec factory may also be called as a function)."""
        return self.convert(state_dict)

    def __repr__(self) -> str:
        return f"SwinImageNetConverter({self.backbone!r})"


IMAGENET_SWIN_T = SwinImageNetConverter("swin_t")
IMAGENET_SWIN_L = SwinImageNetConverter("swin_l")
