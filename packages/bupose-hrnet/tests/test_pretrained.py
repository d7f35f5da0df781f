"""ImageNet classification HRNet checkpoints -> backbones: extras dropped by name, the rest strict.

Synthetic checkpoints: the bare backbone rows of shared/golden/dekr/manifest_w32_coco.tsv (the
classification layout has the same keys: full stage-4 fusion) filled by the recipe, plus synthetic
classification extras (``incre_modules``, ``downsamp_modules``, ``final_layer``, ``classifier``).
"""

from __future__ import annotations

import pytest
import torch
from _hrnet_golden import GOLDEN, read_manifest, recipe, recipe_state_dict

from bupose.core.model import build_backbone
from bupose.core.plugins import get_registry
from bupose.core.specs import WeightsSpec
from bupose.core.weights import CheckpointMismatchError, detect_official
from bupose.hrnet.keys import backbone_keys
from bupose.hrnet.pretrained import (
    IMAGENET_W32,
    IMAGENET_W48,
    IMAGENET_W48_HIGHER,
    convert_imagenet,
    expected_shapes,
    load_imagenet_pretrained,
)

EXTRAS = {
    "incre_modules.0.0.conv1.weight": (32, 32, 1, 1),
    "incre_modules.0.0.bn1.running_var": (32,),
    "downsamp_modules.0.0.weight": (256, 128, 3, 3),
    "final_layer.0.weight": (64, 1024, 1, 1),
    "classifier.weight": (1000, 64),
    "classifier.bias": (1000,),
}


def _extras() -> dict[str, torch.Tensor]:
    return {k: recipe.golden_tensor(k, s) for k, s in EXTRAS.items()}


@pytest.fixture(scope="module")
def imagenet_w32() -> dict[str, torch.Tensor]:
    rows = read_manifest(GOLDEN / "dekr/manifest_w32_coco.tsv")
    bare = set(backbone_keys([r[0] for r in rows], ""))
    sd = recipe_state_dict([r for r in rows if r[0] in bare])
    return {**sd, **_extras()}


def _meta_imagenet(name: str) -> dict[str, torch.Tensor]:
    sd = {k: torch.empty(s, device="meta") for k, s in expected_shapes(name).items()}
    return {**sd, **{k: torch.empty(s, device="meta") for k, s in EXTRAS.items()}}


def test_convert_drops_extras_and_keeps_everything_else(imagenet_w32) -> None:
    out = convert_imagenet(imagenet_w32, "hrnet_w32")
    assert list(out) == list(expected_shapes("hrnet_w32"))
    assert len(out) == 1830
    assert not any(
        k.startswith(("incre_modules", "downsamp_modules", "final_layer", "classifier")) for k in out
    )
    assert out["stage4.2.fuse_layers.3.0.2.0.weight"] is imagenet_w32["stage4.2.fuse_layers.3.0.2.0.weight"]


def test_load_file_into_hrnet_and_higherhrnet(imagenet_w32, tmp_path) -> None:
    path = tmp_path / "hrnet_w32-36af842e.pth"
    torch.save(imagenet_w32, path)
    for name, n_keys in (("hrnet_w32", 1830), ("higherhrnet_w32", 1752)):
        backbone = build_backbone(name)
        assert load_imagenet_pretrained(backbone, path) is backbone
        sd = backbone.state_dict()
        assert len(sd) == n_keys
        for key, value in sd.items():
            assert torch.equal(value, imagenet_w32[key]), key


def test_wrapped_and_dataparallel_checkpoints(imagenet_w32) -> None:
    wrapped = {"state_dict": {f"module.{k}": v for k, v in imagenet_w32.items()}, "epoch": 100}
    backbone = load_imagenet_pretrained(build_backbone("higherhrnet_w32"), wrapped)
    assert torch.equal(backbone.conv1.weight, imagenet_w32["conv1.weight"])


def test_unexpected_missing_and_misshaped_keys_are_listed(imagenet_w32) -> None:
    bad = dict(imagenet_w32)
    bad["aux_head.weight"] = torch.zeros(3)
    del bad["stage3.1.branches.2.3.conv2.weight"]
    bad["transition2.2.0.0.weight"] = torch.zeros(128, 32, 3, 3)
    with pytest.raises(CheckpointMismatchError) as info:
        convert_imagenet(bad, "hrnet_w32", where="my_hrnet.pth")
    err = info.value
    assert err.unexpected == ["aux_head.weight"]
    assert err.missing == ["stage3.1.branches.2.3.conv2.weight"]
    assert err.shape_mismatch == ["transition2.2.0.0.weight (128, 32, 3, 3) vs (128, 64, 3, 3)"]
    assert "my_hrnet.pth" in str(err) and "incre_modules" in str(err)


def test_wrong_width_file_names_the_path(tmp_path) -> None:
    path = tmp_path / "w48.pth"
    torch.save({k: torch.zeros(s) for k, s in expected_shapes("hrnet_w18").items()}, path)
    with pytest.raises(
        CheckpointMismatchError, match=r"w48\.pth.*shape mismatches: transition1\.0\.0\.weight"
    ):
        load_imagenet_pretrained(build_backbone("hrnet_w32"), path)


def test_registered_weights_specs_detect_and_convert(imagenet_w32) -> None:
    registry = get_registry()
    names = {s.name: s for s in registry.components["weights"].values() if s.distribution == "bupose-hrnet"}
    assert set(names) == {
        "hrnet_w18_imagenet",
        "hrnet_w32_imagenet",
        "hrnet_w48_imagenet",
        "hrnet_w48_imagenet_mmpose",
    }
    spec = names["hrnet_w32_imagenet"]
    assert isinstance(spec, WeightsSpec)
    assert spec.role == "backbone" and spec.backbone == "hrnet_w32"
    assert spec.file_names == ("hrnet_w32-36af842e.pth",)

    found = detect_official(imagenet_w32, role="backbone")
    assert found is not None and found.name == "hrnet_w32_imagenet"
    converted = found.load().convert(imagenet_w32)
    assert list(converted) == list(expected_shapes("hrnet_w32"))
    assert list(found.load()(imagenet_w32)) == list(converted)

    w18 = _meta_imagenet("hrnet_w18")
    found = detect_official(w18, role="backbone")
    assert found is not None and found.name == "hrnet_w18_imagenet"


def test_detection_needs_the_classification_layout(imagenet_w32) -> None:
    no_extras = {
        k: v
        for k, v in imagenet_w32.items()
        if k.split(".")[0] not in {"incre_modules", "downsamp_modules", "final_layer", "classifier"}
    }
    assert not IMAGENET_W32.detect(no_extras)  # a bare pose backbone is not an ImageNet file
    assert not IMAGENET_W32.detect({**imagenet_w32, "head_heatmap.0.weight": torch.zeros(1)})
    assert not IMAGENET_W48.detect(imagenet_w32)
    assert not IMAGENET_W32.detect({"not": "a state dict"})
    assert IMAGENET_W32.detect({"state_dict": imagenet_w32})


def test_w48_converters_on_shapes_only() -> None:
    sd = _meta_imagenet("hrnet_w48")
    assert IMAGENET_W48.detect(sd) and IMAGENET_W48_HIGHER.detect(sd)
    assert len(IMAGENET_W48.convert(sd)) == 1830
    higher = IMAGENET_W48_HIGHER.convert(sd)
    assert len(higher) == 1752
    assert "stage4.2.fuse_layers.1.0.0.0.weight" not in higher


def test_training_backbone_init_reads_an_imagenet_file(tmp_path) -> None:
    """``init_backbone`` (core's ``load_backbone_weights``) finds the ImageNet converter by the key
    layout, loads the backbone strictly and leaves the head as built."""
    from bupose.core.inference import load_backbone_weights
    from bupose.core.model import Head, PoseModel

    class _Head(Head):
        def __init__(self) -> None:
            super().__init__({}, get_registry().get("layouts", "coco17"))
            self.conv = torch.nn.Conv2d(18, 17, 1)

    torch.manual_seed(0)
    ref = build_backbone("hrnet_w18").state_dict()
    assert list(ref) == list(expected_shapes("hrnet_w18"))
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v + 3 for k, v in ref.items()}
    sd["classifier.weight"] = torch.zeros(1000, 2048)
    torch.save(sd, tmp_path / "hrnetv2_w18_imagenet_pretrained.pth")
    head = _Head()
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    model = PoseModel(build_backbone("hrnet_w18"), head, head_name="x", backbone_name="hrnet_w18",
                      layout=head.layout)
    what = load_backbone_weights(model, tmp_path / "hrnetv2_w18_imagenet_pretrained.pth")
    assert what == "official backbone hrnet_w18_imagenet"
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], sd[k]) for k in own)
    assert all(torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())
