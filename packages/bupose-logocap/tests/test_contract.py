"""Core's HeadContract for the ``logocap`` head on two backbones from bupose-hrnet (the official
hrnet_w32 and the small CPU preset hrnet_w18_small)."""

from __future__ import annotations

import pytest

from bupose.core.model import PoseModel
from bupose.core.testing import HeadContract

pytest.importorskip("bupose.hrnet", reason="bupose-hrnet (test extra) provides the backbones")


class _SmallInput(HeadContract):
    input_size = (64, 64)
    layout = "coco17"

    def make_model(self) -> PoseModel:
        model = super().make_model()
        model.config["input_size"] = 64  # the pipeline's test size follows model.config
        return model


class TestLogoCapOnHRNetW32(_SmallInput):
    head_name = "logocap"
    backbone_name = "hrnet_w32"


class TestLogoCapOnHRNetW18Small(_SmallInput):
    head_name = "logocap"
    backbone_name = "hrnet_w18_small"
