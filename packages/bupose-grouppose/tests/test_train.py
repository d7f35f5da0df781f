"""Training pieces: the set codec, the DETR augmentation, the head's declared training settings and a
short run through core's engine on synthetic scenes (resnet18, a reduced transformer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bupose.core.engine.data import input_matrix
from bupose.core.layouts import get_layout
from bupose.grouppose.augment import DetrAugmentation
from bupose.grouppose.codec import GroupPoseCodec
from bupose.grouppose.model import GroupPoseHead

LAYOUT = get_layout("coco17")


def _sample(h: int = 120, w: int = 160) -> dict:
    rng = np.random.default_rng(0)
    kps = np.zeros((3, 17, 3))
    kps[:, :, 0] = rng.uniform(10, w - 10, (3, 17))
    kps[:, :, 1] = rng.uniform(10, h - 10, (3, 17))
    kps[:, :, 2] = 2
    kps[1, 5:, 2] = 0
    kps[1, 5:, :2] = 0
    kps[2, :, 2] = 0  # nobody visible: dropped
    lo, hi = kps[:, :, :2].min(1), kps[:, :, :2].max(1)
    return {"image": rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "keypoints": kps,
            "areas": np.array([900.0, 400.0, 100.0]), "bboxes": np.concatenate([lo, hi - lo], 1),
            "iscrowd": np.zeros(3, np.int64)}  # fmt: skip


def test_codec_normalises_and_drops() -> None:
    codec = GroupPoseCodec("coco17", 160, num_queries=100)
    s = _sample()
    enc = codec.encode(s)
    kp, areas = enc.instances["keypoints"], enc.instances["areas"]
    assert kp.shape == (2, 17, 3) and areas.shape == (2,)
    np.testing.assert_allclose(kp[0, :, 0].numpy(), s["keypoints"][0, :, 0] / 160, rtol=1e-6)
    np.testing.assert_allclose(kp[0, :, 1].numpy(), s["keypoints"][0, :, 1] / 120, rtol=1e-6)
    assert torch.equal(kp[1, 5:], torch.zeros(12, 3)) and set(kp[:, :, 2].unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_allclose(areas.numpy(), [900 / (160 * 120), 400 / (160 * 120)], rtol=1e-6)
    assert enc.dense["pred_logits"].shape == (100, 2) and enc.dense["pred_keypoints"].shape == (100, 51)
    crowd = dict(s, iscrowd=np.array([1, 0, 0]))
    assert codec.encode(crowd).instances["keypoints"].shape[0] == 1
    with pytest.raises(ValueError, match="'areas'"):
        codec.encode({"image": s["image"], "keypoints": s["keypoints"]})


def test_codec_decode_of_the_ideal_output_gives_the_people_back() -> None:
    codec = GroupPoseCodec("coco17", 160)
    s = _sample()
    enc = codec.encode(s)
    outputs = {k: v[None] for k, v in enc.dense.items()}
    matrix = np.array([[0.5, 0, 3.0], [0, 0.5, -2.0]])  # image -> input
    poses = codec.decode(outputs, [{"input_hw": (120, 160), "matrix": matrix}])[0]
    # top-50 of the 100x2 scores as officially: the two people first, then empty queries' person scores
    assert np.all(poses.scores[:2] > 0.99) and np.all(poses.scores[2:] < 1e-3)
    inv = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    expect = s["keypoints"][0, :, :2] @ inv[:2, :2].T + inv[:2, 2]
    np.testing.assert_allclose(poses.keypoints[0, :, :2], expect, atol=1e-3)


def test_an_image_without_people_encodes_and_trains() -> None:
    """A crop can leave nobody labelled: the codec gives no instances (every query empty) and the
    loss of a batch mixing such an image with a populated one is finite, with gradients."""
    from bupose.core.batch import Batch
    from bupose.grouppose.criterion import SetCriterion

    codec = GroupPoseCodec("coco17", 96, num_queries=6)
    nobody = dict(_sample(), keypoints=np.zeros((3, 17, 3)), areas=np.array([50.0, 60.0, 70.0]))
    for s in (nobody, dict(_sample(), keypoints=np.zeros((0, 17, 3)), areas=np.zeros(0), iscrowd=np.zeros(0))):
        enc = codec.encode(s)
        assert enc.instances["keypoints"].shape == (0, 17, 3) and enc.instances["areas"].shape == (0,)
        assert torch.all(enc.dense["pred_logits"][:, 1] < 0)
    crit = SetCriterion(LAYOUT)
    inst = [codec.encode(nobody).instances, codec.encode(_sample()).instances]
    targets = crit.targets_from_batch(Batch(torch.zeros(2, 3, 8, 8), instances=inst))
    assert [t["keypoints"].shape for t in targets] == [(0, 51), (2, 51)]
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 2, requires_grad=True)
    kp = torch.cat([torch.rand(2, 6, 34), torch.full((2, 6, 17), 0.7311)], -1).requires_grad_(True)
    losses = crit({"pred_logits": logits, "pred_keypoints": kp}, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    (losses["loss_ce"] + losses["loss_keypoints"] + losses["loss_oks"]).backward()
    assert kp.grad is not None and kp.grad[1].abs().sum() > 0 and kp.grad[0].abs().sum() == 0


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_geometry(seed: int) -> None:
    aug = DetrAugmentation(160, layout=LAYOUT)
    s = _sample()
    out = aug(s, rng=np.random.default_rng(seed))
    h, w = out["image"].shape[:2]
    assert min(h, w) in aug.scales or max(h, w) <= aug.max_size
    assert out["keypoints"].shape[1:] == (17, 3) and out["areas"].shape == (out["keypoints"].shape[0],)
    m = input_matrix(out)
    assert m is not None
    vis = out["keypoints"][:, :, 2] > 0
    assert np.all(out["keypoints"][~vis][:, :2] == 0)
    # every visible output joint is the mapped input joint of the same (flipped) person
    src = s["keypoints"][: out["keypoints"].shape[0]]
    if out["flipped"]:
        src = src[:, list(LAYOUT.flip_index)]
    mapped = src[:, :, :2] @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(out["keypoints"][vis][:, :2], mapped[vis], atol=1e-6)
    assert np.all((out["keypoints"][vis][:, 0] >= -1) & (out["keypoints"][vis][:, 0] < w))


def test_augmentation_is_deterministic_and_covers_both_branches() -> None:
    aug = DetrAugmentation(160, layout=LAYOUT)
    a = aug(_sample(), rng=np.random.default_rng(5))
    b = aug(_sample(), rng=np.random.default_rng(5))
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["keypoints"], b["keypoints"])
    flips = {aug(_sample(), rng=np.random.default_rng(i))["flipped"] for i in range(12)}
    assert flips == {True, False}


def test_declared_training_settings() -> None:
    assert GroupPoseHead.augmentation == "bupose.grouppose.augment:DetrAugmentation"
    d = GroupPoseHead.train_defaults
    assert d["optimizer"] == "adamw" and d["lr"] == 1e-4 and d["weight_decay"] == 1e-4
    assert d["lr_schedule"] == "multistep" and d["lr_milestones"] == [50 / 60] and d["lr_factor"] == 0.1


def test_param_groups_backbone_lr_and_frozen_bn() -> None:
    from bupose.core.engine.params import plan_param_groups
    from bupose.core.model import build_model

    model = build_model("grouppose", "resnet18", head_kwargs={"num_queries": 10, "enc_layers": 1, "dec_layers": 1,
                                                              "dim_feedforward": 64})  # fmt: skip
    plan = plan_param_groups(model, model.param_group_rules(), lr=1e-4, weight_decay=1e-4)
    lrs = {g["name"]: g["lr"] for g in plan.groups}
    assert lrs == {"default": 1e-4, "backbone.": pytest.approx(1e-5)}
    assert plan.frozen_bn and all(isinstance(m, torch.nn.BatchNorm2d) for m in plan.frozen_bn)
    assert "backbone.bn1.weight" in plan.frozen
    model.head.freeze_backbone_bn = False  # from-scratch backbones keep trainable BatchNorm
    for p in model.parameters():
        p.requires_grad_(True)
    plan = plan_param_groups(model, model.param_group_rules(), lr=1e-4, weight_decay=1e-4)
    assert not plan.frozen_bn and not plan.frozen


def test_engine_trains_and_the_result_predicts(tmp_path) -> None:
    from bupose.core.data.synth import generate
    from bupose.core.engine import train
    from bupose.core.engine.config import load_config
    from bupose.core.inference import load_model
    from bupose.core.io import read_image

    ann = generate(tmp_path / "synth", num_images=4, size=64, seed=0, difficulty="easy", progress=False)
    small = '{"num_queries": 10, "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 64, "hidden_dim": 64, "nheads": 4}'
    cfg = load_config(None, [
        "head=grouppose", "backbone=resnet18", f"data={ann.parent}", f"out={tmp_path / 'run'}", "input_size=96",
        "batch_size=2", "steps=2", "workers=0", "progress=false", "tensorboard=false", "grad_clip=0.1",
        f"head_kwargs={small}", "codec_kwargs={\"num_queries\": 10}", "ckpt_every=1000",
    ])  # fmt: skip
    result = train(cfg)
    assert result.final_weights is not None and result.final_weights.is_file()
    est = load_model("grouppose", "resnet18", result.final_weights)
    assert est.pipeline.short_side == 96
    img = read_image(next((ann.parent / "images").iterdir()))
    poses = est.predict([img])[0]
    assert poses.num_keypoints == 17 and len(poses) <= 10


def test_crowdpose_layout_through_core_evaluation(tmp_path) -> None:
    """crowdpose14 end to end at small size: 14-joint outputs, and core's CrowdPose protocol (one
    results list, evaluated once over the whole set, E/M/H by crowd index) gives every metric."""
    from bupose.core.data.dataset import load_dataset
    from bupose.core.data.synth import generate
    from bupose.core.engine.evaluation import evaluate_model
    from bupose.core.model import build_model

    ann = generate(tmp_path / "cp", layout="crowdpose14", num_images=3, size=64, seed=0, difficulty="easy", progress=False)
    model = build_model("grouppose", "resnet18", "crowdpose14", head_kwargs={
        "num_queries": 10, "enc_layers": 1, "dec_layers": 1, "dim_feedforward": 64, "hidden_dim": 64, "nheads": 4})
    model.config["input_size"] = 64
    out = model.eval()(torch.zeros(1, 3, 64, 64))
    assert out["pred_keypoints"].shape == (1, 10, 42) and out["interm_pred_keypoints"].shape == (1, 10, 28)
    results, metrics = evaluate_model(model, load_dataset(str(ann)), batch_size=2, progress=False)
    assert results and all(len(r["keypoints"]) == 42 for r in results)
    assert {"AP", "APE", "APM", "APH"} <= set(metrics)
