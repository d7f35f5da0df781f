"""Core's HeadContract for the ``dekr`` head on two different backbones (from bupose-hrnet)."""

from __future__ import annotations

import pytest

from bupose.core.model import PoseModel
from bupose.core.testing import HeadContract

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


class TestDEKROnHRNetW18Small(_SmallInput):
    head_name = "dekr"
    backbone_name = "hrnet_w18_small"
    layout = "crowdpose14"
