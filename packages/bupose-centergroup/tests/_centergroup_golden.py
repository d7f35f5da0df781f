"""Helpers shared by the bupose-centergroup tests: fixture paths and state_dicts built from manifest +
recipe (fixtures copied byte for byte from shared/golden/centergroup, recipe.py from shared/golden)."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data" / "golden"
CG = DATA / "centergroup"
MANIFESTS = {
    "w32_coco": ("manifest_w32_coco.tsv", "higherhrnet_w32", "coco17"),
    "w48_coco": ("manifest_w48_coco.tsv", "higherhrnet_w48", "coco17"),
    "w48_crowdpose": ("manifest_w48_crowdpose.tsv", "higherhrnet_w48", "crowdpose14"),
}


@cache
def fixture(name: str) -> dict:
    return torch.load(CG / name, weights_only=True)


@cache
def recipe():
    spec = importlib.util.spec_from_file_location("golden_recipe", DATA / "recipe.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def manifest(name: str) -> list[tuple[str, tuple[int, ...], torch.dtype, str]]:
    """Rows (key, shape, dtype, kind) of a manifest, in official order."""
    rows = []
    with open(CG / name) as f:
        assert f.readline().rstrip("\n").split("\t") == ["key", "shape", "dtype", "kind"]
        for line in f:
            key, shape, dtype, kind = line.rstrip("\n").split("\t")
            dims = tuple(int(s) for s in shape.split(",")) if shape else ()
            rows.append((key, dims, getattr(torch, dtype), kind))
    return rows


def build_state_dict(name: str = "manifest_w32_coco.tsv") -> dict[str, torch.Tensor]:
    """The official-layout state_dict the recipe gives for a manifest (no const rows)."""
    rec = recipe()
    sd: dict[str, torch.Tensor] = {}
    for key, dims, dtype, kind in manifest(name):
        assert kind != "const", key
        sd[key] = rec.golden_tensor(key, dims, dtype)
    return sd


_MODELS: dict[str, torch.nn.Module] = {}


def golden_model(variant: str = "w32_coco"):
    """A bupose CenterGroup model with the recipe weights of ``variant`` (eval mode, cached)."""
    if variant not in _MODELS:
        from bupose.centergroup.convert import from_official
        from bupose.core import build_model

        name, backbone, layout = MANIFESTS[variant]
        model = build_model("centergroup", backbone, layout)
        model.load_state_dict(from_official(build_state_dict(name)), strict=True)
        _MODELS[variant] = model.eval()
    return _MODELS[variant]


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a − b| / max(1, max|b|)."""
    return float((a.double() - b.double()).abs().max()) / max(1.0, float(b.abs().max()))
