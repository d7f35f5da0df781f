"""DEKR head and rescoring-net parity with the official fixtures (shared/golden/dekr/:
forward_heads_w32_coco.pt, forward_rescore_{coco,crowdpose}.pt, manifests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from bupose.core.plugins import get_registry
from bupose.core.specs import FeatureShape
from bupose.core.weights import load_state_dict_strict
from bupose.dekr.convert import HEAD_PREFIXES, expected_head_keys
from bupose.dekr.model import AdaptBlock, DEKRHead, PredictOKSNet, adapt_offsets

sys.path.insert(0, str(Path(__file__).parent))
from _dekr_golden import assert_close_rel, build_state_dict, fixture, manifest


def make_head(layout: str = "coco17", channels: int = 480) -> DEKRHead:
    lay = get_registry().get("layouts", layout)
    return DEKRHead({"concat": FeatureShape(channels, 4)}, lay)


def head_state_dict(manifest_name: str) -> dict[str, torch.Tensor]:
    return build_state_dict(manifest_name, keep=lambda k: k.startswith(HEAD_PREFIXES))


@pytest.fixture(scope="module")
def w32_head() -> DEKRHead:
    torch.backends.cudnn.allow_tf32 = False
    head = make_head()
    load_state_dict_strict(head, head_state_dict("manifest_w32_coco.tsv"), "recipe w32 coco head")
    return head.eval()


def test_head_keys_and_order_match_manifest() -> None:
    for name, layout, channels in (
        ("manifest_w32_coco.tsv", "coco17", 480),
        ("manifest_w48_coco.tsv", "coco17", 720),
        ("manifest_w32_crowdpose.tsv", "crowdpose14", 480),
        ("manifest_w48_crowdpose.tsv", "crowdpose14", 720),
    ):
        rows = [(k, s, d, kind) for k, s, d, kind in manifest(name) if k.startswith(HEAD_PREFIXES)]
        head = make_head(layout, channels)
        sd = head.state_dict()
        assert list(sd) == [r[0] for r in rows], name
        for key, shape, dtype, kind in rows:
            assert tuple(sd[key].shape) == shape, f"{name}: {key}"
            assert sd[key].dtype == dtype, f"{name}: {key}"
            assert (key.endswith("regular_matrix")) == (kind == "const")
        assert list(sd) == expected_head_keys(head.num_joints)
        # the persistent grid buffer is the official value
        ref = fixture("forward_w32_coco.pt")["const/offset_feature_layers.0.0.regular_matrix"]
        assert torch.equal(sd["offset_feature_layers.0.0.regular_matrix"], ref)


def test_head_width_follows_backbone() -> None:
    assert make_head("coco17", 480).heatmap_channels == 32
    assert make_head("coco17", 720).heatmap_channels == 48
    assert make_head("coco17", 270).heatmap_channels == 18
    assert make_head("coco17", 512).heatmap_channels == 32  # non-HRNet backbone: the W32 default
    lay = get_registry().get("layouts", "coco17")
    assert DEKRHead({"concat": FeatureShape(480, 4)}, lay, heatmap_channels=64).heatmap_channels == 64


def test_heads_forward_matches_official(w32_head: DEKRHead) -> None:
    fx = fixture("forward_heads_w32_coco.pt")
    x = fx["input"]
    with torch.no_grad():
        out = w32_head({"concat": x})
        block = w32_head.offset_feature_layers[0][0]
        t = w32_head.transition_offset(x)[:, :15]
        offsets = block.sampling_offsets(t)
        block_out = block(t)
    assert_close_rel(t, fx["debug/offset_feature_layers.0.0.adapt_conv/input"], 1e-4, "adapt_conv input")
    assert_close_rel(offsets, fx["debug/offset_feature_layers.0.0.adapt_conv/offset"], 1e-4, "adapt offsets")
    assert float(offsets.abs().max()) > 1.0  # the deformable path is exercised
    assert_close_rel(block_out, fx["debug/offset_feature_layers.0.0/out"], 1e-4, "AdaptBlock out")
    assert_close_rel(out["heatmap"], fx["heatmap"], 1e-4, "heatmap")
    assert_close_rel(out["offset"], fx["offset"], 1e-4, "offset")


def test_adapt_offsets_layout() -> None:
    # identity transform + translation (ty, tx): every tap moves by (ty, tx) only
    reg = AdaptBlock(3, 3).regular_matrix
    m = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 4, 1, 1).expand(1, 4, 2, 3)
    t = torch.tensor([0.5, -2.0]).view(1, 2, 1, 1).expand(1, 2, 2, 3)
    off = adapt_offsets(m, t, reg)
    assert off.shape == (1, 18, 2, 3)
    assert torch.allclose(off[:, 0::2], torch.full_like(off[:, 0::2], 0.5))
    assert torch.allclose(off[:, 1::2], torch.full_like(off[:, 1::2], -2.0))
    # a pure x-scale of 2 (M = [[1,0],[0,2]]) moves each tap's dx by its own dx
    m2 = torch.tensor([1.0, 0.0, 0.0, 2.0]).view(1, 4, 1, 1)
    off2 = adapt_offsets(m2, torch.zeros(1, 2, 1, 1), reg)[0, :, 0, 0]
    assert torch.equal(off2[0::2], torch.zeros(9))
    assert torch.equal(off2[1::2], reg[1])


@pytest.mark.parametrize("variant", ["coco", "crowdpose"])
def test_rescore_forward_matches_official(variant: str) -> None:
    fx = fixture(f"forward_rescore_{variant}.pt")
    sd = build_state_dict(f"manifest_rescore_{variant}.tsv")
    net = PredictOKSNet.from_state_dict(sd).eval()
    assert net.input_channels == {"coco": 74, "crowdpose": 59}[variant]
    with torch.no_grad():
        out = net(fx["input"])
    assert out.shape == (4, 1)
    assert float((out - fx["output"]).abs().max()) <= 1e-5
    with pytest.raises(ValueError, match=r"expects (74|59) features"):
        net(torch.zeros(2, 10))


def test_training_init_is_official() -> None:
    torch.manual_seed(0)
    head = make_head()
    blk = head.offset_feature_layers[3][1]
    assert torch.count_nonzero(blk.transform_matrix_conv.weight) == 0
    assert torch.count_nonzero(blk.transform_matrix_conv.bias) == 0
    assert torch.count_nonzero(blk.translation_conv.weight) == 0
    # M = 0 and t = 0, so the offsets are -R: every tap samples the centre pixel, i.e. the block
    # starts as a 1x1 conv with the summed 3x3 kernel
    x = torch.randn(1, 15, 6, 7)
    off = blk.sampling_offsets(x)
    reg = blk.regular_matrix.t().reshape(18)
    assert torch.equal(off, (-reg).view(1, 18, 1, 1).expand_as(off))
    with torch.no_grad():
        deformed = blk.adapt_conv(x, off)
        as_1x1 = torch.nn.functional.conv2d(x, blk.adapt_conv.weight.sum(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(deformed, as_1x1, rtol=1e-5, atol=1e-5)
    w = head.transition_heatmap[0].weight
    assert 0.0008 < w.detach().std().item() < 0.0012
    assert torch.count_nonzero(head.head_heatmap[1].bias) == 0
    assert torch.equal(head.transition_offset[1].weight, torch.ones(255))
    # the deformable conv keeps torchvision's default (kaiming-uniform) init, as official
    assert blk.adapt_conv.weight.detach().abs().max().item() > 0.01
