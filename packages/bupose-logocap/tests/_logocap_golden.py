"""Helpers shared by the bupose-logocap tests: fixture paths and checkpoints built from manifest +
recipe (fixtures copied byte for byte from shared/golden/logocap, recipe.py from shared/golden)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data" / "golden"
LOGOCAP = DATA / "logocap"


def fixture(name: str) -> dict:
    return torch.load(LOGOCAP / name, weights_only=True)


def recipe():
    spec = importlib.util.spec_from_file_location("golden_recipe", DATA / "recipe.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def manifest(name: str) -> list[tuple[str, tuple[int, ...], torch.dtype, str]]:
    """Rows (key, shape, dtype, kind) of a manifest, in official order."""
    rows = []
    with open(LOGOCAP / name) as f:
        assert f.readline().rstrip("\n").split("\t") == ["key", "shape", "dtype", "kind"]
        for line in f:
            key, shape, dtype, kind = line.rstrip("\n").split("\t")
            dims = tuple(int(s) for s in shape.split(",")) if shape else ()
            rows.append((key, dims, getattr(torch, dtype), kind))
    return rows


def build_state_dict(name: str = "manifest_w32_coco.tsv", keep=None) -> dict[str, torch.Tensor]:
    """The official-layout state_dict the recipe gives for a manifest (LOGO-CAP has no const rows)."""
    rec = recipe()
    sd: dict[str, torch.Tensor] = {}
    for key, dims, dtype, kind in manifest(name):
        assert kind != "const", key
        if keep is None or keep(key):
            sd[key] = rec.golden_tensor(key, dims, dtype)
    return sd


def headscaled(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The "headscaled" adjustment (shared/golden README, DEKR e2e) carried over to LOGO-CAP's head
    names, plus the decode fixture's ``joints_mlp.9.bias`` + 0.25: final heatmap/offset conv
    weights x 1e-3, centre-channel bias + 1.5 (all float32)."""
    out = dict(sd)
    out["final_layer_cls.weight"] = sd["final_layer_cls.weight"] * 1e-3
    out["final_layer_reg.weight"] = sd["final_layer_reg.weight"] * 1e-3
    bias = sd["final_layer_cls.bias"].clone()
    bias[17] = bias[17] + 1.5
    out["final_layer_cls.bias"] = bias
    out["joints_mlp.9.bias"] = sd["joints_mlp.9.bias"] + 0.25
    return out


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a − b| / max(1, max|b|)."""
    return float((a.double() - b.double()).abs().max()) / max(1.0, float(b.abs().max()))
