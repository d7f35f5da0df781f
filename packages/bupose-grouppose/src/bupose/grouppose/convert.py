"""Official GroupPose checkpoints <-> bupose.

An official file (``main.py``) is ``{'model', 'optimizer', 'lr_scheduler', 'epoch', 'args'}`` with a
pickled ``argparse.Namespace`` under ``args``; core's reader opens it with
``torch.load(weights_only=True)`` and ``argparse.Namespace`` allow-listed, and ``model`` is taken.
A bare state_dict works too.

Key layout of ``model`` (R-50 662 keys, Swin-T 584, Swin-L 752):

- backbone: ``backbone.0.body.<torchvision key>`` (ResNet-50 with FrozenBatchNorm2d: no
  ``num_batches_tracked``) or ``backbone.0.<Swin key>``; in bupose they become ``backbone.<key>``.
  For a trainable-BN ResNet (``norm="bn"``, the default ``resnet50``), a zero ``num_batches_tracked``
  is added next to every ``running_var`` (in eval mode the network is the same);
- head: every other key moves under ``head.``;
- 48 aliases: ``transformer.decoder.class_embed.*`` / ``transformer.decoder.pose_embed.*`` are the
  same modules as ``class_embed.*`` / ``pose_embed.*`` registered twice. Both names must be present
  with identical tensors; bupose keeps one copy and :func:`to_official` writes both again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bupose.core.weights import CheckpointError, CheckpointMismatchError, unwrap_checkpoint

__all__ = [
    "ALIAS_PREFIXES",
    "GroupPoseConverter",
    "Variant",
    "alias_keys",
    "detect_variant",
    "from_official",
    "to_official",
    "unwrap",
]

RESNET_PREFIX = "backbone.0.body."
SWIN_PREFIX = "backbone.0."
ALIAS_PREFIXES = ("transformer.decoder.class_embed.", "transformer.decoder.pose_embed.")
"""Official alias key prefixes; the alias of ``transformer.decoder.X`` is ``X``."""

_BACKBONE_BY_CHANNELS = {512: "resnet50", 192: "swin_t", 384: "swin_l"}
_LAYOUT_BY_JOINTS = {17: "coco17", 14: "crowdpose14"}


@dataclass(frozen=True)
class Variant:
    """What an official GroupPose file is: backbone, layout, joints and decoder depth."""

    backbone: str
    layout: str
    num_joints: int
    dec_layers: int


def unwrap(obj: Mapping[str, Any], where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state_dict inside an official file (the ``model`` entry of a training file, or the dict)."""
    return unwrap_checkpoint(obj, where, wrappers=("model", "state_dict"))


def detect_variant(sd: Mapping[str, Any]) -> Variant | None:
    """Recognise an unwrapped official GroupPose state_dict from its keys and shapes."""
    proj = sd.get("input_proj.0.0.weight")
    kp = sd.get("transformer.keypoint_embedding.weight")
    inst = sd.get("transformer.instance_embedding.weight")
    if not all(isinstance(t, torch.Tensor) for t in (proj, kp, inst)):
        return None
    assert isinstance(proj, torch.Tensor) and isinstance(kp, torch.Tensor)
    backbone = _BACKBONE_BY_CHANNELS.get(int(proj.shape[1])) if proj.ndim == 4 else None
    layout = _LAYOUT_BY_JOINTS.get(int(kp.shape[0]))
    if backbone is None or layout is None:
        return None
    marker = f"{RESNET_PREFIX}conv1.weight" if backbone == "resnet50" else f"{SWIN_PREFIX}patch_embed.proj.weight"
    if marker not in sd:
        return None
    dec = 0
    while f"class_embed.{dec}.weight" in sd:
        dec += 1
    return Variant(backbone, layout, int(kp.shape[0]), dec)


def alias_keys(sd: Mapping[str, Any]) -> dict[str, str]:
    """alias key -> canonical key for the aliases present in ``sd``."""
    return {k: k[len("transformer.decoder.") :] for k in sd if k.startswith(ALIAS_PREFIXES)}


def from_official(
    sd: Mapping[str, Any], where: str = "checkpoint", *, resnet_norm: str = "bn"
) -> dict[str, torch.Tensor]:
    """Official GroupPose state_dict (or training file) -> bupose ``backbone.*`` / ``head.*`` keys.

    Every alias must be present with a tensor identical to its canonical key's (else a
    :class:`CheckpointMismatchError` / :class:`CheckpointError` names it). ``resnet_norm`` is the
    bupose ResNet's ``norm``: ``"bn"`` adds zero ``num_batches_tracked`` counters, ``"frozen_bn"``
    keeps the official layout. Key sets are checked by the strict load of the model.
    """
    if resnet_norm not in ("bn", "frozen_bn"):
        raise ValueError(f"resnet_norm must be 'bn' or 'frozen_bn', got {resnet_norm!r}")
    sd = unwrap(sd, where)
    variant = detect_variant(sd)
    if variant is None:
        raise CheckpointError(
            f"{where}: not an official GroupPose model (needs input_proj.0.0.weight with 512/192/384 input "
            "channels, transformer.keypoint_embedding.weight with 17 or 14 rows and backbone.0.* keys)"
        )
    aliases = alias_keys(sd)
    canonical = {k for k in sd if k.startswith(("class_embed.", "pose_embed."))}
    missing_alias = sorted(f"transformer.decoder.{k}" for k in canonical if f"transformer.decoder.{k}" not in sd)
    orphan = sorted(a for a, c in aliases.items() if c not in sd)
    if missing_alias or orphan:
        raise CheckpointMismatchError(f"{where} (GroupPose aliases)", missing_alias, orphan)
    for alias, key in aliases.items():
        a, c = sd[alias], sd[key]
        if a is c:  # one tensor under both names (the official module registered twice)
            continue
        if a.shape != c.shape or a.dtype != c.dtype or not torch.equal(a, c):
            raise CheckpointError(
                f"{where}: alias {alias} differs from {key}; the official model registers one module under "
                "both names, so they must hold identical tensors"
            )
    prefix = RESNET_PREFIX if variant.backbone == "resnet50" else SWIN_PREFIX
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k in aliases:
            continue
        if k.startswith(prefix):
            bare = k[len(prefix) :]
            out[f"backbone.{bare}"] = v
            if variant.backbone == "resnet50" and resnet_norm == "bn" and bare.endswith(".running_var"):
                out[f"backbone.{bare[: -len('running_var')]}num_batches_tracked"] = torch.zeros((), dtype=torch.long)
            continue
        if k.startswith("backbone."):
            raise CheckpointMismatchError(f"{where} (GroupPose {variant.backbone})", [], [k])
        out[f"head.{k}"] = v
    return out


def to_official(sd: Mapping[str, torch.Tensor], backbone: str) -> dict[str, torch.Tensor]:
    """bupose GroupPose state_dict -> the official layout, aliases written again (the official
    ``load_state_dict`` is strict). ``backbone`` is ``resnet50`` (``backbone.0.body.``; counters
    dropped) or a Swin (``backbone.0.``)."""
    bad = [k for k in sd if not k.startswith(("backbone.", "head."))]
    if bad:
        raise CheckpointMismatchError("bupose GroupPose state_dict", [], bad)
    prefix = RESNET_PREFIX if backbone.startswith("resnet") else SWIN_PREFIX
    head = {k[len("head.") :]: v for k, v in sd.items() if k.startswith("head.")}
    out: dict[str, torch.Tensor] = {}
    for k, v in head.items():  # the decoder's own keys, then the aliases (pose_embed, class_embed), as officially
        if k.startswith("transformer.decoder."):
            out[k] = v
    for group in ("pose_embed.", "class_embed."):
        out.update({f"transformer.decoder.{k}": v for k, v in head.items() if k.startswith(group)})
    out = {**{k: v for k, v in head.items() if k.startswith("transformer.") and not k.startswith(
        ("transformer.decoder.", "transformer.keypoint_embedding", "transformer.instance_embedding", "transformer.enc_"))},
        **out}
    out.update({k: v for k, v in head.items() if k.startswith("transformer.") and k not in out})
    out.update({k: v for k, v in head.items() if k.startswith("input_proj.")})
    for k, v in sd.items():
        if k.startswith("backbone.") and not k.endswith("num_batches_tracked"):
            out[prefix + k[len("backbone.") :]] = v
    out.update({k: v for k, v in head.items() if not k.startswith(("transformer.", "input_proj."))})
    return out


class GroupPoseConverter:
    """WeightsSpec converter for one official GroupPose variant (backbone x layout)."""

    def __init__(self, backbone: str, layout: str) -> None:
        self.backbone = backbone
        self.layout = layout

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        try:
            variant = detect_variant(unwrap(state_dict))
        except CheckpointError:
            return False
        return variant is not None and (variant.backbone, variant.layout) == (self.backbone, self.layout)

    def convert(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return from_official(state_dict, f"GroupPose {self.backbone} {self.layout} checkpoint")

    def __call__(self, state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return self.convert(state_dict)

    def __repr__(self) -> str:
        return f"GroupPoseConverter({self.backbone!r}, {self.layout!r})"


R50_COCO = GroupPoseConverter("resnet50", "coco17")
SWIN_T_COCO = GroupPoseConverter("swin_t", "coco17")
SWIN_L_COCO = GroupPoseConverter("swin_l", "coco17")
SWIN_L_CROWDPOSE = GroupPoseConverter("swin_l", "crowdpose14")
