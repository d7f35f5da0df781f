"""Declared test options: validation, CLI-style strings, and their effect on the official decode."""

from __future__ import annotations

import pytest
import torch
from _centergroup_golden import fixture, golden_model

from bupose.centergroup.options import CenterGroupOptions
from bupose.centergroup.pipeline import CenterGroupPipeline
from bupose.core.options import OptionError, build_options, check_options_class


def test_options_class_is_well_formed_and_official_by_default() -> None:
    check_options_class(CenterGroupOptions)
    o = CenterGroupOptions()
    assert (o.flip, o.scales, o.adjust, o.conf_thresh, o.tformer_layer) == (True, (1.0,), True, 0.5, -1)
    assert (o.max_num_people, o.top_k_per_type, o.min_score, o.min_top_k) == (30, 30, 0.005, 3)
    parsed = build_options(CenterGroupOptions, {"scales": "0.5,1,2", "flip": "false"}, context="t", flag="option")
    assert parsed.scales == (0.5, 1.0, 2.0) and parsed.flip is False


@pytest.mark.parametrize(
    ("values", "match"),
    [({"scales": (0.5, 2.0)}, "contain 1"), ({"tformer_layer": 4}, "tformer_layer"), ({"max_num_people": 0}, "max_num_people"),
     ({"input_size": -1}, "input_size")],
)
def test_bad_values_are_one_clear_error(values: dict, match: str) -> None:
    with pytest.raises((ValueError, OptionError), match=match):
        build_options(CenterGroupOptions, values, context="t", flag="option")


def test_unknown_option_names_the_key() -> None:
    with pytest.raises(OptionError, match="adjsut"):
        CenterGroupPipeline(golden_model(), adjsut=False)


def test_adjust_and_layer_options_change_the_decode() -> None:
    fx = fixture("forward_test_flip_w32_coco.pt")
    args = ([fx["input/img"]], fx["input/pad_mask/2"], fx["input/pad_mask/0"])
    (ref,) = CenterGroupPipeline(golden_model()).forward_tensors(*args)
    (plain,) = CenterGroupPipeline(golden_model(), adjust=False).forward_tensors(*args)
    assert torch.equal(plain.poses[..., :2], plain.poses[..., :2].round())  # integer candidate pixels
    moved = (ref.poses[..., :2] - plain.poses[..., :2]).abs()
    assert torch.all((moved == 0) | (moved == 0.25) | (moved == 0.75))
    (first,) = CenterGroupPipeline(golden_model(), tformer_layer=0).forward_tensors(*args)
    assert first.poses.shape == ref.poses.shape and not torch.equal(first.poses, ref.poses)
