"""The example plugin passes bupose's conformance suites, as any third-party plugin should."""

from __future__ import annotations

from bupose.core import get_registry
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
    head_name = "example"
    num_people = 1  # a single-person head
    tolerance_px = 1.0


class TestExampleCodecCrowdPose(TestExampleCodec):
    layout = "crowdpose14"
    input_size = 96


def test_found_through_entry_point() -> None:
    spec = get_registry().get("heads", "example")
    assert spec.distribution == "bupose-example-head"
    assert spec.version == "0.1.0"
