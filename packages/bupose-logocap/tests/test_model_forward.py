"""LOGO-CAP network parity with the official fixtures (from shared/golden/logocap/: manifests,
forward_w32_coco.pt, forward_heads_w32_coco.pt, forward_kam_w32_coco.pt; tolerances from its README)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from bupose.core.model import build_model
from bupose.core.plugins import get_registry
from bupose.core.specs import FeatureShape
from bupose.core.weights import load_state_dict_strict
from bupose.logocap.convert import HEAD_PREFIXES, expected_head_keys, from_official
from bupose.logocap.model import AttnBatchNorm2d, LogoCapHead

sys.path.insert(0, str(Path(__file__).parent))
from _logocap_golden import build_state_dict, fixture, manifest, max_rel_err

COCO = "coco17"


def make_head(channels: int = 480) -> LogoCapHead:
    return LogoCapHead({"concat": FeatureShape(channels, 4)}, get_registry().get("layouts", COCO))


@pytest.fixture(scope="module")
def w32_head() -> LogoCapHead:
    head = make_head()
    sd = build_state_dict(keep=lambda k: k.startswith(HEAD_PREFIXES))
    load_state_dict_strict(head, sd, "recipe w32 head")
    return head.eval()


@pytest.mark.parametrize(("name", "channels", "params"), [
    ("manifest_w32_coco.tsv", 480, 35_991_429 - 29_305_536),
    ("manifest_w48_coco.tsv", 720, 72_107_333 - 65_325_120),
])
def test_head_keys_shapes_order_match_manifest(name: str, channels: int, params: int) -> None:
    rows = [r for r in manifest(name) if r[0].startswith(HEAD_PREFIXES)]
    head = make_head(channels)
    sd = head.state_dict()
    assert list(sd) == [r[0] for r in rows] == expected_head_keys()
    for key, shape, dtype, _kind in rows:
        assert tuple(sd[key].shape) == shape, f"{name}: {key}"
        assert sd[key].dtype == dtype, f"{name}: {key}"
    assert sum(p.numel() for p in head.parameters()) == params
    assert isinstance(head.joints_mlp[4], AttnBatchNorm2d)


@pytest.mark.parametrize(("name", "backbone", "params"), [
    ("manifest_w32_coco.tsv", "hrnet_w32", 35_991_429),
    ("manifest_w48_coco.tsv", "hrnet_w48", 72_107_333),
])
def test_whole_model_strict_load_of_manifest(name: str, backbone: str, params: int) -> None:
    model = build_model("logocap", backbone)
    official = build_state_dict(name)
    assert len(official) == 1873
    converted = from_official(official, name)
    load_state_dict_strict(model, converted, name)
    assert sum(p.numel() for p in model.parameters()) == params
    own = model.state_dict()
    for k, v in converted.items():
        assert torch.equal(own[k], v), k


def test_heads_forward_matches_official(w32_head: LogoCapHead) -> None:
    fx = fixture("forward_heads_w32_coco.pt")
    with torch.no_grad():
        out = w32_head({"concat": fx["input"]})
    for ours, ref in (("heatmap", "heatmaps"), ("offset", "offsets"), ("embedding", "embedding")):
        assert out[ours].shape == fx[ref].shape
        err = max_rel_err(out[ours], fx[ref])
        assert err <= 1e-4, f"{ours}: {err}"


def test_kam_network_matches_official(w32_head: LogoCapHead) -> None:
    fx = fixture("forward_kam_w32_coco.pt")
    with torch.no_grad():
        raw = w32_head.kam(fx["input"], clamp=False)
        clamped = w32_head.kam(fx["input"])
        attention = w32_head.joints_mlp[4].attn_weights(w32_head.joints_mlp[:4](fx["input"]))
    assert float((attention - fx["debug/joints_mlp.4.attention"]).abs().max()) <= 1e-5
    assert float((raw - fx["output_raw"]).abs().max()) <= 1e-5
    assert float((clamped - fx["output_clamped"]).abs().max()) <= 1e-5
    with pytest.raises(ValueError, match="1088"):
        w32_head.kam(torch.zeros(1, 64, 11, 11))


def test_full_forward_w32_matches_official() -> None:
    fx = fixture("forward_w32_coco.pt")
    model = build_model("logocap", "hrnet_w32")
    load_state_dict_strict(model, from_official(build_state_dict()), "recipe w32")
    model.eval()
    with torch.no_grad():
        feats = model.backbone(fx["input"])
        out = model.head(feats)
    mean_c = feats["concat"].mean(dim=(0, 2, 3))
    assert max_rel_err(mean_c, fx["debug/backbone_mean_c"]) <= 1e-4
    for ours, ref in (("heatmap", "heatmaps"), ("offset", "offsets"), ("embedding", "embedding")):
        err = max_rel_err(out[ours], fx[ref])
        assert err <= 1e-4, f"{ours}: {err}"
