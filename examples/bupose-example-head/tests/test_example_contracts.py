"""The example plugin passes bupose's conformance suites, as any third-party plugin should."""

from __future__ import annotations

import numpy as np

from bupose.core import get_registry
from bupose.core.poses import Poses
from bupose.core.testing import BackboneContract, CodecContract, HeadContract


class TestExampleConvNet(BackboneContract):
    backbone_name = "example_convnet"


class TestExampleHead(HeadContract):
    head_name = "example"
    backbone_name = "example_convnet"


class TestExampleHeadCrowdPose(HeadContract):
    head_name = "example"
    backbone_name = "example_convnet"
    layout = "crowdpose14"


class TestExampleCodec(CodecContract):
    tolerance_px = 1.0

    def make_codec(self):
        from bupose_example_head.codec import ExampleHeatmapCodec

        return ExampleHeatmapCodec(get_registry().get("layouts", self.layout))

    def make_people(self) -> list[np.ndarray]:
        return super().make_people()[:1]  # a single-person head

    def encode_decode(self, codec, people) -> Poses:
        targets = codec.encode(np.stack(people), (16, 16))
        return codec.decode(targets["heatmap"][None])[0]


def test_found_through_entry_point() -> None:
    spec = get_registry().get("heads", "example")
    assert spec.distribution == "bupose-example-head"
    assert spec.version == "0.1.0"
