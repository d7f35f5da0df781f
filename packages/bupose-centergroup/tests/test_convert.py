"""Official checkpoints: strict loads of the three manifests, wrappers, old names, detector-only files."""

from __future__ import annotations

import pytest
import torch
from _centergroup_golden import MANIFESTS, build_state_dict, manifest

from bupose.centergroup.convert import (
    detect_variant,
    from_official,
    load_detector,
    official_keys,
    to_official,
    unwrap,
)
from bupose.core import build_model
from bupose.core.weights import CheckpointError, CheckpointMismatchError


@pytest.mark.parametrize("variant", list(MANIFESTS))
def test_manifest_keys_shapes_and_order(variant: str) -> None:
    name, backbone, layout = MANIFESTS[variant]
    model = build_model("centergroup", backbone, layout)
    rows = manifest(name)
    assert len(rows) == 1987
    assert official_keys(model) == [r[0] for r in rows]
    own = model.state_dict()
    for (key, dims, dtype, _), (_ours, t) in zip(rows, own.items(), strict=True):
        assert tuple(t.shape) == dims, key
        assert t.dtype == dtype, key


@pytest.mark.parametrize("variant", list(MANIFESTS))
def test_strict_load_plain_and_lightning_wrapped(variant: str) -> None:
    name, backbone, layout = MANIFESTS[variant]
    sd = build_state_dict(name)
    assert detect_variant(sd).backbone == backbone and detect_variant(sd).layout == layout
    model = build_model("centergroup", backbone, layout)
    model.load_state_dict(from_official(sd), strict=True)
    # Lightning wrapper + module. prefix + old names, with non-tensor entries next to it
    old = {}
    for k, v in sd.items():
        k2 = k.replace("group_model", "graph_model").replace("tr_encoder", "graph_net")
        old["module." + k2] = v
    wrapped = {"state_dict": old, "epoch": 3, "global_step": 10}
    converted = from_official(wrapped)
    assert list(converted) == list(from_official(sd))
    model.load_state_dict(converted, strict=True)
    back = to_official(model.state_dict())
    assert list(back) == list(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_strict_errors_name_the_keys() -> None:
    sd = build_state_dict("manifest_w32_coco.tsv")
    bad = dict(sd)
    bad["optimizer_extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="optimizer_extra"):
        from_official(bad)
    model = build_model("centergroup", "higherhrnet_w32", "coco17")
    from bupose.core.weights import load_state_dict_strict

    extra = dict(sd)
    extra["group_model.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"group_model\.extra\.weight"):
        load_state_dict_strict(model, from_official(extra), "file")
    missing = dict(sd)
    del missing["group_model.prediction_heads.3.mlp_vis.layers.2.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"prediction_heads\.3\.mlp_vis\.layers\.2\.bias"):
        load_state_dict_strict(model, from_official(missing), "file")
    with pytest.raises(CheckpointError, match="not an official CenterGroup"):
        from_official({"x.weight": torch.zeros(2)})
    # w48 weights into a w32 model: shapes differ
    with pytest.raises(CheckpointMismatchError):
        load_state_dict_strict(model, from_official(build_state_dict("manifest_w48_coco.tsv")), "w48")


def test_old_name_collision_is_an_error() -> None:
    sd = build_state_dict("manifest_w32_coco.tsv")
    sd["graph_model.initial_mlp.layers.0.bias"] = sd["group_model.initial_mlp.layers.0.bias"]
    with pytest.raises(CheckpointError, match="already present"):
        unwrap(sd)


def test_detector_only_file_initialises_the_detector() -> None:
    sd = build_state_dict("manifest_w32_coco.tsv")
    root = {k[len("bu_model."):]: v for k, v in sd.items() if k.startswith("bu_model.")}
    assert detect_variant(root).kind == "detector"
    model = build_model("centergroup", "higherhrnet_w32", "coco17")
    before = model.head.group_model.initial_mlp.layers[0].weight.clone()
    load_detector(model, {"state_dict": root, "meta": {"epoch": 300}})
    assert torch.equal(model.backbone.conv1.weight, sd["bu_model.backbone.conv1.weight"])
    assert torch.equal(
        model.head.keypoint_head.final_layers[1].bias, sd["bu_model.keypoint_head.final_layers.1.bias"]
    )
    assert torch.equal(model.head.group_model.initial_mlp.layers[0].weight, before)
    del root["keypoint_head.final_layers.1.bias"]
    with pytest.raises(CheckpointMismatchError, match=r"final_layers\.1\.bias"):
        load_detector(model, root)


def test_registered_weights_detect_their_files() -> None:
    from bupose.core.plugins import get_registry

    reg = get_registry()
    specs = {n: reg.get("weights", n) for n in reg.names("weights") if n.startswith("centergroup_")}
    assert len(specs) == 6
    assert all("licence" in s.summary for s in specs.values())
    sd = build_state_dict("manifest_w48_crowdpose.tsv")
    found = [n for n, s in specs.items() if s.load().detect(sd)]
    assert found == ["centergroup_higherhrnet_w48_crowdpose"]
    root = {k[len("bu_model."):]: v for k, v in sd.items() if k.startswith("bu_model.")}
    assert [n for n, s in specs.items() if s.load().detect(root)] == ["centergroup_w_root_w48_crowdpose"]
