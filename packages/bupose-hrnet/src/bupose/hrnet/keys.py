"""Official HRNet backbone key layouts and conversion to bupose keys.

Every official pose repository stores the same bare HRNet backbone keys (``conv1.weight``,
``layer1.0.conv1.weight``, ``stage4.2.fuse_layers.3.0.2.0.weight``...) under a repository-specific
prefix, and :class:`bupose.hrnet.model.HRNet` uses exactly those bare keys. A
:class:`~bupose.core.model.PoseModel` holds the backbone as ``backbone``, so bupose keys are
``backbone.<bare key>``:

=============== ========================= ================================================
layout          backbone prefix           last stage-4 module
=============== ========================= ================================================
``dekr``        none                      all branches (1830 keys)
``higherhrnet`` none                      branch 0 only (1752 keys; HRNet/HigherHRNet files)
``logocap``     ``backbone.``             all branches
``mmpose``      ``backbone.``             branch 0 only (mmpose detector checkpoints)
``centergroup`` ``bu_model.backbone.``    branch 0 only
=============== ========================= ================================================

Torch-free: these functions only move mapping entries around.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BACKBONE_KEY_RE",
    "OFFICIAL_LAYOUTS",
    "OfficialLayout",
    "backbone_keys",
    "convert_official",
    "detect_layout",
    "is_multi_scale",
    "split_backbone",
    "to_official",
    "unwrap_checkpoint",
]

BACKBONE_KEY_RE = re.compile(r"^(conv[12]|bn[12]|layer\d+|transition\d+|stage\d+)\.")
"""Bare HRNet backbone keys start with one of these top-level module names."""

_STAGE_MODULE_RE = re.compile(r"^stage(\d+)\.(\d+)\.")


@dataclass(frozen=True)
class OfficialLayout:
    """Where an official checkpoint keeps its HRNet backbone keys."""

    name: str
    prefix: str
    multi_scale_output: bool
    description: str


OFFICIAL_LAYOUTS: dict[str, OfficialLayout] = {
    "dekr": OfficialLayout("dekr", "", True, "HRNet/DEKR: bare backbone keys next to the head keys"),
    "higherhrnet": OfficialLayout(
        "higherhrnet", "", False, "HRNet/HigherHRNet: bare keys, last module single-output"
    ),
    "logocap": OfficialLayout("logocap", "backbone.", True, "cherubicXN/logocap: 'backbone.' prefix"),
    "mmpose": OfficialLayout(
        "mmpose", "backbone.", False, "mmpose bottom-up detector: 'backbone.' prefix, single-output"
    ),
    "centergroup": OfficialLayout(
        "centergroup", "bu_model.backbone.", False, "dvl-tum/center-group: 'bu_model.backbone.' prefix"
    ),
}
"""Official layout name -> prefix and topology."""

_WRAPPER_KEYS = ("state_dict", "model", "weights")


def unwrap_checkpoint(obj: Mapping[str, Any], where: str = "checkpoint") -> dict[str, Any]:
    """The plain state_dict inside an official file.

    Takes the ``state_dict`` / ``model`` / ``weights`` entry of a wrapper dict (mmcv, Lightning) and
    strips a ``module.`` prefix that every key carries (DataParallel); raises ``ValueError`` naming
    ``where`` for anything that is not a mapping of names to tensors.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected a dict of tensors, found {type(obj).__name__}")
    sd: Mapping[str, Any] = obj
    for key in _WRAPPER_KEYS:
        inner = sd.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
            sd = inner
            break
    out = dict(sd)
    if not out:
        raise ValueError(f"{where}: the state_dict is empty")
    bad = [k for k, v in out.items() if not isinstance(k, str) or not hasattr(v, "shape")]
    if bad:
        raise ValueError(
            f"{where}: expected tensors only, found non-tensor entries {[str(k) for k in bad[:8]]}"
        )
    if all(k.startswith("module.") for k in out):
        out = {k[len("module.") :]: v for k, v in out.items()}
    return out


def split_backbone(state_dict: Mapping[str, Any], layout: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(bare backbone entries, every other entry)`` of an official state_dict in ``layout``.

    With a prefix, every key under it is a backbone key; without one (DEKR, HigherHRNet) the bare
    HRNet top-level names (:data:`BACKBONE_KEY_RE`) are. Other entries keep their names.
    """
    spec = _layout(layout)
    backbone: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in state_dict.items():
        if spec.prefix:
            if key.startswith(spec.prefix):
                backbone[key[len(spec.prefix) :]] = value
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


def detect_layout(state_dict: Mapping[str, Any]) -> str | None:
    """The official layout (a key of :data:`OFFICIAL_LAYOUTS`) of ``state_dict``, or ``None``."""
    keys = list(state_dict)
    for name in ("centergroup", "logocap", "dekr"):
        prefix = OFFICIAL_LAYOUTS[name].prefix
        if f"{prefix}conv1.weight" in state_dict and f"{prefix}layer1.0.conv1.weight" in state_dict:
            bare = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
            multi = is_multi_scale(bare)
            if name == "centergroup":
                return name
            if name == "logocap":
                return "logocap" if multi else "mmpose"
            return "dekr" if multi else "higherhrnet"
    return None


def convert_official(
    state_dict: Mapping[str, Any], layout: str | None = None, *, prefix: str = "backbone."
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Official checkpoint -> ``(backbone entries under bupose keys, every other entry unchanged)``.

    ``layout`` is detected when not given (``ValueError`` if it cannot be). ``prefix`` is where the
    backbone lives in the target module (``"backbone."`` in a PoseModel, ``""`` for a bare HRNet).
    """
    sd = unwrap_checkpoint(state_dict)
    if layout is None:
        layout = detect_layout(sd)
        if layout is None:
            raise ValueError(
                "cannot tell which official HRNet layout this state_dict uses: none of "
                "'conv1.weight', 'backbone.conv1.weight', 'bu_model.backbone.conv1.weight' (with "
                f"layer1) is present; first keys: {list(sd)[:5]}"
            )
    backbone, rest = split_backbone(sd, layout)
    if not backbone:
        raise ValueError(f"no HRNet backbone keys for layout {layout!r} (prefix {_layout(layout).prefix!r})")
    return {prefix + k: v for k, v in backbone.items()}, rest


def to_official(state_dict: Mapping[str, Any], layout: str, *, prefix: str = "backbone.") -> dict[str, Any]:
    """The inverse of :func:`convert_official` for the backbone part: bupose keys -> ``layout``."""
    spec = _layout(layout)
    out = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            out[spec.prefix + key[len(prefix) :]] = value
    return out


def backbone_keys(keys: list[str] | Mapping[str, Any], layout: str) -> list[str]:
    """The bare backbone keys among ``keys`` of an official ``layout`` (manifest rows, state_dicts)."""
    backbone, _ = split_backbone(dict.fromkeys(keys), layout)
    return list(backbone)


def _layout(layout: str) -> OfficialLayout:
    try:
        return OFFICIAL_LAYOUTS[layout]
    except KeyError:
        raise ValueError(
            f"unknown official HRNet layout {layout!r}; known: {', '.join(OFFICIAL_LAYOUTS)}"
        ) from None
