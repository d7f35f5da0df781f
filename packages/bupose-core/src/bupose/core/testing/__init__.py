"""Conformance suites every backbone, head, codec and decoder plugin subclasses.

Usage in a plugin's tests (the pytest plugin ``bupose.core.testing.pytest_plugin`` is registered
automatically through the ``pytest11`` entry point)::

    from bupose.core.testing import BackboneContract, HeadContract

    class TestMyBackbone(BackboneContract):
        backbone_name = "my_backbone"

    class TestMyHead(HeadContract):
        head_name = "my_head"
        backbone_name = "hrnet_w18_small"   # any registered backbone

Class attributes configure the suites; override the ``make_*`` methods for anything special.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from ..model import Backbone, Head, PoseModel, build_backbone, build_model
from ..plugins import get_registry
from ..poses import Poses
from ..specs import BackboneSpec, FeatureShape, HeadSpec, LayoutSpec, import_object

__all__ = ["BackboneContract", "CodecContract", "DecoderContract", "HeadContract"]


def _roundtrip(module: torch.nn.Module, fresh: torch.nn.Module) -> None:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    result = fresh.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for (k1, v1), (k2, v2) in zip(module.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert k1 == k2
        assert torch.equal(v1, v2), f"{k1} differs after the state_dict round trip"


class BackboneContract:
    """What every registered backbone must do."""

    backbone_name: ClassVar[str]
    backbone_kwargs: ClassVar[dict[str, Any]] = {}
    input_size: ClassVar[tuple[int, int]] = (64, 96)
    batch_size: ClassVar[int] = 2

    def make_backbone(self) -> Backbone:
        torch.manual_seed(0)
        return build_backbone(self.backbone_name, **self.backbone_kwargs)

    @pytest.fixture
    def backbone(self) -> Backbone:
        return self.make_backbone().eval()

    def test_registered_with_valid_spec(self) -> None:
        spec = get_registry().get("backbones", self.backbone_name)
        assert isinstance(spec, BackboneSpec)
        assert spec.distribution, "spec carries the providing distribution"
        assert spec.summary, "spec needs a one-line summary"
        spec.validate()

    def test_output_shape_matches_spec(self, backbone: Backbone) -> None:
        spec = get_registry().get("backbones", self.backbone_name)
        assert isinstance(spec, BackboneSpec)
        declared = backbone.output_shape()
        assert all(isinstance(v, FeatureShape) for v in declared.values())
        if not self.backbone_kwargs:
            assert dict(spec.outputs) == declared

    def test_size_divisibility_matches_spec(self, backbone: Backbone) -> None:
        spec = get_registry().get("backbones", self.backbone_name)
        assert isinstance(spec, BackboneSpec)
        assert backbone.size_divisibility == spec.size_divisibility
        h, w = self.input_size
        assert h % spec.size_divisibility == 0 and w % spec.size_divisibility == 0, (
            f"the contract's input_size {self.input_size} must be a multiple of size_divisibility"
        )

    def test_forward_shapes_match_declared(self, backbone: Backbone) -> None:
        h, w = self.input_size
        with torch.no_grad():
            feats = backbone(torch.randn(self.batch_size, 3, h, w))
        declared = backbone.output_shape()
        assert set(feats) == set(declared)
        for name, shape in declared.items():
            t = feats[name]
            assert t.shape == (self.batch_size, shape.channels, h // shape.stride, w // shape.stride), (
                f"output {name}: got {tuple(t.shape)}, declared {shape}"
            )
            assert torch.isfinite(t).all()

    def test_batch_consistency(self, backbone: Backbone) -> None:
        h, w = self.input_size
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            both = backbone(x)
            one = backbone(x[1:2])
        for name in both:
            torch.testing.assert_close(both[name][1:2], one[name], rtol=1e-4, atol=1e-4)

    def test_state_dict_round_trip(self, backbone: Backbone) -> None:
        torch.manual_seed(1)
        _roundtrip(backbone, build_backbone(self.backbone_name, **self.backbone_kwargs))

    def test_gradients_flow(self) -> None:
        backbone = self.make_backbone().train()
        h, w = self.input_size
        feats = backbone(torch.randn(2, 3, h, w))
        sum(f.float().mean() for f in feats.values()).backward()
        grads = [p.grad for p in backbone.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


class HeadContract:
    """What every registered head must do on a given backbone."""

    head_name: ClassVar[str]
    backbone_name: ClassVar[str]
    layout: ClassVar[str | None] = None
    head_kwargs: ClassVar[dict[str, Any]] = {}
    backbone_kwargs: ClassVar[dict[str, Any]] = {}
    input_size: ClassVar[tuple[int, int]] = (64, 64)

    def make_model(self) -> PoseModel:
        torch.manual_seed(0)
        return build_model(
            self.head_name,
            self.backbone_name,
            self.layout,
            head_kwargs=self.head_kwargs,
            backbone_kwargs=self.backbone_kwargs,
        )

    @pytest.fixture
    def model(self) -> PoseModel:
        return self.make_model().eval()

    def test_registered_with_valid_spec(self) -> None:
        registry = get_registry()
        spec = registry.get("heads", self.head_name)
        assert isinstance(spec, HeadSpec)
        assert spec.distribution and spec.summary
        for layout in spec.layouts:
            assert isinstance(registry.get("layouts", layout), LayoutSpec)
        if spec.grouper is not None:
            registry.get("groupers", spec.grouper)
        if spec.options is not None:
            from ..options import check_options_class

            options_cls = import_object(spec.options)
            check_options_class(options_cls)
            if spec.pipeline is not None:
                declared = getattr(import_object(spec.pipeline), "options_class", None)
                assert declared is options_cls, f"{spec.pipeline}.options_class must be {spec.options}"
        for attr in ("codec", "pipeline"):
            if getattr(spec, attr) is not None:
                assert callable(import_object(getattr(spec, attr)))

    def test_head_is_a_head(self, model: PoseModel) -> None:
        assert isinstance(model.head, Head)
        assert model.head.layout.name == model.layout.name

    def test_forward_outputs_are_finite(self, model: PoseModel) -> None:
        h, w = self.input_size
        with torch.no_grad():
            out = model(torch.randn(2, 3, h, w))
        assert isinstance(out, Mapping) and out
        for name, t in out.items():
            assert t.shape[0] == 2, f"field {name} must keep the batch dimension"
            assert torch.isfinite(t).all(), f"field {name} is not finite"

    def test_state_dict_round_trip(self, model: PoseModel) -> None:
        torch.manual_seed(1)
        _roundtrip(model, self.make_model())

    def test_pipeline_predicts_poses(self, model: PoseModel) -> None:
        spec = get_registry().get("heads", self.head_name)
        assert isinstance(spec, HeadSpec)
        if spec.pipeline is None:
            pytest.skip("head declares no pipeline")
        pipeline = import_object(spec.pipeline)(model)
        rng = np.random.default_rng(0)
        images = [
            rng.integers(0, 255, (self.input_size[0] + 7, self.input_size[1] - 5, 3), dtype=np.uint8),
            rng.integers(0, 255, (self.input_size[0] - 3, self.input_size[1] + 11, 3), dtype=np.uint8),
        ]
        with torch.inference_mode():
            batched = pipeline.predict_batch(images)
            single = [pipeline.predict_batch([img])[0] for img in images]
        assert len(batched) == 2
        for b, s in zip(batched, single, strict=True):
            assert isinstance(b, Poses)
            assert b.num_keypoints == model.layout.num_keypoints
            assert len(b) == len(s)
            np.testing.assert_allclose(b.keypoints, s.keypoints, rtol=1e-4, atol=1e-3)


class CodecContract:
    """What every codec must do: targets that decode back to the people they encode.

    Subclasses set ``codec`` via :meth:`make_codec` and provide :meth:`make_people` (a list of
    (J, 3) keypoint arrays in input pixels) and :meth:`encode_decode` (encode, turn targets into
    ideal network outputs, decode to :class:`Poses`).
    """

    layout: ClassVar[str] = "coco17"
    tolerance_px: ClassVar[float] = 2.0

    def make_codec(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_people(self) -> list[np.ndarray]:
        rng = np.random.default_rng(0)
        layout = get_registry().get("layouts", self.layout)
        assert isinstance(layout, LayoutSpec)
        people = []
        for cx, cy in ((20.0, 24.0), (44.0, 40.0)):
            kp = np.zeros((layout.num_keypoints, 3))
            kp[:, 0] = cx + rng.uniform(-8, 8, layout.num_keypoints)
            kp[:, 1] = cy + rng.uniform(-10, 10, layout.num_keypoints)
            kp[:, 2] = 2
            people.append(kp)
        return people

    def encode_decode(self, codec: Any, people: list[np.ndarray]) -> Poses:  # pragma: no cover
        raise NotImplementedError

    def test_round_trip_recovers_people(self) -> None:
        codec = self.make_codec()
        people = self.make_people()
        poses = self.encode_decode(codec, people)
        assert len(poses) >= len(people)
        for person in people:
            dists = np.linalg.norm(poses.keypoints[:, :, :2] - person[None, :, :2], axis=2).mean(axis=1)
            assert dists.min() <= self.tolerance_px, f"person not recovered (mean error {dists.min():.2f} px)"


class DecoderContract:
    """What every decoder must do: empty maps give no people; results are per image.

    Subclasses implement :meth:`make_decoder` and :meth:`make_outputs` (a batch of head outputs
    and per-image metadata) and :meth:`decode`.
    """

    def make_decoder(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_outputs(self, batch: int, empty: bool) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, decoder: Any, outputs: Any) -> list[Poses]:  # pragma: no cover - abstract
        raise NotImplementedError

    def test_empty_outputs_give_no_people(self) -> None:
        result = self.decode(self.make_decoder(), self.make_outputs(2, empty=True))
        assert len(result) == 2
        assert all(len(p) == 0 for p in result)

    def test_batch_matches_single(self) -> None:
        decoder = self.make_decoder()
        outputs = self.make_outputs(2, empty=False)
        batched = self.decode(decoder, outputs)
        assert len(batched) == 2
        assert any(len(p) > 0 for p in batched), "non-empty outputs must decode someone"
        for p in batched:
            assert isinstance(p, Poses)
            assert np.isfinite(p.keypoints).all() and np.isfinite(p.scores).all()
