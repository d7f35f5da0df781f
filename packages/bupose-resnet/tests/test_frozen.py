"""FrozenBatchNorm2d, frozen stages, option validation, presets and the plugin's registrations."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from bupose.core.model import build_backbone
from bupose.core.plugins import get_registry
from bupose.core.specs import BackboneSpec, FeatureShape
from bupose.resnet.config import PRESETS, ResNetConfig, output_shapes
from bupose.resnet.model import FrozenBatchNorm2d, ResNet, build_resnet


def _meta(name: str, **kwargs) -> ResNet:
    with torch.device("meta"):
        return build_resnet(name, **kwargs)


# torchvision's parameter and state_dict key counts without the classifier (fc: 512*e*1000 + 1000, 2 keys).
@pytest.mark.parametrize(
    ("name", "params", "keys"),
    [
        ("resnet18", 11_689_512 - 513_000, 122 - 2),
        ("resnet34", 21_797_672 - 513_000, 218 - 2),
        ("resnet50", 25_557_032 - 2_049_000, 320 - 2),
        ("resnet101", 44_549_160 - 2_049_000, 626 - 2),
    ],
)
def test_presets_match_torchvision_sizes(name: str, params: int, keys: int) -> None:
    model = _meta(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == keys


def test_frozen_bn_matches_batchnorm_in_eval() -> None:
    g = torch.Generator().manual_seed(0)
    bn = nn.BatchNorm2d(8).eval()
    frozen = FrozenBatchNorm2d(8)
    for name in ("weight", "bias", "running_mean", "running_var"):
        value = torch.rand(8, generator=g) + 0.5
        getattr(bn, name).data.copy_(value)
        getattr(frozen, name).copy_(value)
    x = torch.randn(3, 8, 5, 7, generator=g)
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-6, atol=1e-6)
    assert list(frozen.state_dict()) == ["weight", "bias", "running_mean", "running_var"]
    assert not list(frozen.parameters())
    fresh = FrozenBatchNorm2d(4)(x[:, :4])  # the identity up to 1/sqrt(1 + eps)
    torch.testing.assert_close(fresh, x[:, :4] / (1 + 1e-5) ** 0.5, rtol=1e-6, atol=1e-7)


def test_frozen_bn_keeps_the_input_dtype() -> None:
    frozen = FrozenBatchNorm2d(4)
    assert frozen(torch.randn(1, 4, 2, 2, dtype=torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize("norm", ["bn", "frozen_bn"])
def test_frozen_stages_freeze_stem_and_layer1(norm: str) -> None:
    torch.manual_seed(0)
    model = build_backbone("resnet18", norm=norm, frozen_stages=1, zero_init_residual=False).train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(("conv1.", "bn1.", "layer1."))}
    assert not model.layer1.training and not model.bn1.training and model.layer2.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = model(torch.randn(2, 3, 64, 64))
    sum(o.mean() for o in out.values()).backward()
    assert model.conv1.weight.grad is None and model.layer1[0].conv1.weight.grad is None
    assert model.layer2[0].conv1.weight.grad.abs().sum() > 0
    after = model.state_dict()
    for key in before:  # frozen BatchNorm statistics are not updated by a training forward
        if key.startswith(("bn1.", "layer1.")):
            assert torch.equal(before[key], after[key]), key
    if norm == "bn":
        assert not torch.equal(before["layer2.0.bn1.running_mean"], after["layer2.0.bn1.running_mean"])


def test_frozen_stages_zero_is_the_stem_and_four_is_everything() -> None:
    stem = _meta("resnet18", frozen_stages=0)
    assert {n for n, p in stem.named_parameters() if not p.requires_grad} == {
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
    }
    assert not any(p.requires_grad for p in _meta("resnet18", frozen_stages=4).parameters())
    assert all(p.requires_grad for p in _meta("resnet18").parameters())


def test_zero_init_residual_only_for_trainable_norms() -> None:
    torch.manual_seed(0)
    bn = build_backbone("resnet18")
    assert torch.equal(bn.layer1[0].bn2.weight, torch.zeros(64)) and torch.equal(
        bn.layer1[0].bn1.weight, torch.ones(64)
    )
    assert torch.equal(
        build_backbone("resnet18", zero_init_residual=False).layer1[0].bn2.weight, torch.ones(64)
    )
    assert torch.equal(build_backbone("resnet18", norm="frozen_bn").layer1[0].bn2.weight, torch.ones(64))


def test_bad_options_give_one_clear_error() -> None:
    with pytest.raises(ValueError, match="norm must be one of bn, frozen_bn, got 'gn'"):
        build_backbone("resnet18", norm="gn")
    with pytest.raises(ValueError, match=r"frozen_stages must be an integer in -1\.\.4"):
        build_backbone("resnet18", frozen_stages=5)
    with pytest.raises(ValueError, match="unknown ResNet preset 'resnet152'"):
        build_resnet("resnet152")
    with pytest.raises(ValueError, match="block must be one of"):
        ResNetConfig("wide", (2, 2, 2, 2))
    with pytest.raises(ValueError, match="4 positive block counts"):
        ResNetConfig("basic", (2, 2, 2))


def test_output_shapes_and_odd_input_sizes() -> None:
    assert output_shapes(PRESETS["resnet50"]) == {
        "c2": FeatureShape(256, 4),
        "c3": FeatureShape(512, 8),
        "c4": FeatureShape(1024, 16),
        "c5": FeatureShape(2048, 32),
    }
    assert output_shapes(PRESETS["resnet18"])["c5"] == FeatureShape(512, 32)
    torch.manual_seed(0)
    model = build_backbone("resnet18").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 45, 70))
    assert {k: tuple(v.shape[-2:]) for k, v in out.items()} == {
        "c2": (12, 18),
        "c3": (6, 9),
        "c4": (3, 5),
        "c5": (2, 3),
    }
    assert ResNet.size_divisibility == 1


def test_registrations() -> None:
    registry = get_registry()
    for name, config in PRESETS.items():
        spec = registry.get("backbones", name)
        assert isinstance(spec, BackboneSpec)
        assert spec.distribution == "bupose-resnet"
        assert dict(spec.outputs) == output_shapes(config)
        weights = registry.get("weights", f"{name}_imagenet")
        assert weights.backbone == name and weights.role == "backbone" and weights.file_names


def test_plugin_imports_no_torch() -> None:
    code = (
        "import sys; import bupose.resnet.plugin, bupose.resnet, bupose.resnet.config; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
