"""Helpers for the SimplePose golden tests (fixtures copied byte for byte from shared/golden/simplepose)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data" / "golden"
SP = DATA / "simplepose"
MANIFEST = SP / "manifest_default.tsv"


def load(name: str) -> dict:
    return torch.load(SP / name, weights_only=True)


def recipe():
    spec = importlib.util.spec_from_file_location("golden_recipe", DATA / "recipe.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def read_manifest() -> list[tuple[str, tuple[int, ...], str, str]]:
    rows = []
    with open(MANIFEST) as f:
        assert f.readline().rstrip("\n").split("\t") == ["key", "shape", "dtype", "kind"]
        for line in f:
            key, shape, dtype, kind = line.rstrip("\n").split("\t")
            rows.append((key, tuple(int(s) for s in shape.split(",")) if shape else (), dtype, kind))
    return rows


def official_state_dict() -> dict[str, torch.Tensor]:
    """The official ``posenet.*`` state_dict built from the manifest with the golden recipe."""
    rec = recipe()
    return {k: rec.golden_tensor(k, shape, getattr(torch, dtype)) for k, shape, dtype, _ in read_manifest()}
