"""GroupPose's Swin-T / Swin-L backbones: the manifests' keys load strictly; the constants are official.

Rows under ``backbone.0.`` of shared/golden/grouppose/manifest_swinT_coco.tsv (187 keys) and
manifest_swinL_coco.tsv (355 keys; CrowdPose's backbone rows are identical). Swin-T loads real
recipe values; Swin-L (195M parameters) is checked on the meta device (keys, shapes, order, strict
load), and its window-12 constant on one CPU-built attention module.
"""

from __future__ import annotations

import pytest
import torch
from _swin_golden import WINDOW, backbone_rows, consts, recipe_backbone_state_dict

from bupose.core.model import build_backbone
from bupose.core.weights import load_state_dict_strict
from bupose.swin.model import WindowAttention, relative_position_index


def _meta(name: str):
    with torch.device("meta"):
        return build_backbone(name)


@pytest.mark.parametrize(("name", "n_keys"), [("swin_t", 187), ("swin_l", 355)])
def test_keys_shapes_order_and_kinds_equal_the_manifest(name: str, n_keys: int) -> None:
    rows = backbone_rows(name)
    assert len(rows) == n_keys
    backbone = _meta(name)
    sd = backbone.state_dict()
    assert [r[0] for r in rows] == list(sd), "same keys in the same order"
    params = dict(backbone.named_parameters())
    buffers = dict(backbone.named_buffers())
    for key, shape, dtype, kind in rows:
        assert tuple(sd[key].shape) == shape and sd[key].dtype == dtype, key
        assert (key in params) == (kind == "param"), key
        assert (key in buffers) == (kind == "const"), key
    consts_keys = [r[0] for r in rows if r[3] == "const"]
    assert consts_keys == [k for k in sd if k.endswith(".attn.relative_position_index")]
    assert len(consts_keys) == sum(backbone.config.depths), "one constant per block"


def test_swin_l_loads_strictly_on_meta() -> None:
    backbone = _meta("swin_l")
    sd = {k: torch.empty(s, dtype=d, device="meta") for k, s, d, _ in backbone_rows("swin_l")}
    load_state_dict_strict(backbone, sd, "manifest_swinL_coco.tsv backbone rows")


def test_swin_t_loads_strictly_and_keeps_every_value() -> None:
    sd = recipe_backbone_state_dict("swin_t")
    backbone = build_backbone("swin_t").eval()
    load_state_dict_strict(backbone, sd, "manifest_swinT_coco.tsv backbone rows")
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, sd[key]), key
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("name", ["swin_t", "swin_l"])
def test_built_relative_position_index_equals_official(name: str) -> None:
    window = WINDOW[name]
    official = consts(window)
    assert official.dtype == torch.int64 and official.shape == (window**2, window**2)
    assert torch.equal(relative_position_index(window), official)
    assert torch.equal(WindowAttention(32, window, 2).relative_position_index, official)


def test_every_block_of_swin_t_holds_the_official_constant() -> None:
    backbone = build_backbone("swin_t")
    official = consts(7)
    blocks = [blk for stage in backbone.layers for blk in stage.blocks]
    assert len(blocks) == 12
    for blk in blocks:
        assert torch.equal(blk.attn.relative_position_index, official)


def test_loading_a_different_constant_is_an_error() -> None:
    attn = WindowAttention(32, 7, 2)
    sd = attn.state_dict()
    sd["relative_position_index"] = sd["relative_position_index"].flip(0)
    with pytest.raises(
        RuntimeError, match="relative_position_index: differs from the constant this module builds"
    ):
        attn.load_state_dict(sd)
