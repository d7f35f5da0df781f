"""Helpers shared by the bupose-grouppose tests: fixture paths and official-layout state_dicts built
from a manifest + the golden recipe (fixtures copied byte for byte from shared/golden/grouppose,
recipe.py from shared/golden; ``forward_r50_coco_outputs.pt`` is extracted by
``data/extract_forward.py``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data" / "golden"
GP = DATA / "grouppose"
MANIFESTS = {
    "r50_coco": ("manifest_r50_coco.tsv", 662),
    "swinT_coco": ("manifest_swinT_coco.tsv", 584),
    "swinL_coco": ("manifest_swinL_coco.tsv", 752),
    "swinL_crowdpose": ("manifest_swinL_crowdpose.tsv", 752),
}


def fixture(name: str) -> dict:
    return torch.load(GP / name, weights_only=True)


def recipe():
    spec = importlib.util.spec_from_file_location("golden_recipe", DATA / "recipe.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def aliases() -> dict[str, str]:
    return json.loads((GP / "aliases.json").read_text())["aliases"]


def manifest(variant: str) -> list[tuple[str, tuple[int, ...], torch.dtype, str]]:
    """Rows (key, shape, dtype, kind) of a manifest, in official order."""
    rows = []
    with open(GP / MANIFESTS[variant][0]) as f:
        assert f.readline().rstrip("\n").split("\t") == ["key", "shape", "dtype", "kind"]
        for line in f:
            key, shape, dtype, kind = line.rstrip("\n").split("\t")
            dims = tuple(int(s) for s in shape.split(",")) if shape else ()
            rows.append((key, dims, getattr(torch, dtype), kind))
    return rows


def _const(key: str, window: int) -> torch.Tensor:
    consts = fixture("consts_swin.pt")
    name = [k for k in consts if k.startswith(f"window{window}/")]
    return consts[name[0]]


def build_state_dict(variant: str = "r50_coco", *, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The official-layout state_dict of a manifest filled by the recipe (aliases hold their
    canonical key's tensor; const rows take ``consts_swin.pt``). ``device="meta"`` gives shapes only
    (aliases share one tensor)."""
    rec = recipe()
    alias = aliases()
    out: dict[str, torch.Tensor] = {}
    window = 7 if variant.startswith("swinT") else 12
    rows = manifest(variant)
    meta = {k: torch.empty(shape, dtype=dtype, device="meta") for k, shape, dtype, _ in rows if k not in alias}
    for key, shape, dtype, kind in rows:
        if device == "meta":
            out[key] = meta[alias.get(key, key)]
        elif kind == "const":
            out[key] = _const(key, window).clone()
        else:
            out[key] = rec.golden_tensor(alias.get(key, key), shape, dtype)
    return out
