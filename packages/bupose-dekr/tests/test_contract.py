"""Core's HeadContract for the ``dekr`` head on two different backbones (from bupose-hrnet)."""

from __future__ import annotations

import pytest

from bupose.core.model import PoseModel
from bupose.core.testing import CodecContract, HeadContract

pytest.importorskip("bupose.hrnet", reason="bupose-hrnet (test extra) provides the backbones")


class _SmallInput(HeadContract):
    input_size = (64, 64)

    def make_model(self) -> PoseModel:
        model = super().make_model()
        # the pipeline's test size (default: the official 512/640) follows model.config
        model.config["input_size"] = 64
        return model


class TestDEKROnHRNetW32(_SmallInput):
    head_name = "dekr"
    backbone_name = "hrnet_w32"
    layout = "coco17"
    train_steps = 2  # the big backbone: two optimiser steps are enough to see the loss fall


class TestDEKROnHRNetW18Small(_SmallInput):
    head_name = "dekr"
    backbone_name = "hrnet_w18_small"
    layout = "crowdpose14"


class TestDEKRCodec(CodecContract):
    """DEKRCodec through core's Codec interface: ideal heatmap + offset maps decode to the people."""

    head_name = "dekr"
    layout = "coco17"
    tolerance_px = 0.01  # offsets are exact: pose = pixel - offset at the centre pixel


class TestDEKRCodecCrowdPose(TestDEKRCodec):
    layout = "crowdpose14"
    input_size = 96
