"""LOGO-CAP training pieces: dense targets with LOGO-CAP's differences from DEKR, the pose-pool
supervision and the four loss terms; a tiny optimisation whose loss decreases (no fixture: the
official training has no golden file)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bupose.core.plugins import get_registry
from bupose.core.specs import FeatureShape
from bupose.logocap.model import LogoCapHead
from bupose.logocap.train import LOSS_FACTORS, encode_dense, joint_oks, logocap_losses, pose_pool_losses

LAYOUT = get_registry().get("layouts", "coco17")
H = W = 64


def person(cx: float, cy: float, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(int(cx * 7 + cy))
    off = rng.uniform(-12, 12, (17, 2)) * scale
    kp = np.concatenate([np.array([cx, cy]) + off, np.full((17, 1), 2.0)], axis=1)
    kp[3, 2] = 0  # one unlabelled joint
    return kp


def test_dense_targets_logocap_rules() -> None:
    kps = np.stack([person(20, 24), person(44, 40)])
    kps[0, 3, :2] = (1000.0, 1000.0)  # an unlabelled far-away joint must not move the centre
    areas = np.array([400.0, 900.0])
    t = encode_dense(kps, areas, (H, W), 17)
    assert t["heatmap"].shape == (18, 16, 16) and t["heatmap_weight"].shape == (1, 16, 16)
    assert t["offset"].shape == (34, 16, 16) and t["offset_weight"].shape == (34, 16, 16)
    # centre channel peaks at the mean of the visible joints (in output pixels)
    vis = kps[0, :, 2] > 0
    cx, cy = kps[0, vis, :2].mean(0) / 4
    assert t["heatmap"][17, round(cy), round(cx)] > 0.9
    # one shared weight channel: 1 inside any window, 0.1 background
    assert set(np.unique(t["heatmap_weight"]).round(3)) <= {0.1, 1.0}
    # offset weight = 1/sqrt(area) (input-resolution area) at the centre pixel of person 1
    ix, iy = (kps[1, kps[1, :, 2] > 0, :2].mean(0) / 4).astype(int)
    assert t["offset_weight"][0, iy, ix] == pytest.approx(1 / 30.0, rel=1e-6)
    # offsets are pixel - joint at the centre pixel
    assert t["offset"][0, iy, ix] == pytest.approx(ix - kps[1, 0, 0] / 4, abs=1e-5)
    empty = encode_dense(np.zeros((0, 17, 3)), None, (H, W), 17)
    assert empty["heatmap"].max() == 0 and empty["offset_weight"].max() == 0


def test_joint_oks() -> None:
    gt = torch.zeros(17, 2)
    assert torch.allclose(joint_oks(gt, gt, torch.tensor(100.0), [0.1] * 17), torch.ones(17))
    far = joint_oks(gt + 10, gt, torch.tensor(100.0), [0.1] * 17)
    assert float(far.max()) < 0.1


class _Features(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 30, 4, stride=4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"concat": self.conv(x)}


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    head = LogoCapHead({"concat": FeatureShape(30, 4)}, LAYOUT, kam_channels=(32, 16, 16), embedding_dim=8)
    feats = _Features()
    kps = [np.stack([person(20, 24), person(44, 40)]), np.stack([person(32, 30, 1.3)])]
    dense = [encode_dense(k, None, (H, W), 17) for k in kps]
    targets = {key: torch.from_numpy(np.stack([d[key] for d in dense])) for key in dense[0]}
    instances = [{"keypoints": torch.from_numpy(k).float(), "areas": torch.tensor([600.0] * len(k))} for k in kps]
    images = torch.randn(2, 3, H, W)
    return head, feats, targets, instances, images


def test_pose_pool_losses_are_finite_and_use_the_kam() -> None:
    head, feats, _targets, instances, images = _setup()
    out = head(feats(images))
    pool = pose_pool_losses(head, out, instances, (H, W), max_people=6)
    assert set(pool) == {"kam_loss", "refine_loss"}
    total = pool["kam_loss"] + pool["refine_loss"]
    assert torch.isfinite(total)
    total.backward()
    assert head.joints_mlp[0].weight.grad is not None and float(head.joints_mlp[0].weight.grad.abs().sum()) > 0
    assert head.transition_embedding[0].weight.grad is not None
    # nothing to supervise without people
    empty = pose_pool_losses(head, head(feats(images)), [{"keypoints": torch.zeros(0, 17, 3)}] * 2, (H, W))
    assert float(empty["kam_loss"]) == 0.0 and float(empty["refine_loss"]) == 0.0


def test_losses_decrease_under_adam() -> None:
    """Dense terms fall when everything trains (lr 3e-3); with the dense heads frozen the pose pool
    is fixed and the factored KAM + refined-heatmap terms fall when the KAM network trains."""
    head, feats, targets, instances, images = _setup(1)
    opts = {"max_people": 6, "global_radius": 16}  # a small pool keeps the test fast
    opt = torch.optim.Adam([*head.parameters(), *feats.parameters()], lr=3e-3)
    dense = []
    for _ in range(6):
        losses = logocap_losses(head, head(feats(images)), targets, instances, (H, W), **opts)
        assert set(losses) == {"heatmap_loss", "offset_loss", "kam_loss", "refine_loss"}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        dense.append((float(losses["heatmap_loss"].detach()), float(losses["offset_loss"].detach())))
    assert dense[-1][0] < 0.95 * dense[0][0] and dense[-1][1] < 0.95 * dense[0][1], dense
    with torch.no_grad():
        out = {k: v.detach() for k, v in head(feats(images)).items()}
    opt = torch.optim.Adam(head.joints_mlp.parameters(), lr=1e-2)
    pool, kam = [], []
    for _ in range(6):
        losses = logocap_losses(head, out, targets, instances, (H, W), **opts)
        total = losses["kam_loss"] + losses["refine_loss"]
        opt.zero_grad()
        total.backward()
        opt.step()
        pool.append(float(total.detach()))
        kam.append(float(losses["kam_loss"].detach()))
    assert pool[-1] < pool[0], pool
    opt = torch.optim.Adam(head.joints_mlp.parameters(), lr=1e-2)
    for _ in range(6):  # the KAM term alone: a fixed regression target
        loss = logocap_losses(head, out, targets, instances, (H, W), **opts)["kam_loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        kam.append(float(loss.detach()))
    assert kam[-1] < 0.8 * kam[6], kam
    assert LOSS_FACTORS == {"heatmap": 1.0, "offset": 0.01, "kam": 0.01, "refine": 1.0}


def test_head_loss_on_a_collated_batch() -> None:
    """LogoCapHead.loss reads dense targets and instances from a Batch built by the codec."""
    from bupose.core.batch import collate
    from bupose.logocap.codec import LogoCapCodec

    head, feats, _t, _i, images = _setup(2)
    codec = LogoCapCodec("coco17", (H, W))
    items = []
    for k, people in enumerate([np.stack([person(20, 24), person(44, 40)]), np.zeros((0, 17, 3))]):
        enc = codec.encode({"keypoints": people, "areas": np.full(len(people), 500.0)})
        assert enc.instances["keypoints"].shape == (len(people), 17, 3)
        items.append({"image": images[k], "dense": enc.dense, "instances": enc.instances, "meta": {}})
    batch = collate(items)
    losses = head.loss(head(feats(batch.images), batch), batch)
    assert set(losses) == {"heatmap_loss", "offset_loss", "kam_loss", "refine_loss"}
    assert all(torch.isfinite(v.detach()) for v in losses.values()) and float(losses["kam_loss"].detach()) > 0
    with pytest.raises(TypeError, match="Batch"):
        head.loss(head(feats(images)), batch.targets)


def test_upsampled_windows_equal_the_clamped_sampler_on_the_upsampled_map() -> None:
    """The training path's separable windows read exactly what the decoder's sampler reads,
    including outside the map and on its last row/column (the sampler's border rules)."""
    import torch.nn.functional as F

    from bupose.logocap.decode import clamped_bilinear
    from bupose.logocap.train import upsampled_windows

    torch.manual_seed(0)
    heat = torch.randn(17, 16, 12, dtype=torch.float64)
    big = (64, 48)
    poses = torch.rand(4, 17, 2, dtype=torch.float64) * torch.tensor([70.0, 90.0]) - 10
    poses[0, 0] = torch.tensor([47.0, 63.0])  # exactly on the last column/row
    poses[0, 1] = torch.tensor([-30.5, 80.25])  # outside
    r = 9
    hr = F.interpolate(heat[None], size=big, mode="bilinear", align_corners=False)[0]
    g = torch.arange(-r, r + 1, dtype=torch.float64)
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    wx = poses[..., 0, None, None] + gx
    wy = poses[..., 1, None, None] + gy
    ch = torch.arange(17)[None, :, None, None].expand(4, 17, 2 * r + 1, 2 * r + 1)
    expected = clamped_bilinear(hr, wx, wy, ch)
    got = upsampled_windows(heat, poses, big, r)
    assert got.shape == (4, 17, 2 * r + 1, 2 * r + 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # gradients flow to the low-resolution heatmaps
    h = heat.clone().requires_grad_()
    upsampled_windows(h, poses, big, r).sum().backward()
    assert h.grad is not None and float(h.grad.abs().sum()) > 0
