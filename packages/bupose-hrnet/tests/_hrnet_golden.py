"""Helpers for the golden-fixture tests: manifests + recipe -> state_dicts.

The files under ``data/golden/`` are byte-for-byte copies of ``shared/golden`` (``recipe.py``,
``dekr/``, ``logocap/``, ``centergroup/`` manifests and forward fixtures); never edit them.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "data" / "golden"

_spec = importlib.util.spec_from_file_location("bupose_hrnet_golden_recipe", GOLDEN / "recipe.py")
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


def recipe_state_dict(rows) -> dict[str, torch.Tensor]:
    """Recipe tensors for the given manifest rows (a fresh dict; the tensors are cached and shared).

    The last layout is cached: the COCO and CrowdPose manifests of a method share their backbone
    rows, so consecutive tests reuse the tensors instead of drawing ~65M numbers again.
    """
    return dict(_recipe_cached(tuple(rows)))


@functools.lru_cache(maxsize=1)
def _recipe_cached(rows) -> dict[str, torch.Tensor]:
    out = {}
    for key, shape, dtype, kind in rows:
        assert kind != "const", f"backbone rows never are const ({key})"
        out[key] = recipe.golden_tensor(key, shape, dtype)
    return out


def load_fixture(rel: str) -> dict:
    return torch.load(GOLDEN / rel, map_location="cpu", weights_only=True)
