"""Golden-fixture helpers: manifests + recipe -> state_dicts, the R-50 forward input.

``data/golden/recipe.py`` and ``data/golden/grouppose/manifest_r50_coco.tsv`` are byte-for-byte copies
of shared/golden; ``forward_r50_coco_backbone.pt`` is the backbone part of
``grouppose/forward_r50_coco.pt`` (``data/extract_r50_backbone.py``). Never edit them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

GOLDEN = Path(__file__).parent / "data" / "golden"
GROUPPOSE_PREFIX = "backbone.0.body."
"""GroupPose's R-50 backbone keys: ``backbone.0.body.<torchvision key>`` (Joiner -> BackboneBase.body)."""

_spec = importlib.util.spec_from_file_location("bupose_resnet_golden_recipe", GOLDEN / "recipe.py")
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


def backbone_rows(manifest: str = "grouppose/manifest_r50_coco.tsv"):
    """The manifest's backbone rows with GroupPose's prefix stripped, in manifest order."""
    rows = read_manifest(GOLDEN / manifest)
    return [
        (k[len(GROUPPOSE_PREFIX) :], s, d, kind) for k, s, d, kind in rows if k.startswith(GROUPPOSE_PREFIX)
    ]


def recipe_backbone_state_dict(manifest: str = "grouppose/manifest_r50_coco.tsv") -> dict[str, torch.Tensor]:
    """Recipe tensors of the backbone rows (filled under their full official key), bare keys."""
    return {k: recipe.golden_tensor(GROUPPOSE_PREFIX + k, s, d) for k, s, d, _ in backbone_rows(manifest)}


def load_fixture(rel: str) -> dict:
    return torch.load(GOLDEN / rel, map_location="cpu", weights_only=True)


def forward_input() -> torch.Tensor:
    """The (2, 3, 128, 160) batch of forward_r50_coco.pt: recipe inputs, zero-padded bottom/right."""
    fx = load_fixture("grouppose/forward_r50_coco_backbone.pt")
    sizes = fx["meta/image_sizes_hw"].tolist()
    x = torch.zeros(tuple(fx["input/shape"].tolist()))
    for i, (h, w) in enumerate(sizes):
        x[i, :, :h, :w] = recipe.golden_input((3, h, w), seed=fx["meta/input_seed"] + i)
    assert abs(x.double().sum().item() - fx["input/sum"]) < 1e-6
    assert abs(x.double().abs().sum().item() - fx["input/abs_sum"]) < 1e-6
    return x
