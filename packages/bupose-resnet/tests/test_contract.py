"""bupose-core's BackboneContract for every registered ResNet, and GroupPose's frozen R-50 variant.

The deeper presets run at 32x32 (C5 is 1x1) and build their eval backbone once per class.
"""

from __future__ import annotations

import pytest

from bupose.core.model import Backbone
from bupose.core.testing import BackboneContract


@pytest.fixture(scope="class")
def _class_backbone(request: pytest.FixtureRequest) -> Backbone:
    return request.cls().make_backbone().eval()


class _Fast(BackboneContract):
    input_size = (32, 32)

    @pytest.fixture
    def backbone(self, _class_backbone: Backbone) -> Backbone:
        return _class_backbone


class TestResNet18(BackboneContract):
    backbone_name = "resnet18"
    input_size = (64, 96)


class TestResNet34(_Fast):
    backbone_name = "resnet34"


class TestResNet50(_Fast):
    backbone_name = "resnet50"


class TestResNet101(_Fast):
    backbone_name = "resnet101"


class TestResNet50FrozenGroupPose(_Fast):
    backbone_name = "resnet50"
    backbone_kwargs = {"norm": "frozen_bn", "frozen_stages": 1}  # noqa: RUF012 - contract class attribute
