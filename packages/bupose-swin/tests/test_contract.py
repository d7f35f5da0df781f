"""bupose-core's BackboneContract for swin_t and swin_l.

Swin-L (195M parameters) runs at 32x32, batch 2, with its eval backbone built once per class. Its
cost floor is the window: every stage pads to at least one 12x12 window (~80 s for the class on a
loaded 2-core CPU, mostly the gradient test and the state_dict round trip of 780 MB).
"""

from __future__ import annotations

import pytest

from bupose.core.model import Backbone
from bupose.core.testing import BackboneContract


@pytest.fixture(scope="class")
def _class_backbone(request: pytest.FixtureRequest) -> Backbone:
    return request.cls().make_backbone().eval()


class _Once(BackboneContract):
    @pytest.fixture
    def backbone(self, _class_backbone: Backbone) -> Backbone:
        return _class_backbone


class TestSwinT(_Once):
    backbone_name = "swin_t"
    input_size = (64, 96)


class TestSwinL(_Once):
    backbone_name = "swin_l"
    input_size = (32, 32)
