"""Helpers shared by the dekr-inference tests: fixture paths, decode inputs from fixtures,
checkpoints from manifest + recipe (fixtures copied byte for byte from shared/golden/dekr)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data" / "golden"
DEKR = DATA / "dekr"
E2E = DEKR / "e2e"


def load(name: str) -> dict:
    return torch.load(DEKR / name, weights_only=True)


def recipe():
    spec = importlib.util.spec_from_file_location("golden_recipe", DATA / "recipe.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def build_state_dict(manifest: str, const_values: dict | None = None) -> dict[str, torch.Tensor]:
    """A state_dict built from a manifest with the recipe, in manifest (official) order."""
    rec = recipe()
    sd: dict[str, torch.Tensor] = {}
    with open(DEKR / manifest) as f:
        assert f.readline().rstrip("\n").split("\t") == ["key", "shape", "dtype", "kind"]
        for line in f:
            key, shape, dtype, kind = line.rstrip("\n").split("\t")
            dims = tuple(int(s) for s in shape.split(",")) if shape else ()
            if kind == "const":
                assert const_values is not None, f"{key} is const: need its value"
                sd[key] = const_values[key].clone()
            else:
                sd[key] = rec.golden_tensor(key, dims, getattr(torch, dtype))
    return sd


def rescore_net_from_manifest(manifest: str) -> torch.nn.Module:
    """PredictOKSNet-shaped MLP (l1 -> ReLU -> l2 -> ReLU -> l3) with recipe weights."""
    sd = build_state_dict(manifest)
    fin = sd["l1.weight"].shape[1]
    net = torch.nn.Sequential()
    net.add_module("l1", torch.nn.Linear(fin, 256))
    net.add_module("r1", torch.nn.ReLU())
    net.add_module("l2", torch.nn.Linear(256, 256))
    net.add_module("r2", torch.nn.ReLU())
    net.add_module("l3", torch.nn.Linear(256, 1))
    net.load_state_dict(sd, strict=True)
    return net.eval()
