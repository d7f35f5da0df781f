"""HRNet backbone keys inside official checkpoints, and their conversion to bupose keys.

Official pose repositories store the bare HRNet backbone keys (``conv1.weight``,
``layer1.0.conv1.weight``, ``stage4.2.fuse_layers.3.0.2.0.weight``...) under a repository-specific
prefix ("file prefix"), and :class:`bupose.hrnet.model.HRNet` uses exactly those bare keys. A
:class:`~bupose.core.model.PoseModel` holds the backbone as ``backbone``, so bupose keys are
``backbone.<bare key>``.

This package knows no head package's layout: the head package that reads an official checkpoint
passes its file prefix (``""`` for bare keys next to the head keys, e.g. ``"backbone."`` or
``"bu_model.backbone."``); :func:`find_backbone_prefix` finds it from the keys alone, and
:func:`is_multi_scale` tells from the bare keys whether the last stage fuses into every branch.

Torch-free: these functions only move mapping entries around.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bupose.core.weights import unwrap_checkpoint

__all__ = [
    "BACKBONE_KEY_RE",
    "backbone_keys",
    "convert_official",
    "find_backbone_prefix",
    "is_multi_scale",
    "split_backbone",
    "to_official",
]

BACKBONE_KEY_RE = re.compile(r"^(conv[12]|bn[12]|layer\d+|transition\d+|stage\d+)\.")
"""Bare HRNet backbone keys start with one of these top-level module names."""

_STAGE_MODULE_RE = re.compile(r"^stage(\d+)\.(\d+)\.")
_STEM_KEY = "conv1.weight"
_LAYER1_KEY = "layer1.0.conv1.weight"


def split_backbone(state_dict: Mapping[str, Any], file_prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(bare backbone entries, every other entry)`` of an official state_dict whose backbone keys
    carry ``file_prefix``.

    With a prefix, every key under it is a backbone key; without one (``""``: bare keys next to the
    head keys) the bare HRNet top-level names (:data:`BACKBONE_KEY_RE`) are. Other entries keep their
    names.
    """
    backbone: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in state_dict.items():
        if file_prefix:
            if key.startswith(file_prefix):
                backbone[key[len(file_prefix) :]] = value
            else:
                rest[key] = value
        elif BACKBONE_KEY_RE.match(key):
            backbone[key] = value
        else:
            rest[key] = value
    return backbone, rest


def is_multi_scale(bare_keys: Mapping[str, Any] | list[str]) -> bool:
    """Whether bare backbone keys have fusion into every branch in the last module of the last stage."""
    last: tuple[int, int] | None = None
    for key in bare_keys:
        m = _STAGE_MODULE_RE.match(key)
        if m:
            pos = (int(m.group(1)), int(m.group(2)))
            last = pos if last is None or pos > last else last
    if last is None:
        return False
    prefix = f"stage{last[0]}.{last[1]}.fuse_layers.1."
    return any(k.startswith(prefix) for k in bare_keys)


def find_backbone_prefix(state_dict: Mapping[str, Any] | list[str]) -> str | None:
    """The file prefix under which ``state_dict`` holds an HRNet backbone (the shortest ``P`` with
    both ``P + "conv1.weight"`` and ``P + "layer1.0.conv1.weight"``), or ``None``."""
    keys = set(state_dict)
    found = [
        k[: -len(_STEM_KEY)]
        for k in keys
        if k.endswith(_STEM_KEY)
        and k[: -len(_STEM_KEY)] + _LAYER1_KEY in keys
        and (k == _STEM_KEY or k[: -len(_STEM_KEY)].endswith("."))
    ]
    return min(found, key=len) if found else None


def convert_official(
    state_dict: Mapping[str, Any], file_prefix: str | None = None, *, prefix: str = "backbone."
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Official checkpoint -> ``(backbone entries under bupose keys, every other entry unchanged)``.

    ``file_prefix`` (where the file keeps the backbone) is found with :func:`find_backbone_prefix`
    when not given (``ValueError`` if it cannot be). ``prefix`` is where the backbone lives in the
    target module (``"backbone."`` in a PoseModel, ``""`` for a bare HRNet).
    """
    sd = unwrap_checkpoint(state_dict)
    if file_prefix is None:
        file_prefix = find_backbone_prefix(sd)
        if file_prefix is None:
            raise ValueError(
                "cannot find an HRNet backbone in this state_dict: no key P + 'conv1.weight' with "
                f"P + 'layer1.0.conv1.weight' next to it; first keys: {list(sd)[:5]}"
            )
    backbone, rest = split_backbone(sd, file_prefix)
    if not backbone:
        raise ValueError(f"no HRNet backbone keys under the file prefix {file_prefix!r}")
    return {prefix + k: v for k, v in backbone.items()}, rest


def to_official(
    state_dict: Mapping[str, Any], file_prefix: str, *, prefix: str = "backbone."
) -> dict[str, Any]:
    """The inverse of :func:`convert_official` for the backbone part: bupose keys -> official keys
    under ``file_prefix``."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            out[file_prefix + key[len(prefix) :]] = value
    return out


def backbone_keys(keys: list[str] | Mapping[str, Any], file_prefix: str) -> list[str]:
    """The bare backbone keys among ``keys`` of an official file with ``file_prefix`` (manifest rows,
    state_dicts)."""
    backbone, _ = split_backbone(dict.fromkeys(keys), file_prefix)
    return list(backbone)
