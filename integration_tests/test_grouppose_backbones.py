"""GroupPose reads any backbone declaring one output at each of the strides 8/16/32: HRNet's b1..b3
here (bupose-hrnet), beside resnet/swin tested in bupose-grouppose itself."""

from __future__ import annotations

import pytest
import torch

from bupose.core.model import build_model
from bupose.core.plugins import get_registry

pytestmark = pytest.mark.skipif(
    "grouppose" not in get_registry().names("heads") or "hrnet_w18_small" not in get_registry().names("backbones"),
    reason="needs bupose-grouppose and bupose-hrnet",
)

SMALL = {"num_queries": 20, "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 128}


def test_grouppose_on_hrnet_reads_b1_to_b3() -> None:
    model = build_model("grouppose", "hrnet_w18_small", head_kwargs=SMALL).eval()
    assert model.head.feature_names == ["b1", "b2", "b3"]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 96))
    assert out["pred_keypoints"].shape == (1, 20, 51) and torch.isfinite(out["pred_keypoints"]).all()


def test_a_backbone_without_the_strides_is_one_clear_error() -> None:
    from bupose.core.layouts import get_layout
    from bupose.core.specs import FeatureShape
    from bupose.grouppose.model import GroupPoseHead

    with pytest.raises(ValueError, match="exactly one output at stride 8"):
        GroupPoseHead({"x": FeatureShape(64, 4)}, get_layout("coco17"))
