"""Official CenterGroup checkpoints <-> bupose keys.

Final models (``centergroup_higherhrnet_{w32_coco_512x512, w48_coco_640x640, w48_crowdpose_640x640}.pth``)
are PyTorch-Lightning files: the state_dict of the whole ``CenterGroup`` under ``state_dict``
(1987 entries: ``bu_model.backbone.*`` 1752, ``bu_model.keypoint_head.*`` 58, ``kp_embed_cnn.*``,
``person_embed_cnn.*`` 31 each, ``group_model.*`` 115). The official loader strips a ``module.``
prefix and renames ``graph_net`` -> ``tr_encoder`` and ``graph_model`` -> ``group_model`` (released
files may carry the old names); this module does exactly that, explicitly, then maps

    bu_model.backbone.<k>      -> backbone.<k>
    bu_model.keypoint_head.<k> -> head.keypoint_head.<k>
    kp_embed_cnn / person_embed_cnn / group_model.<k> -> head.<same>

Any other key is an error. Shapes and completeness are checked by the strict load of the model.

Detector-only "w_root" files (``higherhrnet_w_root_*.pth``, mmcv runner files with ``backbone.*`` /
``keypoint_head.*``) convert to ``backbone.*`` + ``head.keypoint_head.*``: :func:`load_detector`
loads them strictly into the detector part of a model (the initialisation of stage-2 training).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bupose.core.weights import CheckpointError, CheckpointMismatchError, unwrap_checkpoint

__all__ = [
    "DETECTOR_CONVERTERS",
    "MODEL_CONVERTERS",
    "CenterGroupDetectorConverter",
    "CenterGroupModelConverter",
    "FileVariant",
    "detect_variant",
    "from_official",
    "load_detector",
    "official_keys",
    "rename_old_keys",
    "to_official",
    "unwrap",
]

RENAMES = (("graph_net", "tr_encoder"), ("graph_model", "group_model"))
"""The official loader's renames of old key names (``k.replace(old, new)``)."""

_MODEL_PREFIXES = {
    "bu_model.backbone.": "backbone.",
    "bu_model.keypoint_head.": "head.keypoint_head.",
    "kp_embed_cnn.": "head.kp_embed_cnn.",
    "person_embed_cnn.": "head.person_embed_cnn.",
    "group_model.": "head.group_model.",
}
_DETECTOR_PREFIXES = {"backbone.": "backbone.", "keypoint_head.": "head.keypoint_head."}
_BACKBONES = {32: "higherhrnet_w32", 48: "higherhrnet_w48"}
_LAYOUTS = {36: "coco17", 30: "crowdpose14"}


@dataclass(frozen=True)
class FileVariant:
    """What an official CenterGroup file is: ``kind`` ``"model"`` or ``"detector"``, the backbone,
    the layout."""

    kind: str
    backbone: str
    layout: str


def unwrap(obj: Mapping[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of an official file: the ``state_dict`` entry of a Lightning / mmcv checkpoint (or
    the plain dict), ``module.`` stripped from every key that has it, old names renamed."""
    sd = unwrap_checkpoint(obj, where, wrappers=("state_dict", "model"))
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new = rename_old_keys(key[len("module."):] if key.startswith("module.") else key)
        if new in out:
            raise CheckpointError(f"{where}: key {key!r} maps to {new!r}, which is already present")
        out[new] = value
    return out


def rename_old_keys(key: str) -> str:
    """``graph_net`` -> ``tr_encoder``, ``graph_model`` -> ``group_model`` (the official loader's rule)."""
    for old, new in RENAMES:
        key = key.replace(old, new)
    return key


def detect_variant(sd: Mapping[str, Any]) -> FileVariant | None:
    """Recognise an unwrapped official CenterGroup file from its key layout and shapes."""
    for kind, prefix in (("model", "bu_model."), ("detector", "")):
        final = sd.get(f"{prefix}keypoint_head.final_layers.0.weight")
        stem = sd.get(f"{prefix}backbone.conv1.weight")
        if not isinstance(final, torch.Tensor) or not isinstance(stem, torch.Tensor) or final.ndim != 4:
            continue
        if f"{prefix}keypoint_head.deconv_layers.0.0.0.weight" not in sd:
            continue
        if kind == "model" and "group_model.initial_mlp.layers.0.weight" not in sd:
            continue
        if kind == "detector" and any(k.startswith(("bu_model.", "group_model.")) for k in sd):
            continue
        backbone = _BACKBONES.get(int(final.shape[1]))
        layout = _LAYOUTS.get(int(final.shape[0]))
        if backbone is None or layout is None:
            return None
        return FileVariant(kind, backbone, layout)
    return None


def _map(sd: Mapping[str, torch.Tensor], prefixes: Mapping[str, str], where: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in sd.items():
        for src, dst in prefixes.items():
            if key.startswith(src):
                out[dst + key[len(src):]] = value
                break
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointMismatchError(where, [], unexpected)
    return out


def from_official(sd: Mapping[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """An official CenterGroup file (model or detector-only, possibly wrapped) -> bupose keys."""
    flat = unwrap(sd, where)
    variant = detect_variant(flat)
    if variant is None:
        raise CheckpointError(
            f"{where}: not an official CenterGroup file (needs [bu_model.]keypoint_head.final_layers.0.weight "
            "of shape (36|30, 32|48, 1, 1), [bu_model.]backbone.conv1.weight and, for a final model, group_model.*)"
        )
    prefixes = _MODEL_PREFIXES if variant.kind == "model" else _DETECTOR_PREFIXES
    return _map(flat, prefixes, f"{where} (CenterGroup {variant.kind} {variant.backbone} {variant.layout})")


def to_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """bupose CenterGroup state_dict -> the official layout (as ``CenterGroup.state_dict()`` names it)."""
    inverse = {dst: src for src, dst in _MODEL_PREFIXES.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        for dst, src in sorted(inverse.items(), key=lambda kv: -len(kv[0])):
            if key.startswith(dst):
                out[src + key[len(dst):]] = value
                break
        else:
            raise CheckpointMismatchError("bupose CenterGroup state_dict", [], [key])
    return out


def official_keys(model: torch.nn.Module) -> list[str]:
    """The official key of every entry of a bupose CenterGroup model's state_dict, in order."""
    return list(to_official(dict.fromkeys(model.state_dict(), torch.empty(0))))


def load_detector(model: torch.nn.Module, checkpoint: Mapping[str, Any], where: str = "detector checkpoint") -> None:
    """Load a detector-only (w_root) file, or the detector part of a final model file, strictly into
    ``model.backbone`` + ``model.head.keypoint_head`` (missing, unexpected or mis-shaped detector keys
    are one :class:`CheckpointMismatchError`); the other head parts keep their values."""
    converted = from_official(checkpoint, where)
    detector = {k: v for k, v in converted.items() if k.startswith(("backbone.", "head.keypoint_head."))}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(("backbone.", "head.keypoint_head."))}
    missing = [k for k in own if k not in detector]
    unexpected = [k for k in detector if k not in own]
    shapes = [f"{k} {tuple(detector[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in detector and detector[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(where, missing, unexpected, shapes)
    result = model.load_state_dict(detector, strict=False)
    assert not result.unexpected_keys


class CenterGroupModelConverter:
    """WeightsSpec converter for one official CenterGroup final-model file."""

    def __init__(self, backbone: str, layout: str, kind: str = "model") -> None:
        self.backbone = backbone
        self.layout = layout
        self.kind = kind

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        try:
            variant = detect_variant(unwrap(state_dict))
        except CheckpointError:
            return False
        return variant == FileVariant(self.kind, self.backbone, self.layout)

    def convert(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return from_official(state_dict, f"CenterGroup {self.kind} {self.backbone} {self.layout} checkpoint")

    def __call__(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self.convert(state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.backbone!r}, {self.layout!r})"


class CenterGroupDetectorConverter(CenterGroupModelConverter):
    """WeightsSpec converter for a detector-only "w_root" file (``backbone.*`` + ``head.keypoint_head.*``;
    load it with :func:`load_detector`)."""

    def __init__(self, backbone: str, layout: str) -> None:
        super().__init__(backbone, layout, kind="detector")


W32_COCO = CenterGroupModelConverter("higherhrnet_w32", "coco17")
W48_COCO = CenterGroupModelConverter("higherhrnet_w48", "coco17")
W48_CROWDPOSE = CenterGroupModelConverter("higherhrnet_w48", "crowdpose14")
ROOT_W32_COCO = CenterGroupDetectorConverter("higherhrnet_w32", "coco17")
ROOT_W48_COCO = CenterGroupDetectorConverter("higherhrnet_w48", "coco17")
ROOT_W48_CROWDPOSE = CenterGroupDetectorConverter("higherhrnet_w48", "crowdpose14")

MODEL_CONVERTERS = {
    "centergroup_higherhrnet_w32_coco_512x512.pth": "W32_COCO",
    "centergroup_higherhrnet_w48_coco_640x640.pth": "W48_COCO",
    "centergroup_higherhrnet_w48_crowdpose_640x640.pth": "W48_CROWDPOSE",
}
DETECTOR_CONVERTERS = {
    "higherhrnet_w_root_w32_coco_512x512.pth": "ROOT_W32_COCO",
    "higherhrnet_w_root_w48_coco_640x640.pth": "ROOT_W48_COCO",
    "higherhrnet_w_root_w48_crowdpose_640x640.pth": "ROOT_W48_CROWDPOSE",
}
