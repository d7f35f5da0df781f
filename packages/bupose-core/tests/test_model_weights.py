from __future__ import annotations

import importlib
import importlib.metadata as md
import os
from pathlib import Path

import pytest
import torch

from bupose.core.model import LayoutMismatchError, build_model
from bupose.core.plugins import Registry, UnknownComponentError
from bupose.core.weights import (
    CheckpointError,
    CheckpointMismatchError,
    atomic_write,
    load_state_dict_strict,
    read_checkpoint,
    save_safetensors,
)

TINY = """
import torch
from torch import nn
from bupose.core import hookimpl, BackboneSpec, HeadSpec, FeatureShape
from bupose.core.model import Backbone, Head

class TinyBackbone(Backbone):
    def __init__(self, width=4):
        super().__init__()
        self.width = width
        self.conv = nn.Conv2d(3, width, 3, 4, 1)
    def output_shape(self):
        return {"s4": FeatureShape(self.width, 4)}
    def forward(self, x):
        return {"s4": self.conv(x)}

class TinyHead(Head):
    def __init__(self, input_shapes, layout):
        super().__init__(input_shapes, layout)
        self.out = nn.Conv2d(input_shapes["s4"].channels, layout.num_keypoints, 1)
    def forward(self, f, batch=None):
        return {"heatmap": self.out(f["s4"])}

@hookimpl
def bupose_register_backbones(register):
    register(BackboneSpec(name="tiny", factory="fakeplug_tiny:TinyBackbone", summary="t",
                          outputs={"s4": FeatureShape(4, 4)}))

@hookimpl
def bupose_register_heads(register):
    register(HeadSpec(name="tinyhead", factory="fakeplug_tiny:TinyHead", summary="t", layouts=("coco17",)))
"""


@pytest.fixture
def registry(fake_site: Path, fake_dist) -> Registry:
    fake_dist(fake_site, "fake-tiny", "0.1", {"fakeplug_tiny": TINY}, {"tiny": "fakeplug_tiny"})
    importlib.invalidate_caches()
    return Registry().load([ep for ep in md.entry_points(group="bupose") if ep.name == "tiny"])


def test_build_model_sizes_head_from_backbone(registry: Registry) -> None:
    model = build_model("tinyhead", "tiny", registry=registry, backbone_kwargs={"width": 6})
    assert model.head.out.in_channels == 6
    out = model(torch.zeros(2, 3, 32, 32))
    assert out["heatmap"].shape == (2, 17, 8, 8)
    assert model.metadata()["layout"] == "coco17"
    assert set(model.state_dict()) == {"backbone.conv.weight", "backbone.conv.bias", "head.out.weight", "head.out.bias"}


def test_build_model_errors(registry: Registry) -> None:
    with pytest.raises(LayoutMismatchError, match="supports: coco17"):
        build_model("tinyhead", "tiny", "crowdpose14", registry=registry)
    with pytest.raises(UnknownComponentError, match="Did you mean 'tiny'"):
        build_model("tinyhead", "tinny", registry=registry)
    with pytest.raises(UnknownComponentError, match="bupose-dekr"):
        build_model("dkr", "tiny", registry=registry)


def test_safetensors_round_trip_with_metadata(registry: Registry, tmp_path: Path) -> None:
    model = build_model("tinyhead", "tiny", registry=registry)
    out = tmp_path / "out"
    path = save_safetensors(out / "m.safetensors", model.state_dict(), model.metadata())
    sd, meta = read_checkpoint(path)
    assert meta["head"] == "tinyhead" and meta["backbone"] == "tiny"
    other = build_model("tinyhead", "tiny", registry=registry)
    load_state_dict_strict(other, sd, str(path))
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k])
    assert [p.name for p in out.iterdir()] == ["m.safetensors"]  # no temp file left


def test_strict_load_lists_missing_unexpected_and_shapes(registry: Registry) -> None:
    model = build_model("tinyhead", "tiny", registry=registry)
    sd = dict(model.state_dict())
    sd.pop("head.out.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["backbone.conv.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_dict_strict(model, sd, "ckpt.pth")
    msg = str(info.value)
    assert "ckpt.pth" in msg and "missing keys: head.out.bias" in msg
    assert "unexpected keys: extra.weight" in msg and "backbone.conv.weight (1, 1, 1, 1) vs (4, 3, 3, 3)" in msg


def test_read_checkpoint_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "obj": Path("/etc/passwd")}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(tmp_path / "empty.pth")


def test_read_checkpoint_allows_argparse_namespace(tmp_path: Path) -> None:
    import argparse

    path = tmp_path / "official.pth"
    torch.save({"w": torch.ones(2), "args": argparse.Namespace(lr=0.1)}, path)
    sd, meta = read_checkpoint(path)
    assert torch.equal(sd["w"], torch.ones(2)) and meta == {}


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def failing(tmp: str) -> None:
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]
