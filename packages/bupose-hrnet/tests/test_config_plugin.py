"""Stage specifications, presets, the plugin's registrations and input handling."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bupose.core.plugins import get_registry
from bupose.core.specs import BackboneSpec, FeatureShape
from bupose.hrnet.config import PRESETS, HRNetConfig, StageSpec, hrnet_config, output_shapes
from bupose.hrnet.model import HRNet, build_hrnet


def _meta(config: HRNetConfig | str) -> HRNet:
    with torch.device("meta"):
        return build_hrnet(config)


# Parameter and state_dict key counts of the official models (shared/reference/hrnet.md, 1 and 6.2).
@pytest.mark.parametrize(
    ("name", "params", "keys"),
    [
        ("hrnet_w18", 9_562_260, 1830),
        ("hrnet_w32", 29_305_536, 1830),
        ("hrnet_w48", 65_325_120, 1830),
        ("higherhrnet_w32", 28_535_552, 1752),
        ("higherhrnet_w48", 63_594_912, 1752),
    ],
)
def test_presets_match_official_sizes(name: str, params: int, keys: int) -> None:
    model = _meta(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == keys


def test_w18_mmpose_layout_size() -> None:
    cfg = HRNetConfig(stages=PRESETS["hrnet_w18"].stages, multi_scale_output=False)
    assert sum(p.numel() for p in _meta(cfg).parameters()) == 9_317_892


def test_output_shapes() -> None:
    assert output_shapes(PRESETS["hrnet_w32"]) == {
        "b0": FeatureShape(32, 4),
        "b1": FeatureShape(64, 8),
        "b2": FeatureShape(128, 16),
        "b3": FeatureShape(256, 32),
        "concat": FeatureShape(480, 4),
    }
    assert output_shapes(PRESETS["hrnet_w48"])["concat"] == FeatureShape(720, 4)
    assert output_shapes(PRESETS["higherhrnet_w48"]) == {"b0": FeatureShape(48, 4)}
    assert output_shapes(PRESETS["hrnet_w18_small"])["concat"] == FeatureShape(270, 4)


def test_stage_spec_validation() -> None:
    with pytest.raises(ValueError, match="block must be one of"):
        StageSpec(1, 2, "wide", (4, 4), (32, 64))
    with pytest.raises(ValueError, match="one entry per branch"):
        StageSpec(1, 2, "basic", (4,), (32, 64))
    with pytest.raises(ValueError, match="positive"):
        StageSpec(1, 2, "basic", (4, 0), (32, 64))
    s1 = StageSpec(1, 1, "bottleneck", (4,), (64,))
    with pytest.raises(ValueError, match="exactly one branch"):
        HRNetConfig(stages=(s1, StageSpec(1, 3, "basic", (1, 1, 1), (8, 16, 32))))
    with pytest.raises(ValueError, match="stage 1 is one module with one branch"):
        HRNetConfig(stages=(StageSpec(2, 1, "basic", (1,), (8,)), StageSpec(1, 2, "basic", (1, 1), (8, 16))))
    with pytest.raises(KeyError, match=r"unknown HRNet preset 'hrnet_w64'.*hrnet_w32"):
        hrnet_config("hrnet_w64")


def test_custom_three_stage_bottleneck_variant() -> None:
    """Any variant is one spec away: 3 stages, bottleneck blocks in stage 2, 2 modules."""
    cfg = HRNetConfig(
        stages=(
            StageSpec(1, 1, "basic", (2,), (16,)),
            StageSpec(2, 2, "bottleneck", (1, 2), (8, 16)),
            StageSpec(1, 3, "basic", (1, 1, 1), (12, 24, 48)),
        ),
        stem_channels=16,
    )
    model = build_hrnet(cfg).eval()
    assert model.output_shape() == {
        "b0": FeatureShape(12, 4),
        "b1": FeatureShape(24, 8),
        "b2": FeatureShape(48, 16),
        "concat": FeatureShape(84, 4),
    }
    assert "layer1.0.downsample.0.weight" not in model.state_dict()  # 16 -> 16: no projection
    assert model.state_dict()["stage2.0.branches.0.0.downsample.0.weight"].shape == (32, 8, 1, 1)
    assert model.state_dict()["transition2.0.0.weight"].shape == (12, 32, 3, 3)  # 8*4 -> 12
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 80))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {
        "b0": (12, 16, 20),
        "b1": (24, 8, 10),
        "b2": (48, 4, 5),
        "concat": (84, 16, 20),
    }


def test_any_input_size_works() -> None:
    """Sizes that are not multiples of 32 (the official code needs them) give ceil-sized maps."""
    model = build_hrnet("hrnet_w18_small").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 70, 90))
    assert tuple(out["b0"].shape[-2:]) == (18, 23)
    assert tuple(out["b3"].shape[-2:]) == (3, 3)
    assert tuple(out["concat"].shape) == (1, 270, 18, 23)


def test_bad_inputs_and_options() -> None:
    model = build_hrnet("hrnet_w18_small")
    with pytest.raises(ValueError, match=r"expects images shaped \(B,3,H,W\), got \(3, 64, 64\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="init must be 'kaiming' or 'official'"):
        build_hrnet("hrnet_w18_small", init="xavier")


def test_official_init_is_small_normal() -> None:
    torch.manual_seed(0)
    model = build_hrnet("hrnet_w18_small", init="official")
    w = model.stage4[0].branches[0][0].conv1.weight
    assert 0.0008 < w.std().item() < 0.0012
    assert torch.equal(model.stage4[0].branches[0][0].bn2.weight, torch.ones(18))


def test_registered_specs_match_presets() -> None:
    registry = get_registry()
    for name, cfg in PRESETS.items():
        spec = registry.get("backbones", name)
        assert isinstance(spec, BackboneSpec)
        assert spec.distribution == "bupose-hrnet"
        assert dict(spec.outputs) == output_shapes(cfg)
        assert spec.factory == f"bupose.hrnet.model:{name}"


def test_plugin_module_imports_no_torch() -> None:
    """Listing plugins must stay cheap: the plugin, the presets and the key helpers import no torch."""
    code = "import sys, bupose.hrnet, bupose.hrnet.plugin, bupose.hrnet.keys, bupose.hrnet.config; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
