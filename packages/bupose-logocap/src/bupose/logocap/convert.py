"""Official LOGO-CAP checkpoint layout <-> bupose.

The official files (``logocap-hrnet-w{32,48}-coco.pth.tar``, GitHub release ``checkpoints`` of
cherubicXN/logocap) are plain state_dicts of the whole ``Model`` despite the ``.pth.tar`` name:
1830 backbone keys under ``backbone.`` (the bare HRNet keys) followed by the head keys
``transition_cls``, ``transition_reg``, ``final_layer_cls``, ``final_layer_reg``,
``transition_embedding`` and ``joints_mlp`` (43 keys). In bupose the backbone keys keep their
``backbone.<bare key>`` name and the head keys move under ``head.``.

The converter splits the file itself: head keys are checked here against the official head's
exact key list; backbone keys are handed on unchanged and checked by the strict load of the
backbone (any backbone whose bare keys match, HRNet in the official files).

Wrappers are opened explicitly: a ``state_dict`` / ``model`` entry holding the tensors, and a
``module.`` prefix on every key (DataParallel / DDP). Anything else is reported with
:class:`~bupose.core.weights.CheckpointMismatchError` naming missing and unexpected keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from bupose.core.weights import CheckpointError, CheckpointMismatchError, HeadFileVariant, unwrap_checkpoint

__all__ = [
    "BACKBONE_PREFIX",
    "HEAD_PREFIXES",
    "MODEL_CONVERTERS",
    "LogoCapModelConverter",
    "Variant",
    "detect_variant",
    "expected_head_keys",
    "from_official",
    "split_official",
    "to_official",
    "unwrap",
]

BACKBONE_PREFIX = "backbone."
HEAD_PREFIXES = (
    "transition_cls.",
    "transition_reg.",
    "final_layer_cls.",
    "final_layer_reg.",
    "transition_embedding.",
    "joints_mlp.",
)
_BACKBONE_BY_CHANNELS = {(32, 480): "hrnet_w32", (48, 720): "hrnet_w48"}
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def unwrap(obj: Mapping[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor state_dict inside an official file (core's :func:`~bupose.core.weights.unwrap_checkpoint`
    with the wrappers LOGO-CAP files use)."""
    return unwrap_checkpoint(obj, where, wrappers=("state_dict", "model"))


Variant = HeadFileVariant
"""What a LOGO-CAP model file is (core's :class:`~bupose.core.weights.HeadFileVariant`)."""


def detect_variant(sd: Mapping[str, Any]) -> Variant | None:
    """Recognise an (unwrapped) official LOGO-CAP state_dict from its key layout and shapes."""
    tc = sd.get("transition_cls.0.weight")
    fc = sd.get("final_layer_cls.weight")
    if not isinstance(tc, torch.Tensor) or not isinstance(fc, torch.Tensor) or tc.ndim != 4 or fc.ndim != 4:
        return None
    if "joints_mlp.4.weight_" not in sd or f"{BACKBONE_PREFIX}conv1.weight" not in sd:
        return None
    backbone = _BACKBONE_BY_CHANNELS.get((int(tc.shape[0]), int(tc.shape[1])))
    if backbone is None or int(fc.shape[0]) != 18:
        return None
    return Variant(backbone, "coco17", 17, int(tc.shape[0]), int(tc.shape[1]))


def expected_head_keys(num_joints: int = 17, kam_layers: int = 3, an_layers: tuple[int, ...] = (1,)) -> list[str]:
    """Every state_dict key of the official LOGO-CAP head, in official order.

    ``kam_layers`` conv layers in ``joints_mlp`` (indices 0, 3, 6...), those in ``an_layers`` with
    AttnBatchNorm2d; the joint count does not change the key names.
    """
    del num_joints  # the key names do not depend on it
    keys: list[str] = []
    for name in ("transition_cls", "transition_reg"):
        keys += [f"{name}.0.weight", *(f"{name}.1.{p}" for p in _BN)]
    keys += ["final_layer_cls.weight", "final_layer_cls.bias", "final_layer_reg.weight", "final_layer_reg.bias"]
    keys += ["transition_embedding.0.weight", *(f"transition_embedding.1.{p}" for p in _BN)]
    for i in range(kam_layers):
        conv, norm = 3 * i, 3 * i + 1
        keys.append(f"joints_mlp.{conv}.weight")
        if i in an_layers:
            keys += [
                f"joints_mlp.{norm}.weight_",
                f"joints_mlp.{norm}.bias_",
                f"joints_mlp.{norm}.running_mean",
                f"joints_mlp.{norm}.running_var",
                f"joints_mlp.{norm}.num_batches_tracked",
                f"joints_mlp.{norm}.attn_weights.attention.0.weight",
            ]
        else:
            keys += [f"joints_mlp.{norm}.{p}" for p in _BN]
    keys += [f"joints_mlp.{3 * kam_layers}.weight", f"joints_mlp.{3 * kam_layers}.bias"]
    return keys


def split_official(
    sd: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """``(bare backbone keys, head keys, other keys)`` of an unwrapped official state_dict."""
    backbone: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    other: list[str] = []
    for k, v in sd.items():
        if k.startswith(BACKBONE_PREFIX):
            backbone[k[len(BACKBONE_PREFIX) :]] = v
        elif k.startswith(HEAD_PREFIXES):
            head[k] = v
        else:
            other.append(k)
    return backbone, head, other


def from_official(sd: Mapping[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Official LOGO-CAP state_dict (possibly wrapped) -> bupose ``backbone.*`` / ``head.*`` keys.

    The head keys must be exactly the official head's; otherwise a :class:`CheckpointMismatchError`
    lists the missing and unexpected ones (keys outside the backbone and head are unexpected).
    Backbone keys are checked when the model loads them.
    """
    sd = unwrap(sd, where)
    variant = detect_variant(sd)
    if variant is None:
        raise CheckpointError(
            f"{where}: not an official LOGO-CAP model file (needs transition_cls.0.weight of shape "
            "(32|48, 480|720, 1, 1), final_layer_cls.weight with 18 rows, joints_mlp.4.weight_ and "
            "backbone.* keys such as backbone.conv1.weight)"
        )
    backbone, head, other = split_official(sd)
    expected = expected_head_keys(variant.num_joints)
    missing = [k for k in expected if k not in head]
    unexpected = sorted(set(head) - set(expected)) + other
    if missing or unexpected:
        raise CheckpointMismatchError(f"{where} (LOGO-CAP {variant.backbone} {variant.layout})", missing, unexpected)
    out = {f"backbone.{k}": v for k, v in backbone.items()}
    out.update({f"head.{k}": v for k, v in head.items()})
    return out


def to_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """bupose LOGO-CAP state_dict -> the official layout (what the official ``tools/test.py`` loads),
    backbone keys first as in the official file."""
    bad = [k for k in sd if not k.startswith(("backbone.", "head."))]
    if bad:
        raise CheckpointMismatchError("bupose LOGO-CAP state_dict", [], bad)
    out = {k: v for k, v in sd.items() if k.startswith("backbone.")}
    out.update({k[len("head.") :]: v for k, v in sd.items() if k.startswith("head.")})
    return out


class LogoCapModelConverter:
    """WeightsSpec converter for one official LOGO-CAP model file (W32 or W48 COCO)."""

    def __init__(self, backbone: str, layout: str = "coco17") -> None:
        self.backbone = backbone
        self.layout = layout

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        try:
            variant = detect_variant(unwrap(state_dict))
        except CheckpointError:
            return False
        return variant is not None and (variant.backbone, variant.layout) == (self.backbone, self.layout)

    def convert(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return from_official(state_dict, f"LOGO-CAP {self.backbone} {self.layout} checkpoint")

    def __call__(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self.convert(state_dict)

    def __repr__(self) -> str:
        return f"LogoCapModelConverter({self.backbone!r}, {self.layout!r})"


W32_COCO = LogoCapModelConverter("hrnet_w32")
W48_COCO = LogoCapModelConverter("hrnet_w48")

MODEL_CONVERTERS = {
    "logocap-hrnet-w32-coco.pth.tar": "W32_COCO",
    "logocap-hrnet-w48-coco.pth.tar": "W48_COCO",
}
