"""bupose-core's BackboneContract for every registered HRNet backbone.

The large presets run at 32x32 (every branch still has at least one pixel) and build their eval
backbone once per class, to keep the suite fast on CPU.
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


class TestHRNetW18Small(BackboneContract):
    backbone_name = "hrnet_w18_small"
    input_size = (64, 96)


class TestHRNetW18(_Fast):
    backbone_name = "hrnet_w18"


class TestHRNetW32(_Fast):
    backbone_name = "hrnet_w32"


class TestHRNetW48(_Fast):
    backbone_name = "hrnet_w48"


class TestHigherHRNetW32(_Fast):
    backbone_name = "higherhrnet_w32"


class TestHigherHRNetW48(_Fast):
    backbone_name = "higherhrnet_w48"
