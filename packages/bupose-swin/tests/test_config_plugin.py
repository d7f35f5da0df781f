"""Presets, their validation, declared outputs, option errors and the plugin's registrations."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bupose.core.model import build_backbone
from bupose.core.plugins import get_registry
from bupose.core.specs import BackboneSpec, FeatureShape
from bupose.swin.config import PRESETS, SwinConfig, output_shapes
from bupose.swin.model import SwinTransformer, build_swin


def _meta(name: str, **kwargs) -> SwinTransformer:
    with torch.device("meta"):
        return build_swin(name, **kwargs)


# Parameters of the official classification networks (Swin-T 224: 28,288,354; Swin-L 224, window 7:
# 196,532,476, and window 12 adds (23^2 - 13^2) bias-table rows for each of its 564 block-heads)
# minus the classifier head and final norm, plus the three output norms (2 * (2C + 4C + 8C)).
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("swin_t", 28_288_354 - (768 * 1000 + 1000) - 2 * 768 + 2 * (192 + 384 + 768)),
        (
            "swin_l",
            196_532_476 + 564 * (23**2 - 13**2) - (1536 * 1000 + 1000) - 2 * 1536 + 2 * (384 + 768 + 1536),
        ),
    ],
)
def test_parameter_counts(name: str, params: int) -> None:
    assert sum(p.numel() for p in _meta(name).parameters()) == params


def test_preset_shapes() -> None:
    t, large = PRESETS["swin_t"], PRESETS["swin_l"]
    assert (t.embed_dim, t.depths, t.num_heads, t.window_size) == (96, (2, 2, 6, 2), (3, 6, 12, 24), 7)
    assert (large.embed_dim, large.depths, large.num_heads, large.window_size) == (
        192,
        (2, 2, 18, 2),
        (6, 12, 24, 48),
        12,
    )
    assert output_shapes(t) == {
        "c3": FeatureShape(192, 8),
        "c4": FeatureShape(384, 16),
        "c5": FeatureShape(768, 32),
    }
    assert output_shapes(large) == {
        "c3": FeatureShape(384, 8),
        "c4": FeatureShape(768, 16),
        "c5": FeatureShape(1536, 32),
    }
    assert SwinTransformer.size_divisibility == 32


def test_out_indices_option_and_odd_sizes() -> None:
    torch.manual_seed(0)
    model = build_backbone("swin_t", out_indices=(0, 2)).eval()
    assert model.output_shape() == {"c2": FeatureShape(96, 4), "c4": FeatureShape(384, 16)}
    assert "norm0.weight" in model.state_dict() and "norm3.weight" not in model.state_dict()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 45, 70))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"c2": (1, 96, 12, 18), "c4": (1, 384, 3, 5)}


def test_bad_options_give_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown Swin option"):
        build_swin("swin_t", depth=3)
    with pytest.raises(ValueError, match="unknown Swin preset 'swin_b'"):
        build_swin("swin_b")
    with pytest.raises(ValueError, match="not divisible by 5 heads"):
        SwinConfig(96, (2, 2), (5, 6), 7, out_indices=(1,))
    with pytest.raises(ValueError, match="one entry per stage"):
        SwinConfig(96, (2, 2), (3,), 7)
    with pytest.raises(ValueError, match="out_indices must be increasing stage indices"):
        SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24), 7, out_indices=(3, 1))
    with pytest.raises(ValueError, match=r"drop_path_rate must be in \[0, 1\)"):
        SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24), 7, drop_path_rate=1.5)


def test_registrations() -> None:
    registry = get_registry()
    for name, config in PRESETS.items():
        spec = registry.get("backbones", name)
        assert isinstance(spec, BackboneSpec)
        assert spec.distribution == "bupose-swin"
        assert dict(spec.outputs) == output_shapes(config)
    for weights, backbone in (("swin_t_imagenet", "swin_t"), ("swin_l_imagenet22k", "swin_l")):
        spec = registry.get("weights", weights)
        assert spec.backbone == backbone and spec.role == "backbone" and spec.file_names


def test_plugin_imports_no_torch() -> None:
    code = (
        "import sys; import bupose.swin.plugin, bupose.swin, bupose.swin.config; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
