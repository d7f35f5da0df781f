"""Strict loading of the official backbone keys of every golden manifest.

Manifests copied from shared/golden/{dekr,logocap,centergroup}/ (official state_dict order).
"""

from __future__ import annotations

import pytest
import torch
from _hrnet_golden import GOLDEN, read_manifest, recipe_state_dict
from torch import nn

from bupose.core.model import Head, PoseModel, build_backbone
from bupose.core.plugins import get_registry
from bupose.core.weights import CheckpointMismatchError, load_state_dict_strict, unwrap_checkpoint
from bupose.hrnet.keys import (
    backbone_keys,
    convert_official,
    find_backbone_prefix,
    is_multi_scale,
    split_backbone,
    to_official,
)

# What each method's package passes for its official files (hrnet itself knows no head layout).
FILE_PREFIX = {"dekr": "", "logocap": "backbone.", "centergroup": "bu_model.backbone."}

# (manifest, official layout, our backbone, number of non-backbone rows)
CASES = [
    ("dekr/manifest_w32_coco.tsv", "dekr", "hrnet_w32", 2264 - 1830),
    ("dekr/manifest_w32_crowdpose.tsv", "dekr", "hrnet_w32", 2192 - 1830),
    ("dekr/manifest_w48_coco.tsv", "dekr", "hrnet_w48", 2264 - 1830),
    ("dekr/manifest_w48_crowdpose.tsv", "dekr", "hrnet_w48", 2192 - 1830),
    ("logocap/manifest_w32_coco.tsv", "logocap", "hrnet_w32", 1873 - 1830),
    ("logocap/manifest_w48_coco.tsv", "logocap", "hrnet_w48", 1873 - 1830),
    ("centergroup/manifest_w32_coco.tsv", "centergroup", "higherhrnet_w32", 1987 - 1752),
    ("centergroup/manifest_w48_coco.tsv", "centergroup", "higherhrnet_w48", 1987 - 1752),
    ("centergroup/manifest_w48_crowdpose.tsv", "centergroup", "higherhrnet_w48", 1987 - 1752),
]


class _TinyHead(Head):
    """A head with one parameter, so a real PoseModel can be loaded strictly."""

    def __init__(self, input_shapes, layout) -> None:
        super().__init__(input_shapes, layout)
        name = "concat" if "concat" in input_shapes else "b0"
        self.name = name
        self.conv = nn.Conv2d(input_shapes[name].channels, 2, 1)

    def forward(self, features):
        return {"out": self.conv(features[self.name])}


def _pose_model(backbone_name: str) -> PoseModel:
    """A PoseModel of ``backbone_name`` with shape-only (meta) tensors: loading assigns the values."""
    layout = get_registry().get("layouts", "coco17")
    with torch.device("meta"):
        backbone = build_backbone(backbone_name)
        head = _TinyHead(backbone.output_shape(), layout)
    return PoseModel(backbone, head, head_name="tiny", backbone_name=backbone_name, layout=layout)


@pytest.mark.parametrize(("manifest", "layout", "backbone_name", "n_rest"), CASES, ids=[c[0] for c in CASES])
def test_manifest_backbone_loads_strictly(
    manifest: str, layout: str, backbone_name: str, n_rest: int
) -> None:
    rows = read_manifest(GOLDEN / manifest)
    keys = [r[0] for r in rows]
    prefix = FILE_PREFIX[layout]
    assert find_backbone_prefix(dict.fromkeys(keys)) == prefix

    bare = backbone_keys(keys, prefix)
    assert is_multi_scale(bare) == (layout != "centergroup")
    assert len(keys) - len(bare) == n_rest
    # Our module's own keys are exactly the official bare keys, in the official order.
    model = _pose_model(backbone_name)
    assert list(model.backbone.state_dict()) == bare

    # A state_dict with the manifest's backbone rows, filled by the recipe, plus the head rows.
    bare_set = set(bare)
    official = recipe_state_dict(
        [r for r in rows if r[0].startswith(prefix) and r[0][len(prefix) :] in bare_set]
    )
    for key, shape, _dtype, _kind in rows:
        if key not in official:
            official[key] = torch.zeros(shape)  # head rows: only their names matter here
    converted, rest = convert_official(official)
    assert len(rest) == n_rest
    assert not any(k.startswith("backbone.") for k in rest) or layout == "centergroup"
    own = model.state_dict()
    assert set(converted) == {k for k in own if k.startswith("backbone.")}
    head = {k: torch.zeros(v.shape) for k, v in own.items() if k.startswith("head.")}
    result = model.load_state_dict({**converted, **head}, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = model.backbone.state_dict()
    for key in (
        "conv1.weight",
        "layer1.0.downsample.0.weight",
        "transition3.3.0.0.weight",
        "stage4.2.branches.3.3.bn2.running_var",
    ):
        torch.testing.assert_close(loaded[key], official[prefix + key], rtol=0, atol=0)
    # And back to the official names.
    assert set(to_official(converted, prefix)) == {prefix + k for k in bare}


def test_dekr_split_keeps_head_keys_out() -> None:
    rows = read_manifest(GOLDEN / "dekr/manifest_w32_coco.tsv")
    backbone, rest = split_backbone(dict.fromkeys(r[0] for r in rows), "")
    assert "transition1.0.0.weight" in backbone
    assert all(not k.startswith(("transition1", "transition2", "transition3")) for k in rest)
    assert any(k.startswith("transition_heatmap.") for k in rest)
    assert any(k.startswith("offset_feature_layers.") for k in rest)


def test_dekr_keys_into_higherhrnet_list_the_extra_fuse_layers() -> None:
    rows = read_manifest(GOLDEN / "dekr/manifest_w32_coco.tsv")
    bare = backbone_keys([r[0] for r in rows], "")
    sd = {k: torch.zeros(s) for k, s, _d, _k in rows if k in set(bare)}
    with pytest.raises(CheckpointMismatchError) as info:
        load_state_dict_strict(build_backbone("higherhrnet_w32"), sd, "dekr_w32.pth")
    assert len(info.value.unexpected) == 78
    assert all(
        k.startswith(("stage4.2.fuse_layers.1.", "stage4.2.fuse_layers.2.", "stage4.2.fuse_layers.3."))
        for k in info.value.unexpected
    )
    assert "dekr_w32.pth" in str(info.value)


def test_wrong_width_is_reported_by_shape() -> None:
    rows = read_manifest(GOLDEN / "dekr/manifest_w32_coco.tsv")
    bare = set(backbone_keys([r[0] for r in rows], ""))
    sd = {k: torch.zeros(s) for k, s, _d, _k in rows if k in bare}
    with pytest.raises(
        CheckpointMismatchError, match=r"transition1\.0\.0\.weight \(32, 256, 3, 3\) vs \(18, 256, 3, 3\)"
    ):
        load_state_dict_strict(build_backbone("hrnet_w18"), sd, "w32 file")


def test_unwrap_checkpoint_wrappers_and_errors() -> None:
    t = torch.zeros(1)
    assert unwrap_checkpoint({"state_dict": {"module.conv1.weight": t}, "meta": {}}) == {"conv1.weight": t}
    assert list(unwrap_checkpoint({"model": {"conv1.weight": t}})) == ["conv1.weight"]
    with pytest.raises(ValueError, match=r"ckpt\.pth: expected a dict of tensors"):
        unwrap_checkpoint([t], "ckpt.pth")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"non-tensor entries \['epoch'\]"):
        unwrap_checkpoint({"conv1.weight": t, "epoch": 3}, "ckpt.pth")
    with pytest.raises(ValueError, match="cannot find an HRNet backbone"):
        convert_official({"head.weight": t})
    with pytest.raises(ValueError, match=r"no HRNet backbone keys under the file prefix 'backbone\.'"):
        convert_official({"head.weight": t}, "backbone.")
    assert find_backbone_prefix(["net.conv1.weight", "net.layer1.0.conv1.weight", "conv1.weight"]) == "net."
