"""GroupPose's R-50 backbone: the manifest's keys load strictly, and C5 matches the official forward.

``shared/golden/grouppose/manifest_r50_coco.tsv`` rows under ``backbone.0.body.`` (265 keys:
torchvision ResNet-50 with FrozenBatchNorm2d, no ``num_batches_tracked``, no ``fc``), filled by the
recipe, against ``intermediate/backbone/last_feature`` of ``forward_r50_coco.pt`` (recipe weights,
float32, eval). Tolerance: the README's rel 1e-4 for intermediates.
"""

from __future__ import annotations

import pytest
import torch
from _resnet_golden import backbone_rows, forward_input, load_fixture, recipe_backbone_state_dict

from bupose.core.model import build_backbone
from bupose.core.weights import CheckpointMismatchError, load_state_dict_strict
from bupose.resnet.model import FrozenBatchNorm2d

GROUPPOSE_KWARGS = {"norm": "frozen_bn", "frozen_stages": 1}


def assert_rel_close(got: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    tol = 1e-4 * max(1.0, ref.abs().max().item())
    err = (got.double() - ref.double()).abs().max().item()
    assert err <= tol, f"{what}: max|diff| {err:.3g} > {tol:.3g}"


@pytest.fixture(scope="module")
def r50():
    backbone = build_backbone("resnet50", **GROUPPOSE_KWARGS).eval()
    load_state_dict_strict(backbone, recipe_backbone_state_dict(), "manifest_r50_coco.tsv backbone rows")
    return backbone


def test_keys_shapes_order_and_kinds_equal_the_manifest() -> None:
    rows = backbone_rows()
    assert len(rows) == 265
    with torch.device("meta"):
        backbone = build_backbone("resnet50", **GROUPPOSE_KWARGS)
    sd = backbone.state_dict()
    assert [r[0] for r in rows] == list(sd), "same keys in the same order"
    params = dict(backbone.named_parameters())
    buffers = dict(backbone.named_buffers())
    for key, shape, dtype, kind in rows:
        assert tuple(sd[key].shape) == shape, key
        assert sd[key].dtype == dtype, key
        assert (key in params) == (kind == "param") and (key in buffers) == (kind == "buffer"), key
    assert not any(k.endswith("num_batches_tracked") for k in sd)
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules()) == 53


def test_strict_load_keeps_every_value(r50) -> None:
    sd = recipe_backbone_state_dict()
    for key, value in r50.state_dict().items():
        assert torch.equal(value, sd[key]), key


def test_trainable_batchnorm_does_not_take_the_frozen_layout() -> None:
    with torch.device("meta"):
        backbone = build_backbone("resnet50")
    sd = {k: v.to("meta") for k, v in recipe_backbone_state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: bn1\.num_batches_tracked"):
        load_state_dict_strict(backbone, sd, "frozen layout")


def test_c5_matches_official_forward(r50) -> None:
    ref = load_fixture("grouppose/forward_r50_coco_backbone.pt")["intermediate/backbone/last_feature"]
    with torch.no_grad():
        out = r50(forward_input())
    assert_rel_close(out["c5"], ref, "C5 (layer4)")
    assert out["c3"].shape == (2, 512, 16, 20) and out["c4"].shape == (2, 1024, 8, 10)


def test_c5_matches_in_channels_last(r50) -> None:
    ref = load_fixture("grouppose/forward_r50_coco_backbone.pt")["intermediate/backbone/last_feature"]
    model = r50.to(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            out = model(forward_input().to(memory_format=torch.channels_last))
    finally:
        r50.to(memory_format=torch.contiguous_format)
    assert out["c5"].is_contiguous(memory_format=torch.channels_last)
    assert_rel_close(out["c5"], ref, "C5 (layer4), channels_last")


def test_trainable_batchnorm_with_zero_counters_gives_the_same_c5() -> None:
    """The default ``resnet50`` (nn.BatchNorm2d, eval) takes the frozen layout plus zero step counters."""
    sd = recipe_backbone_state_dict()
    for key in [k for k in sd if k.endswith("running_var")]:
        sd[key.removesuffix("running_var") + "num_batches_tracked"] = torch.tensor(0)
    backbone = build_backbone("resnet50").eval()
    load_state_dict_strict(backbone, sd, "frozen layout + counters")
    ref = load_fixture("grouppose/forward_r50_coco_backbone.pt")["intermediate/backbone/last_feature"]
    with torch.no_grad():
        out = backbone(forward_input())
    assert_rel_close(out["c5"], ref, "C5 (layer4), nn.BatchNorm2d in eval")
