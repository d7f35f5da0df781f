from __future__ import annotations

import dataclasses

import pytest

from bupose.core.specs import (
    BackboneSpec,
    FeatureShape,
    HeadSpec,
    InvalidSpecError,
    LayoutSpec,
    OpSpec,
    WeightsSpec,
    import_object,
)


def test_specs_are_frozen() -> None:
    spec = BackboneSpec(name="b", factory="m:f", outputs={"x": FeatureShape(8, 4)}, summary="s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "c"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["", "Upper", "with space", "1abc"])
def test_bad_names_rejected(name: str) -> None:
    with pytest.raises(InvalidSpecError, match="name"):
        BackboneSpec(name=name, factory="m:f", outputs={"x": FeatureShape(8, 4)})


@pytest.mark.parametrize("factory", ["nomodule", "a:b:c", "a b:c", ":x"])
def test_bad_factory_rejected(factory: str) -> None:
    with pytest.raises(InvalidSpecError, match="factory"):
        HeadSpec(name="h", factory=factory, layouts=("coco17",))


def test_backbone_must_declare_outputs() -> None:
    with pytest.raises(InvalidSpecError, match="outputs"):
        BackboneSpec(name="b", factory="m:f")
    with pytest.raises(InvalidSpecError):
        FeatureShape(0, 4)


def test_head_must_list_layouts() -> None:
    with pytest.raises(InvalidSpecError, match="layouts"):
        HeadSpec(name="h", factory="m:f")


def test_layout_validation() -> None:
    ok = LayoutSpec(name="l", keypoints=("a", "b"), flip_index=(1, 0), sigmas=(0.1, 0.1), skeleton=((0, 1),))
    assert ok.num_keypoints == 2
    assert ok.flip_index_with_center() == (1, 0, 2)
    with pytest.raises(InvalidSpecError, match="permutation"):
        LayoutSpec(name="l", keypoints=("a", "b"), flip_index=(0, 0), sigmas=(0.1, 0.1))
    with pytest.raises(InvalidSpecError, match="sigmas"):
        LayoutSpec(name="l", keypoints=("a", "b"), flip_index=(1, 0), sigmas=(0.1,))
    with pytest.raises(InvalidSpecError, match="skeleton"):
        LayoutSpec(name="l", keypoints=("a", "b"), flip_index=(1, 0), sigmas=(0.1, 0.1), skeleton=((0, 5),))
    with pytest.raises(InvalidSpecError, match="involution"):
        LayoutSpec(name="l", keypoints=("a", "b", "c"), flip_index=(1, 2, 0), sigmas=(0.1,) * 3)


def test_op_spec_key_and_availability() -> None:
    spec = OpSpec(name="deform_conv2d", implementation="cpp", factory="m:f", available="math:isfinite")
    assert spec.key == "deform_conv2d/cpp"
    ok, reason = spec.check_available()  # math.isfinite() without args raises -> unavailable
    assert not ok and "TypeError" in reason


def test_weights_spec_needs_file_names() -> None:
    with pytest.raises(InvalidSpecError, match="file name"):
        WeightsSpec(name="w", factory="m:f")


def test_import_object_and_load() -> None:
    assert import_object("os.path:join") is __import__("os").path.join
    spec = HeadSpec(name="h", factory="os.path:basename", layouts=("coco17",))
    assert spec.load()("/a/b") == "b"
    desc = spec.with_provenance("dist", "1.0").describe()
    assert desc["distribution"] == "dist" and desc["layouts"] == ["coco17"]
