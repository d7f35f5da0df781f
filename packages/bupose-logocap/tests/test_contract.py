"""Core's HeadContract for the ``logocap`` head on two backbones from bupose-hrnet (the official
hrnet_w32 and the small CPU preset hrnet_w18_small)."""

from __future__ import annotations

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


class TestLogoCapOnHRNetW32(_SmallInput):
    head_name = "logocap"
    backbone_name = "hrnet_w32"


class TestLogoCapOnHRNetW18Small(_SmallInput):
    head_name = "logocap"
    backbone_name = "hrnet_w18_small"


class TestLogoCapCodec(CodecContract):
    """The codec's round trip with ideal heatmap/offset maps; the unbound codec decodes at the
    ``none`` adaptation level (the KAM lives in the head).

    Tolerance 3 px: the official initial pose is (c/4 − offset)·4 with the centre c found on the
    up-sampled (align_corners=False) map, whose peak for a target centre at output pixel i lies at
    input pixel 4i + 1.5 ± 0.5, while targets put output pixel i at input 4i: poses decoded from
    ideal maps are shifted by up to 2 px in x and y (official behaviour, kept)."""

    head_name = "logocap"
    input_size = 128
    tolerance_px = 3.0
    codec_kwargs = {"adaptation": "none"}  # noqa: RUF012 - ClassVar of the contract
