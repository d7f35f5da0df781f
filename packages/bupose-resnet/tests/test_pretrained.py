"""torchvision ImageNet ResNet files -> backbones: ``fc`` dropped by name, everything else strict.

Synthetic files: the torchvision key layout (this package's ``bn`` backbone keys plus ``fc``) filled
by the golden recipe; the "old release" variant has no ``num_batches_tracked`` counters.
"""

from __future__ import annotations

import pytest
import torch
from _resnet_golden import recipe

from bupose.core.cli.convert import convert_checkpoint
from bupose.core.model import build_backbone
from bupose.core.weights import CheckpointMismatchError, detect_official, read_checkpoint
from bupose.resnet.pretrained import (
    IMAGENET_RESNET18,
    IMAGENET_RESNET34,
    IMAGENET_RESNET50,
    IMAGENET_RESNET101,
    convert_torchvision,
    expected_shapes,
    load_imagenet_pretrained,
)

COUNTER = "num_batches_tracked"


def _file(name: str, *, counters: bool = True, device: str = "cpu") -> dict[str, torch.Tensor]:
    shapes = dict(expected_shapes(name, "bn"))
    c5 = 2048 if "layer4.0.conv3.weight" in shapes else 512
    shapes["fc.weight"], shapes["fc.bias"] = (1000, c5), (1000,)
    out = {}
    for key, shape in shapes.items():
        if key.endswith(COUNTER):
            if counters:
                out[key] = torch.tensor(12345, device=device)
        elif device == "meta":
            out[key] = torch.empty(shape, device="meta")
        else:
            out[key] = recipe.golden_tensor(key, shape)
    return out


@pytest.fixture(scope="module")
def r18() -> dict[str, torch.Tensor]:
    return _file("resnet18")


def test_convert_drops_fc_and_keeps_everything_else(r18) -> None:
    out = convert_torchvision(r18, "resnet18")
    assert list(out) == list(expected_shapes("resnet18"))
    assert not any(k.startswith("fc.") for k in out)
    assert out["layer4.1.conv2.weight"] is r18["layer4.1.conv2.weight"]
    assert out["layer1.0.bn1.num_batches_tracked"].item() == 12345


def test_load_file_into_trainable_and_frozen_backbones(r18, tmp_path) -> None:
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(r18, path)
    for kwargs in ({}, {"norm": "frozen_bn", "frozen_stages": 1}):
        backbone = build_backbone("resnet18", **kwargs)
        assert load_imagenet_pretrained(backbone, path) is backbone
        for key, value in backbone.state_dict().items():
            assert torch.equal(value, r18[key]), key
    assert not any(k.endswith(COUNTER) for k in backbone.state_dict())
    assert not backbone.conv1.weight.requires_grad and backbone.layer2[0].conv1.weight.requires_grad


def test_old_release_without_counters() -> None:
    old = _file("resnet18", counters=False)
    out = convert_torchvision(old, "resnet18")
    assert out["bn1.num_batches_tracked"].item() == 0
    frozen = convert_torchvision(old, "resnet18", norm="frozen_bn")
    assert list(frozen) == list(expected_shapes("resnet18", "frozen_bn"))


def test_mismatches_are_listed_with_the_file_name(r18) -> None:
    broken = dict(r18)
    del broken["layer3.1.conv1.weight"]
    broken["layer5.0.conv1.weight"] = torch.zeros(1)
    broken["layer2.0.bn1.weight"] = torch.zeros(7)
    with pytest.raises(CheckpointMismatchError) as err:
        convert_torchvision(broken, "resnet18", where="my.pth")
    msg = str(err.value)
    assert msg.startswith("my.pth (after dropping fc.*)")
    assert "missing keys: layer3.1.conv1.weight" in msg
    assert "unexpected keys: layer5.0.conv1.weight" in msg
    assert "layer2.0.bn1.weight (7,) vs (128,)" in msg
    with pytest.raises(
        CheckpointMismatchError, match=r"missing keys: layer1\.0\.conv3\.weight.*\(165 in all\)"
    ):
        convert_torchvision(r18, "resnet50")


def test_wrapped_and_dataparallel_files(r18) -> None:
    wrapped = {"state_dict": {f"module.{k}": v for k, v in r18.items()}, "epoch": 90}
    backbone = load_imagenet_pretrained(build_backbone("resnet18"), wrapped)
    assert torch.equal(backbone.layer1[0].conv1.weight, r18["layer1.0.conv1.weight"])
    assert IMAGENET_RESNET18.detect(wrapped)


def test_detect_tells_the_depths_apart(r18) -> None:
    files = {name: _file(name, device="meta") for name in ("resnet34", "resnet50", "resnet101")}
    files["resnet18"] = r18
    converters = {
        "resnet18": IMAGENET_RESNET18,
        "resnet34": IMAGENET_RESNET34,
        "resnet50": IMAGENET_RESNET50,
        "resnet101": IMAGENET_RESNET101,
    }
    for file_name, sd in files.items():
        for conv_name, converter in converters.items():
            assert converter.detect(sd) == (file_name == conv_name), (file_name, conv_name)
    old50 = _file("resnet50", counters=False, device="meta")
    assert IMAGENET_RESNET50.detect(old50)
    assert not IMAGENET_RESNET18.detect({k: v for k, v in r18.items() if not k.startswith("fc.")})
    assert not IMAGENET_RESNET18.detect({"weights": 3})
    spec = detect_official(r18, role="backbone")
    assert spec is not None and spec.name == "resnet18_imagenet"
    assert detect_official(files["resnet50"], role="backbone").name == "resnet50_imagenet"


def test_bupose_convert_writes_a_backbone_safetensors(r18, tmp_path) -> None:
    src = tmp_path / "resnet18-5c106cde.pth"
    torch.save({k: v for k, v in r18.items() if not k.endswith(COUNTER)}, src)
    meta = convert_checkpoint(src, tmp_path / "r18.safetensors")
    assert (
        meta["role"] == "backbone"
        and meta["backbone"] == "resnet18"
        and meta["converted_from"] == "resnet18_imagenet"
    )
    tensors, stored = read_checkpoint(tmp_path / "r18.safetensors")
    assert stored["backbone"] == "resnet18"
    assert set(tensors) == set(expected_shapes("resnet18"))  # safetensors stores keys sorted
    assert torch.equal(tensors["layer4.1.bn2.running_var"], r18["layer4.1.bn2.running_var"])
