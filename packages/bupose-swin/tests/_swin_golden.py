"""Golden-fixture helpers: GroupPose Swin manifests + recipe -> backbone state_dicts.

``data/golden/recipe.py``, ``data/golden/grouppose/manifest_swinT_coco.tsv``,
``manifest_swinL_coco.tsv`` (its backbone rows equal those of ``manifest_swinL_crowdpose.tsv``) and
``consts_swin.pt`` are byte-for-byte copies of shared/golden. Never edit them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "data" / "golden"
GROUPPOSE_PREFIX = "backbone.0."
"""GroupPose's Swin backbone keys: ``backbone.0.<official Swin key>`` (Joiner's first module)."""

MANIFESTS = {"swin_t": "grouppose/manifest_swinT_coco.tsv", "swin_l": "grouppose/manifest_swinL_coco.tsv"}
WINDOW = {"swin_t": 7, "swin_l": 12}

_spec = importlib.util.spec_from_file_location("bupose_swin_golden_recipe", GOLDEN / "recipe.py")
assert _spec is not None and _spec.loader is not None
recipe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipe)


def read_manifest(path: Path) -> list[tuple[str, tuple[int, ...], torch.dtype, str]]:
    """Rows ``(key, shape, dtype, kind)`` of a manifest, in file order."""
    rows = []
    with open(path) as f:
        assert f.readline().rstrip("\n").split("\t") == ["key", "shape", "dtype", "kind"]
        for line in f:
            key, shape, dtype, kind = line.rstrip("\n").split("\t")
            dims = tuple(int(s) for s in shape.split(",")) if shape else ()
            rows.append((key, dims, getattr(torch, dtype), kind))
    return rows


def backbone_rows(name: str):
    """The manifest's backbone rows with GroupPose's prefix stripped, in manifest order."""
    rows = read_manifest(GOLDEN / MANIFESTS[name])
    return [
        (k[len(GROUPPOSE_PREFIX) :], s, d, kind) for k, s, d, kind in rows if k.startswith(GROUPPOSE_PREFIX)
    ]


def consts(window: int) -> torch.Tensor:
    """The official ``relative_position_index`` for a window size (consts_swin.pt)."""
    d = torch.load(GOLDEN / "grouppose" / "consts_swin.pt", map_location="cpu", weights_only=True)
    return d[f"window{window}/relative_position_index"]


def recipe_backbone_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Bare backbone keys: recipe tensors (drawn under the full official key), consts from consts_swin.pt."""
    index = consts(WINDOW[name])
    out = {}
    for key, shape, dtype, kind in backbone_rows(name):
        if kind == "const":
            assert key.endswith("attn.relative_position_index") and tuple(index.shape) == shape
            out[key] = index.clone()
        else:
            out[key] = recipe.golden_tensor(GROUPPOSE_PREFIX + key, shape, dtype)
    return out
