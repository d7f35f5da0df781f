"""Core's BackboneContract / HeadContract for a reduced IMHN (same topology, narrow, 2 stacks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bupose.core.model import PoseModel
from bupose.core.testing import BackboneContract, HeadContract

SMALL = {"nstack": 2, "stem_width": 16, "increase": 8, "feat_channels": 16, "se_hidden": 4}


class TestIMHNSmall(BackboneContract):
    backbone_name = "imhn"
    backbone_kwargs = SMALL
    input_size = (64, 128)


class TestSimplePoseOnSmallIMHN(HeadContract):
    head_name = "simplepose"
    backbone_name = "imhn"
    backbone_kwargs = SMALL
    input_size = (64, 64)

    def make_model(self) -> PoseModel:
        model = super().make_model()
        model.config["input_size"] = 64
        return model

    def make_training_samples(self, layout):
        # textured images: on constant images every BN of the 1x1 innermost hourglass level (stride 64)
        # sees zero variance and its backward is not finite
        samples = super().make_training_samples(layout)
        rng = np.random.default_rng(0)
        for s in samples:
            s["image"] = rng.integers(0, 255, s["image"].shape, dtype=np.uint8)
        return samples


def test_head_fields_and_loss_on_small_imhn() -> None:
    model = TestSimplePoseOnSmallIMHN().make_model().train()
    out = model(torch.rand(2, 3, 64, 64))
    assert out["maps"].shape == (2, 50, 16, 16)
    assert sorted(k for k in out if k.startswith("pyramid")) == [f"pyramid_s{s}_{j}" for s in range(2) for j in range(5)]
    assert torch.equal(out["maps"], out["pyramid_s1_0"])


def test_head_loss_backpropagates() -> None:
    model = TestSimplePoseOnSmallIMHN().make_model().train()
    out = model(torch.rand(2, 3, 64, 64))
    targets = {"maps": torch.rand(2, 50, 16, 16) * 0.5, "mask_misses": torch.ones(2, 1, 16, 16)}
    losses = model.head.loss(out, targets)
    assert set(losses) == {"focal_l2"} and torch.isfinite(losses["focal_l2"])
    losses["focal_l2"].backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.backbone.pre.parameters())


def test_imagenet_rgb_input_equals_bgr01() -> None:
    from bupose.core.model import build_backbone

    torch.manual_seed(0)
    a = build_backbone("imhn", **SMALL).eval()
    b = build_backbone("imhn", **SMALL, input_format="imagenet_rgb").eval()
    b.load_state_dict(a.state_dict(), strict=True)
    bgr = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rgb_norm = (bgr.flip(1) - mean) / std
    with torch.no_grad():
        torch.testing.assert_close(a(bgr)["stack1_scale0_pred"], b(rgb_norm)["stack1_scale0_pred"], rtol=1e-4, atol=1e-5)


def test_single_stack_variant_on_another_backbone() -> None:
    from bupose.core.layouts import get_layout
    from bupose.core.specs import FeatureShape
    from bupose.simplepose.model import SimplePoseHead

    shapes = {"b0": FeatureShape(8, 4), "b1": FeatureShape(16, 8), "concat": FeatureShape(24, 4)}
    head = SimplePoseHead(shapes, get_layout("coco17"), hidden=16)
    feats = {"b0": torch.rand(2, 8, 16, 16), "b1": torch.rand(2, 16, 8, 8), "concat": torch.rand(2, 24, 16, 16)}
    out = head(feats)
    assert out["maps"].shape == (2, 50, 16, 16) and set(out) == {"maps", "pyramid_s0_0"}
    targets = {"maps": torch.rand(2, 50, 16, 16), "mask_misses": torch.ones(2, 1, 16, 16)}
    head.loss(out, targets)["focal_l2"].backward()
    assert head.predictor is not None and head.predictor[0].conv.weight.grad is not None
    no_concat = SimplePoseHead({"b0": FeatureShape(8, 4), "b1": FeatureShape(16, 8)}, get_layout("coco17"), hidden=16)
    assert no_concat({"b0": feats["b0"], "b1": feats["b1"]})["maps"].shape == (2, 50, 16, 16)
    with pytest.raises(ValueError, match="stride-4"):
        SimplePoseHead({"c5": FeatureShape(8, 32)}, get_layout("coco17"))


def test_pipeline_grouper_choice() -> None:
    from bupose.core.poses import Poses
    from bupose.simplepose.pipeline import SimplePosePipeline

    model = TestSimplePoseOnSmallIMHN().make_model().eval()
    seen = []

    def custom(candidates):
        seen.append((candidates.layout, candidates.num_joints, candidates.maps["limb_heatmaps"].shape))
        return Poses.empty(17, "coco17")

    img = np.random.default_rng(0).integers(0, 255, (60, 70, 3), dtype=np.uint8)
    pipe = SimplePosePipeline(model, grouper=custom, scales=(1.0,), input_size=64)
    with torch.inference_mode():
        assert len(pipe.predict_batch([img])[0]) == 0
    assert seen == [("cmu18", 18, (30, 60, 70))]
    default = SimplePosePipeline(model, scales=(1.0,), thre2=0.05)
    assert default.grouper_name == "simplepose_limbs" and default.grouper.params.thre2 == 0.05
