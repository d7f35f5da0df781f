"""Helpers for the DEKR golden fixtures (copied byte for byte from shared/golden/dekr/).

Checkpoints are built from the manifests and the recipe (``data/golden/recipe.py``) inside the tests;
no weight file is committed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "data" / "golden"
DEKR = GOLDEN / "dekr"
E2E = DEKR / "e2e"


def recipe():
    spec = importlib.util.spec_from_file_location("_dekr_recipe", GOLDEN / "recipe.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def fixture(name: str) -> dict:
    return torch.load(DEKR / name, weights_only=True)


load = fixture


def manifest(name: str) -> list[tuple[str, tuple[int, ...], torch.dtype, str]]:
    rows = []
    with open(DEKR / name) as f:
        assert f.readline().rstrip("\n").split("\t") == ["key", "shape", "dtype", "kind"]
        for line in f:
            key, shape, dtype, kind = line.rstrip("\n").split("\t")
            dims = tuple(int(s) for s in shape.split(",")) if shape else ()
            rows.append((key, dims, getattr(torch, dtype), kind))
    return rows


def const_values() -> dict[str, torch.Tensor]:
    fw = fixture("forward_w32_coco.pt")
    return {k[len("const/") :]: v for k, v in fw.items() if k.startswith("const/")}


def build_state_dict(manifest_name: str, keep=None) -> dict[str, torch.Tensor]:
    """The recipe state_dict of a manifest (official key layout); ``keep(key)`` filters keys."""
    rec = recipe()
    const = None
    sd = {}
    for key, shape, dtype, kind in manifest(manifest_name):
        if keep is not None and not keep(key):
            continue
        if kind == "const":
            if const is None:
                const = const_values()
            # const rows of every variant hold the same 2x9 grid (README); W32 COCO stores them
            value = const.get(key, const["offset_feature_layers.0.0.regular_matrix"])
            sd[key] = value.clone()
        else:
            sd[key] = rec.golden_tensor(key, shape, dtype)
    return sd


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str) -> None:
    """max|Δ| ≤ rel·max(1, max|expected|), the README tolerance."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    tol = rel * max(1.0, float(expected.abs().max()))
    diff = float((actual.double() - expected.double()).abs().max())
    assert diff <= tol, f"{what}: max|Δ| = {diff:.3e} > {tol:.3e}"
