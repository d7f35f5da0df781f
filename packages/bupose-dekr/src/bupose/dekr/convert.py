"""Official DEKR checkpoint layouts <-> bupose.

Official model files (HRNet/DEKR README model zoo) are plain state_dicts of the whole
``PoseHigherResolutionNet``: bare HRNet backbone keys (``conv1.weight``, ``stage4...``) followed by the
head keys (``transition_heatmap``, ``transition_offset``, ``head_heatmap``, ``offset_feature_layers``,
``offset_final_layer``). In bupose the same tensors live under ``backbone.<key>`` and ``head.<key>``.
Rescoring files hold a ``PredictOKSNet`` (``l1``, ``l2``, ``l3``), whose keys are kept as they are.

The backbone keys are bare (file prefix ``""``, what ``bupose.hrnet.keys`` calls the file prefix):
every key outside :data:`HEAD_PREFIXES` is a backbone key. Wrappers (a training checkpoint dict, the
resumable ``checkpoint.pth.tar``, a ``module.`` prefix on every key) are opened with
:func:`bupose.core.weights.unwrap_checkpoint`; anything else is reported with
:class:`~bupose.core.weights.CheckpointMismatchError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from bupose.core.weights import CheckpointError, CheckpointMismatchError, HeadFileVariant, unwrap_checkpoint

__all__ = [
    "HEAD_PREFIXES",
    "MODEL_CONVERTERS",
    "RESCORE_CONVERTERS",
    "DEKRModelConverter",
    "DEKRRescoreConverter",
    "detect_variant",
    "expected_head_keys",
    "from_official",
    "to_official",
]

HEAD_PREFIXES = (
    "transition_heatmap.",
    "transition_offset.",
    "head_heatmap.",
    "offset_feature_layers.",
    "offset_final_layer.",
)
_LAYOUT_BY_ROWS = {18: "coco17", 15: "crowdpose14"}
_BACKBONE_BY_CHANNELS = {(32, 480): "hrnet_w32", (48, 720): "hrnet_w48"}
_RESCORE_LAYOUT_BY_FEATURES = {74: "coco17", 59: "crowdpose14"}


Variant = HeadFileVariant
"""What a DEKR model file is (core's :class:`~bupose.core.weights.HeadFileVariant`)."""


def detect_variant(sd: Mapping[str, Any]) -> Variant | None:
    """Recognise an (unwrapped) official DEKR model state_dict from its key layout and shapes."""
    th = sd.get("transition_heatmap.0.weight")
    hh = sd.get("head_heatmap.1.weight")
    if not isinstance(th, torch.Tensor) or not isinstance(hh, torch.Tensor):
        return None
    if "offset_feature_layers.0.0.regular_matrix" not in sd or "conv1.weight" not in sd:
        return None
    if th.ndim != 4 or hh.ndim != 4:
        return None
    rows = int(hh.shape[0])
    layout = _LAYOUT_BY_ROWS.get(rows)
    backbone = _BACKBONE_BY_CHANNELS.get((int(th.shape[0]), int(th.shape[1])))
    if layout is None or backbone is None:
        return None
    return Variant(backbone, layout, rows - 1, int(th.shape[0]), int(th.shape[1]))


def expected_head_keys(num_joints: int, offset_blocks: int = 2, heatmap_blocks: int = 1) -> list[str]:
    """Every state_dict key of the official DEKR head for ``num_joints`` joints, in official order."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["transition_heatmap.0.weight", *(f"transition_heatmap.1.{p}" for p in bn)]
    keys += ["transition_offset.0.weight", *(f"transition_offset.1.{p}" for p in bn)]
    for b in range(heatmap_blocks):
        pre = f"head_heatmap.0.{b}"
        keys += [f"{pre}.conv1.weight", *(f"{pre}.bn1.{p}" for p in bn)]
        keys += [f"{pre}.conv2.weight", *(f"{pre}.bn2.{p}" for p in bn)]
    keys += ["head_heatmap.1.weight", "head_heatmap.1.bias"]
    for j in range(num_joints):
        for b in range(offset_blocks):
            pre = f"offset_feature_layers.{j}.{b}"
            keys += [
                f"{pre}.regular_matrix",
                f"{pre}.transform_matrix_conv.weight",
                f"{pre}.transform_matrix_conv.bias",
                f"{pre}.translation_conv.weight",
                f"{pre}.translation_conv.bias",
                f"{pre}.adapt_conv.weight",
                *(f"{pre}.bn.{p}" for p in bn),
            ]
    for j in range(num_joints):
        keys += [f"offset_final_layer.{j}.weight", f"offset_final_layer.{j}.bias"]
    return keys


def from_official(sd: Mapping[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Official DEKR model state_dict (possibly wrapped) -> bupose ``backbone.*`` / ``head.*`` keys.

    The head keys must be exactly the official head's for the detected joint count; otherwise a
    :class:`CheckpointMismatchError` lists the missing and unexpected ones. Backbone keys are checked
    when the model loads them.
    """
    sd = unwrap_checkpoint(sd, where)
    variant = detect_variant(sd)
    if variant is None:
        raise CheckpointError(
            f"{where}: not an official DEKR model file (needs transition_heatmap.0.weight of shape "
            f"(32|48, 480|720, 1, 1), head_heatmap.1.weight with 18 (COCO) or 15 (CrowdPose) rows, "
            f"offset_feature_layers.*.regular_matrix and backbone keys such as conv1.weight)"
        )
    expected = expected_head_keys(variant.num_joints)
    head_in_file = [k for k in sd if k.startswith(HEAD_PREFIXES)]
    missing = [k for k in expected if k not in sd]
    unexpected = sorted(set(head_in_file) - set(expected))
    unexpected += [k for k in sd if k.startswith(("backbone.", "head."))]
    if missing or unexpected:
        raise CheckpointMismatchError(f"{where} (DEKR {variant.backbone} {variant.layout})", missing, unexpected)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        out[("head." if k.startswith(HEAD_PREFIXES) else "backbone.") + k] = v
    return out


def to_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """bupose DEKR model state_dict -> the official bare layout (what the official ``valid.py`` loads)."""
    out: dict[str, torch.Tensor] = {}
    bad = []
    for k, v in sd.items():
        m = re.match(r"^(backbone|head)\.(.+)$", k)
        if m is None:
            bad.append(k)
            continue
        out[m.group(2)] = v
    if bad:
        raise CheckpointMismatchError("bupose DEKR state_dict", [], bad)
    return out


class DEKRModelConverter:
    """WeightsSpec converter for one official DEKR model file variant (backbone x layout)."""

    def __init__(self, backbone: str, layout: str) -> None:
        self.backbone = backbone
        self.layout = layout

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        try:
            variant = detect_variant(unwrap_checkpoint(state_dict))
        except CheckpointError:
            return False
        return variant is not None and (variant.backbone, variant.layout) == (self.backbone, self.layout)

    def convert(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return from_official(state_dict, f"DEKR {self.backbone} {self.layout} checkpoint")

    def __repr__(self) -> str:
        return f"DEKRModelConverter({self.backbone!r}, {self.layout!r})"


RESCORE_KEYS = ("l1.weight", "l1.bias", "l2.weight", "l2.bias", "l3.weight", "l3.bias")


class DEKRRescoreConverter:
    """WeightsSpec converter for an official rescoring file (PredictOKSNet, 74 or 59 features)."""

    def __init__(self, layout: str) -> None:
        self.layout = layout
        self.num_features = {v: k for k, v in _RESCORE_LAYOUT_BY_FEATURES.items()}[layout]

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        try:
            sd = unwrap_checkpoint(state_dict)
        except CheckpointError:
            return False
        w = sd.get("l1.weight")
        return (
            set(sd) == set(RESCORE_KEYS)
            and isinstance(w, torch.Tensor)
            and w.ndim == 2
            and int(w.shape[1]) == self.num_features
        )

    def convert(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        sd = unwrap_checkpoint(state_dict, "rescore checkpoint")
        missing = [k for k in RESCORE_KEYS if k not in sd]
        unexpected = [k for k in sd if k not in RESCORE_KEYS]
        if missing or unexpected:
            raise CheckpointMismatchError(f"DEKR rescore checkpoint ({self.layout})", missing, unexpected)
        w = sd["l1.weight"]
        if w.ndim != 2 or int(w.shape[1]) != self.num_features:
            raise CheckpointError(
                f"DEKR rescore checkpoint ({self.layout}): l1.weight must be (hidden, {self.num_features}), "
                f"got {tuple(w.shape)}"
            )
        return {k: sd[k] for k in RESCORE_KEYS}

    def build(self, state_dict: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        """The rescoring net, strictly loaded with a converted state_dict."""
        from .model import PredictOKSNet

        return PredictOKSNet.from_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"DEKRRescoreConverter({self.layout!r})"


W32_COCO = DEKRModelConverter("hrnet_w32", "coco17")
W48_COCO = DEKRModelConverter("hrnet_w48", "coco17")
W32_CROWDPOSE = DEKRModelConverter("hrnet_w32", "crowdpose14")
W48_CROWDPOSE = DEKRModelConverter("hrnet_w48", "crowdpose14")
RESCORE_COCO = DEKRRescoreConverter("coco17")
RESCORE_CROWDPOSE = DEKRRescoreConverter("crowdpose14")

MODEL_CONVERTERS = {
    "pose_dekr_hrnetw32_coco.pth": "W32_COCO",
    "pose_dekr_hrnetw48_coco.pth": "W48_COCO",
    "pose_dekr_hrnetw32_crowdpose.pth": "W32_CROWDPOSE",
    "pose_dekr_hrnetw48_crowdpose.pth": "W48_CROWDPOSE",
}
RESCORE_CONVERTERS = {
    "final_rescore_coco_kpt.pth": "RESCORE_COCO",
    "final_rescore_crowd_pose_kpt.pth": "RESCORE_CROWDPOSE",
}
