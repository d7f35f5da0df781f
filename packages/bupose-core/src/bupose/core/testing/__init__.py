"""Conformance suites every backbone, head, codec and decoder plugin subclasses.

Usage in a plugin's tests (the pytest plugin ``bupose.core.testing.pytest_plugin`` is registered
automatically through the ``pytest11`` entry point)::

    from bupose.core.testing import BackboneContract, CodecContract, HeadContract

    class TestMyBackbone(BackboneContract):
        backbone_name = "my_backbone"

    class TestMyHead(HeadContract):
        head_name = "my_head"
        backbone_name = "hrnet_w18_small"   # any registered backbone

    class TestMyCodec(CodecContract):
        head_name = "my_head"               # the codec named by the head's spec

Class attributes configure the suites; override the ``make_*`` methods for anything special.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from ..batch import Batch, collate
from ..codec import Codec, Encoded, image_points
from ..model import Backbone, Head, PoseModel, build_backbone, build_model
from ..plugins import get_registry
from ..poses import Poses
from ..specs import BackboneSpec, FeatureShape, HeadSpec, LayoutSpec, import_object

__all__ = [
    "BackboneContract",
    "CodecContract",
    "DecoderContract",
    "HeadContract",
    "bench_stage_results",
    "synthetic_people",
    "synthetic_sample",
]


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


def synthetic_people(
    layout: LayoutSpec, input_size: int, centres: Sequence[tuple[float, float]], seed: int = 0
) -> list[np.ndarray]:
    """People (J, 3) in input pixels around ``centres`` (fractions of ``input_size``), every joint
    labelled (v = 2), spread over about a quarter of the input so each is a mid-sized person."""
    rng = np.random.default_rng(seed)
    j = layout.num_keypoints
    people = []
    for fx, fy in centres:
        kp = np.zeros((j, 3))
        kp[:, 0] = fx * input_size + rng.uniform(-0.14, 0.14, j) * input_size
        kp[:, 1] = fy * input_size + rng.uniform(-0.17, 0.17, j) * input_size
        kp[:, 2] = 2
        people.append(kp)
    return people


def synthetic_sample(people: Sequence[np.ndarray], input_size: int, num_keypoints: int) -> dict[str, Any]:
    """An already-augmented sample (identity augmentation): a black ``input_size`` square image,
    ``keypoints`` (N, J, 3), ``areas`` (keypoint-box areas, input px²), ``bboxes`` (N, 4) xywh,
    ``iscrowd`` and ``num_keypoints``."""
    kps = np.stack(people).astype(np.float64) if len(people) else np.zeros((0, num_keypoints, 3))
    lo = kps[:, :, :2].min(axis=1) if len(people) else np.zeros((0, 2))
    hi = kps[:, :, :2].max(axis=1) if len(people) else np.zeros((0, 2))
    wh = hi - lo
    return {
        "image": np.zeros((input_size, input_size, 3), np.uint8),
        "keypoints": kps,
        "areas": wh[:, 0] * wh[:, 1],
        "bboxes": np.concatenate([lo, wh], axis=1),
        "iscrowd": np.zeros(len(people), np.int64),
        "num_keypoints": (kps[:, :, 2] > 0).sum(axis=1).astype(np.int64),
    }


def _build_codec(head_name: str, layout: str | None, input_size: int | tuple[int, int], kwargs: Mapping[str, Any]) -> Any:
    registry = get_registry()
    spec = registry.get("heads", head_name)
    assert isinstance(spec, HeadSpec)
    if spec.codec is None:
        pytest.skip(f"head {head_name!r} declares no codec")
    return import_object(spec.codec)(layout=layout or spec.layouts[0], input_size=input_size, **kwargs)


def _one_line_error(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return str(msg)


class HeadContract:
    """What every registered head must do on a given backbone.

    Training checks build the head's codec (``codec_kwargs``) at ``input_size``, encode
    :meth:`make_training_samples` with it, batch them as the engine does
    (:class:`bupose.core.engine.data.EncodedDataset` + :func:`bupose.core.batch.collate`) and run
    ``model(batch)`` / ``model.loss(outputs, batch)``.
    """

    head_name: ClassVar[str]
    backbone_name: ClassVar[str]
    layout: ClassVar[str | None] = None
    head_kwargs: ClassVar[dict[str, Any]] = {}
    backbone_kwargs: ClassVar[dict[str, Any]] = {}
    codec_kwargs: ClassVar[dict[str, Any]] = {}
    input_size: ClassVar[tuple[int, int]] = (64, 64)
    train_steps: ClassVar[int] = 4
    train_lr: ClassVar[float] = 1e-3

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

    def make_codec(self, model: PoseModel) -> Any:
        """The head's codec for ``model``'s layout at ``input_size`` (skips when none is declared)."""
        return _build_codec(self.head_name, model.layout.name, self.input_size, self.codec_kwargs)

    def make_training_samples(self, layout: LayoutSpec) -> list[dict[str, Any]]:
        """Two already-augmented square samples of ``input_size`` with two people each."""
        h, w = self.input_size
        if h != w:
            raise NotImplementedError("override make_training_samples for a non-square input_size")
        return [
            synthetic_sample(synthetic_people(layout, h, ((0.3, 0.35), (0.68, 0.62)), seed=i), h, layout.num_keypoints)
            for i in range(2)
        ]

    def make_batch(self, model: PoseModel) -> Batch:
        """A training :class:`Batch` of :meth:`make_training_samples`, encoded by the head's codec."""
        from ..data.transforms import to_tensor
        from ..engine.data import EncodedDataset

        codec = self.make_codec(model)
        samples = self.make_training_samples(model.layout)
        ds = EncodedDataset(samples, transform=None, encode=codec.encode, to_tensor=to_tensor,
                            sample_keys=tuple(codec.sample_keys))
        return collate([ds[(0, i)] for i in range(len(samples))])

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

    def test_forward_takes_a_batch(self, model: PoseModel) -> None:
        h, w = self.input_size
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            plain = model(x)
            batched = model(Batch(images=x))
        assert set(plain) == set(batched)
        for name in plain:
            torch.testing.assert_close(plain[name], batched[name], msg=f"field {name}: tensor vs Batch input")

    def test_training_pieces_are_declared(self, model: PoseModel) -> None:
        from ..engine.params import plan_param_groups
        from ..model import TRAIN_DEFAULT_KEYS, ParamGroupRule

        head_cls = type(model.head)
        assert callable(import_object(head_cls.augmentation)), f"augmentation {head_cls.augmentation} is not callable"
        unknown = set(head_cls.train_defaults) - set(TRAIN_DEFAULT_KEYS)
        assert not unknown, f"train_defaults has unknown keys {sorted(unknown)}"
        rules = model.param_group_rules()
        assert all(isinstance(r, ParamGroupRule) for r in rules)
        # every rule's prefix matches part of the model (plan_param_groups raises on one that does not)
        plan = plan_param_groups(model, rules, lr=1e-3, weight_decay=0.0)
        assert plan.groups

    def test_outputs_match_codec_targets(self, model: PoseModel) -> None:
        batch = self.make_batch(model)
        codec = self.make_codec(model)
        with torch.no_grad():
            out = model(batch)
        assert codec.output_fields, "the codec names no output_fields"
        for name in codec.output_fields:
            assert name in out, f"the codec's output field {name!r} is not a head output ({sorted(out)})"
            assert out[name].shape == batch.targets[name].shape, (
                f"field {name}: head output {tuple(out[name].shape)} vs codec target {tuple(batch.targets[name].shape)}"
            )

    def test_loss_decreases_on_a_tiny_batch(self) -> None:
        model = self.make_model().train()
        batch = self.make_batch(model)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=self.train_lr)
        totals = []
        for _ in range(self.train_steps + 1):
            losses = model.loss(model(batch), batch)
            assert isinstance(losses, Mapping) and losses and "loss" not in losses
            for name, value in losses.items():
                assert value.ndim == 0 and torch.isfinite(value), f"loss {name} must be a finite scalar"
            total = sum(losses.values())
            assert isinstance(total, torch.Tensor)
            totals.append(float(total.detach()))
            opt.zero_grad()
            total.backward()
            opt.step()
        assert totals[-1] < totals[0], f"the loss did not decrease over {self.train_steps} steps: {totals}"

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
    """What every codec must do, through exactly the :class:`bupose.core.codec.Codec` interface.

    Encode a synthetic sample (:meth:`make_sample`), take the codec's ``output_fields`` of the dense
    targets as ideal network outputs, decode them: the people come back within ``tolerance_px``.
    Also: dense maps have the sizes ``output_sizes`` gives; a sample lacking one of
    ``sample_keys`` is one clear error naming it; ``meta["matrix"]`` maps poses to image pixels;
    an empty sample decodes to nobody.

    Set ``head_name`` (the codec is the head's ``HeadSpec.codec``) or override :meth:`make_codec`;
    ``num_people`` 1 for single-person codecs.
    """

    head_name: ClassVar[str | None] = None
    layout: ClassVar[str] = "coco17"
    input_size: ClassVar[int] = 128
    codec_kwargs: ClassVar[dict[str, Any]] = {}
    tolerance_px: ClassVar[float] = 2.0
    num_people: ClassVar[int] = 2

    def make_codec(self) -> Any:
        if self.head_name is None:
            raise NotImplementedError("set head_name or override make_codec")
        return _build_codec(self.head_name, self.layout, self.input_size, self.codec_kwargs)

    def make_people(self) -> list[np.ndarray]:
        """``num_people`` people (J, 3) in input pixels, apart from each other."""
        layout = get_registry().get("layouts", self.layout)
        assert isinstance(layout, LayoutSpec)
        centres = ((0.31, 0.37), (0.69, 0.63), (0.3, 0.72), (0.7, 0.28))[: self.num_people]
        return synthetic_people(layout, self.input_size, centres)

    def make_sample(self, people: Sequence[np.ndarray]) -> dict[str, Any]:
        """An already-augmented sample holding ``people`` (override to add codec-specific keys)."""
        layout = get_registry().get("layouts", self.layout)
        assert isinstance(layout, LayoutSpec)
        return synthetic_sample(people, self.input_size, layout.num_keypoints)

    def _round_trip(self, codec: Any, samples: Sequence[Mapping[str, Any]], metas: Sequence[Mapping[str, Any]]) -> list[Poses]:
        encoded = [codec.encode(s) for s in samples]
        outputs = {f: torch.stack([e.dense[f] for e in encoded]) for f in codec.output_fields}
        poses = codec.decode(outputs, metas)
        assert isinstance(poses, list) and len(poses) == len(samples)
        assert all(isinstance(p, Poses) for p in poses)
        return poses

    def _assert_recovered(self, poses: Poses, people: Sequence[np.ndarray], what: str) -> None:
        assert len(poses) >= len(people), f"{what}: decoded {len(poses)} people, encoded {len(people)}"
        for k, person in enumerate(people):
            vis = person[:, 2] > 0
            err = np.linalg.norm(poses.keypoints[:, vis, :2] - person[None, vis, :2], axis=2).mean(axis=1)
            assert err.min() <= self.tolerance_px, f"{what}: person {k} not recovered (mean error {err.min():.2f} px)"

    def test_declares_the_interface(self) -> None:
        codec = self.make_codec()
        assert isinstance(codec, Codec), "the codec must implement bupose.core.codec.Codec"
        assert isinstance(codec.sample_keys, tuple) and all(isinstance(k, str) for k in codec.sample_keys)
        assert isinstance(codec.output_fields, tuple) and codec.output_fields
        missing = [k for k in codec.sample_keys if k not in self.make_sample(self.make_people())]
        assert not missing, f"make_sample lacks the codec's sample_keys {missing}; override make_sample"

    def test_encode_shapes_match_output_sizes(self) -> None:
        codec = self.make_codec()
        people = self.make_people()
        enc = codec.encode(self.make_sample(people))
        assert isinstance(enc, Encoded), "encode must return bupose.core.codec.Encoded"
        sizes = codec.output_sizes(self.input_size)
        assert sizes and all(
            isinstance(k, str) and len(v) == 2 and all(isinstance(x, int) for x in v) for k, v in sizes.items()
        ), f"output_sizes must map names to (h, w) ints, got {sizes}"
        for name, t in enc.dense.items():
            assert isinstance(t, torch.Tensor), f"dense field {name} is not a tensor"
            if t.ndim >= 2:
                assert tuple(t.shape[-2:]) in set(sizes.values()), (
                    f"dense field {name} is {tuple(t.shape)}, not at any of the output sizes {sizes}"
                )
        for name in codec.output_fields:
            assert name in enc.dense, f"output field {name!r} is not a dense target ({sorted(enc.dense)})"
            assert enc.dense[name].ndim >= 3, f"output field {name!r} must be a (C, h, w) map"
        counts = {name: int(t.shape[0]) for name, t in enc.instances.items()}
        assert len(set(counts.values())) <= 1, f"instance fields disagree on the number of people: {counts}"
        if counts:
            assert next(iter(counts.values())) == len(people)

    def test_missing_sample_key_is_one_clear_error(self) -> None:
        codec = self.make_codec()
        sample = self.make_sample(self.make_people())
        for key in codec.sample_keys:
            partial = {k: v for k, v in sample.items() if k != key}
            with pytest.raises((KeyError, ValueError)) as info:
                codec.encode(partial)
            msg = _one_line_error(info.value)
            assert key in msg and msg.strip("'\" ") != key and "\n" not in msg, (
                f"missing {key!r}: unclear error {msg!r} (BaseCodec.check_sample gives a clear one)"
            )

    def test_round_trip_recovers_people(self) -> None:
        codec = self.make_codec()
        people = self.make_people()
        (poses,) = self._round_trip(codec, [self.make_sample(people)], [{}])
        self._assert_recovered(poses, people, "input pixels")

    def test_round_trip_batched_through_the_matrix(self) -> None:
        codec = self.make_codec()
        people = self.make_people()
        sample = self.make_sample(people)
        s = self.input_size
        # image -> input: x2 and a shift (the image is half the input's size)
        matrix = np.array([[2.0, 0.0, -0.05 * s], [0.0, 2.0, 0.03 * s]])
        plain, mapped = self._round_trip(codec, [sample, sample], [{"input_hw": (s, s)}, {"matrix": matrix}])
        self._assert_recovered(plain, people, "batch item 0")
        expected = [image_points(p, {"matrix": matrix}) for p in people]
        self._assert_recovered(mapped, expected, "batch item 1 (image pixels via meta['matrix'])")

    def test_empty_sample_decodes_to_nobody(self) -> None:
        codec = self.make_codec()
        (poses,) = self._round_trip(codec, [self.make_sample([])], [{}])
        assert len(poses) == 0, f"no people encoded, {len(poses)} decoded"


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


def bench_stage_results(
    head: str, backbone: str, options: Mapping[str, str], batch_sizes: Sequence[int] = (1, 2)
) -> list[dict[str, Any]]:
    """Run ``bupose bench``'s measurement (:func:`bupose.core.benchmark.bench_pipeline`) of HEAD on
    BACKBONE on two tiny random images (one round, the given ``--option`` values) and check what
    every pipeline owes the benchmark: one row per batch size, each reporting its ``forward`` and
    ``decode`` stages, which add up to no more than the total. Returns the rows as dicts."""
    from ..benchmark import bench_pipeline

    results = bench_pipeline(
        head, backbone, batch_sizes=tuple(batch_sizes), images=2, image_size=(48, 64), rounds=1, warmup=0,
        options=dict(options),
    )  # fmt: skip
    rows = [r.as_dict() for r in results]
    assert [r["name"] for r in rows] == [f"fp32 b{b}" for b in batch_sizes]
    for r in rows:
        assert set(r["stages_wall"]) == {"forward", "decode"} and r["wall"] > 0, r
        assert r["stages_wall"]["forward"] + r["stages_wall"]["decode"] <= r["wall"] * 1.01, r
    return rows
