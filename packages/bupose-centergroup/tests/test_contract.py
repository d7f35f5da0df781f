"""Core's HeadContract for the ``centergroup`` head (official higherhrnet_w32, the small CPU preset
hrnet_w18_small, CrowdPose layout) and CodecContract for its codec."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from bupose.core.model import PoseModel
from bupose.core.testing import CodecContract, HeadContract

pytest.importorskip("bupose.hrnet", reason="bupose-hrnet (test extra) provides the backbones")


class _SmallInput(HeadContract):
    input_size = (64, 64)
    layout = "coco17"

    def make_model(self) -> PoseModel:
        model = super().make_model()
        model.config["input_size"] = 64  # the pipeline's test size follows model.config
        return model


class TestCenterGroupOnHigherHRNetW32(_SmallInput):
    head_name = "centergroup"
    backbone_name = "higherhrnet_w32"


class TestCenterGroupOnHRNetW18Small(_SmallInput):
    head_name = "centergroup"
    backbone_name = "hrnet_w18_small"


class TestCenterGroupStage1CrowdPose(_SmallInput):
    head_name = "centergroup"
    backbone_name = "hrnet_w18_small"
    layout = "crowdpose14"
    head_kwargs: ClassVar[dict[str, Any]] = {"stage": 1}


class TestCenterGroupCodec(CodecContract):
    """Round trip with ideal heatmaps through the unbound codec (nearest-centre assignment, a
    bupose addition: the official decode needs the grouping model). Tolerance 2 px: targets are
    drawn at the truncated joint of each resolution, the decode reads the 1/2-map peak up-sampled
    to the input and adds the official +0.5 (±0.25) adjustment."""

    head_name = "centergroup"
    tolerance_px = 2.5


class TestCenterGroupCodecCrowdPose(TestCenterGroupCodec):
    layout = "crowdpose14"
