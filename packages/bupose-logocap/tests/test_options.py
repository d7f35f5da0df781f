"""LogoCapOptions: official defaults (experiments/logocap-hrnet-w32-coco.yaml values from
shared/reference/logocap.md), validation, and that they build the decoder."""

from __future__ import annotations

import dataclasses

import pytest

from bupose.core.plugins import get_registry
from bupose.logocap.decode import LogoCapDecoder
from bupose.logocap.options import LogoCapOptions


def test_defaults_are_official() -> None:
    o = LogoCapOptions()
    assert (o.flip, o.scales, o.adaptation, o.max_num_people) == (True, (1.0,), "full", 30)
    assert (o.nms_thre, o.nms_num_thre, o.kem_radius, o.global_radius, o.global_sigma) == (0.05, 8, 5, 48, 16.0)
    for f in dataclasses.fields(LogoCapOptions):
        assert f.metadata.get("help"), f.name
    dec = LogoCapDecoder(get_registry().get("layouts", "coco17"), **o.decode_options())
    assert dec.options()["adaptation"] == "full" and dec.options()["nms_joints"] == 8


def test_validation() -> None:
    with pytest.raises(ValueError, match="single-scale"):
        LogoCapOptions(scales=(0.5, 1.0))
    with pytest.raises(ValueError, match="max_num_people"):
        LogoCapOptions(max_num_people=0)
    partial = LogoCapOptions(adaptation="partial")
    assert LogoCapDecoder(get_registry().get("layouts", "coco17"), **partial.decode_options()).adaptation == "partial"
