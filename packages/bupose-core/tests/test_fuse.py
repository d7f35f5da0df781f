"""bupose.core.fuse: BatchNorm folding finds exactly the safe conv -> BN pairs, keeps the function,
leaves the model it was given alone, and InferenceSnapshot follows weight changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bupose.core.fuse import (
    InferenceSnapshot,
    fold_batchnorm,
    foldable_pairs,
    optimize_for_inference,
    parameter_fingerprint,
)


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


class Block(nn.Module):
    """conv1 -> bn1 -> relu -> conv2 -> bn2, + residual (the ResNet/HRNet pattern)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = Block(8)
        self.grouped = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(8))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.block(self.stem(x))
        return {"out": self.grouped(y), "mid": y}


class ReadsBeforeBN(nn.Module):
    """The conv output is also used outside the BatchNorm: folding would change that use."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class SharedConv(nn.Module):
    """One conv used twice, each time with its own BatchNorm: neither can be folded into it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn_a = nn.BatchNorm2d(4)
        self.bn_b = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_b(self.conv(self.bn_a(self.conv(x))))


class ReturnsConvOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, self.bn(y)


class FrozenBatchNorm2d(nn.Module):
    """Fixed statistics and affine parameters as buffers (torchvision / bupose-resnet style)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.eps = 1e-5
        self.register_buffer("weight", torch.rand(n) + 0.5)
        self.register_buffer("bias", torch.randn(n))
        self.register_buffer("running_mean", torch.randn(n))
        self.register_buffer("running_var", torch.rand(n) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return x * scale.view(1, -1, 1, 1) + (self.bias - self.running_mean * scale).view(1, -1, 1, 1)


X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_folds_every_safe_pair_and_keeps_the_function() -> None:
    torch.manual_seed(0)
    net = _randomise_bn(Net()).eval()
    with torch.no_grad():
        ref = net(X)
    pairs = foldable_pairs(net, X)
    assert sorted(pairs) == [
        ("block.conv1", "block.bn1"), ("block.conv2", "block.bn2"), ("grouped.0", "grouped.1"), ("stem.0", "stem.1"),
    ]  # fmt: skip
    assert fold_batchnorm(net, X) == 4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert isinstance(net.block.bn1, nn.Identity) and net.block.conv1.bias is not None
    with torch.no_grad():
        got = net(X)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [ReadsBeforeBN, SharedConv, ReturnsConvOutput])
def test_unsafe_pairs_are_left_alone(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    net = _randomise_bn(cls()).eval()
    x = torch.randn(2, 4 if cls is SharedConv else 3, 5, 5)
    with torch.no_grad():
        ref = net(x)
    assert foldable_pairs(net, x) == []
    assert fold_batchnorm(net, x) == 0
    with torch.no_grad():
        got = net(x)
    for a, b in zip(got if isinstance(got, tuple) else (got,), ref if isinstance(ref, tuple) else (ref,)):
        assert torch.equal(a, b)


def test_frozen_batchnorm_folds() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, bias=False), FrozenBatchNorm2d(6), nn.ReLU()).eval()
    with torch.no_grad():
        ref = net(X)
    assert fold_batchnorm(net, X) == 1 and isinstance(net[1], nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(net(X), ref, rtol=1e-5, atol=1e-5)


def test_training_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="training mode"):
        fold_batchnorm(Net().train(), X)


def test_optimize_for_inference_copies_and_checks() -> None:
    torch.manual_seed(0)
    net = _randomise_bn(Net()).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fused = optimize_for_inference(net, X, channels_last=True)
    assert fused is not net and not fused.training
    for k, v in net.state_dict().items():  # the given model is untouched
        assert torch.equal(v, before[k])
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert fused.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in fused.parameters())
    with torch.no_grad():
        torch.testing.assert_close(fused(X)["out"], net(X)["out"], rtol=1e-5, atol=1e-5)


def test_a_wrong_fold_is_caught_and_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    import bupose.core.fuse as fuse

    real = fuse._fold_into

    def broken(conv: nn.Module, bn: nn.Module) -> None:
        real(conv, bn)
        with torch.no_grad():
            conv.weight.mul_(2)

    monkeypatch.setattr(fuse, "_fold_into", broken)
    net = _randomise_bn(Net()).eval()
    with pytest.warns(RuntimeWarning, match="changed the outputs"):
        fused = optimize_for_inference(net, X)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) == 4
    with torch.no_grad():
        assert torch.equal(fused(X)["out"], net(X)["out"])


def test_snapshot_follows_the_model() -> None:
    torch.manual_seed(0)
    net = _randomise_bn(Net()).eval()
    snap = InferenceSnapshot(net, lambda: (X[:1],))
    first = snap.module()
    assert first is not net and snap.module() is first and snap.builds == 1
    with torch.no_grad():
        net.stem[0].weight.add_(0.5)  # an in-place update (an optimiser step, load_state_dict)
        ref = net(X)["out"]
        second = snap.module()
        assert second is not first and snap.builds == 2
        torch.testing.assert_close(second(X)["out"], ref, rtol=1e-5, atol=1e-5)
    net.train()
    assert snap.module() is net  # training mode: batch statistics, nothing folded
    net.eval()
    assert InferenceSnapshot(net, lambda: (X[:1],), enabled=False).module() is net


def test_fingerprint_changes_on_replacement_and_in_place_updates() -> None:
    net = nn.Conv2d(1, 1, 1)
    fp = parameter_fingerprint(net)
    assert parameter_fingerprint(net) == fp
    with torch.no_grad():
        net.weight.mul_(1.0)
    assert parameter_fingerprint(net) != fp
    fp = parameter_fingerprint(net)
    net.weight = nn.Parameter(net.weight.detach().clone())
    assert parameter_fingerprint(net) != fp


def test_pointwise_convs_run_onednn_and_keep_the_function() -> None:
    from bupose.core.fuse import PointwiseConv2d, use_pointwise_convs

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(8, 16, 1), nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 4, 1, bias=False),
        nn.Conv2d(4, 4, 1, stride=2), nn.Conv2d(4, 4, 1, groups=2),
    ).eval()
    x = torch.randn(2, 8, 12, 10).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        want = net(x)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert use_pointwise_convs(net) == 2  # 1x1 stride 1 ungrouped only
    assert [type(m) is PointwiseConv2d for m in net] == [True, False, True, False, False]
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    with torch.no_grad():
        got = net(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net(x.contiguous()), want, rtol=1e-5, atol=1e-5)  # NCHW input too
    # with gradients wanted it is the plain convolution (oneDNN's op is inference-only here)
    xg = x.clone().requires_grad_(True)
    net(xg).sum().backward()
    assert xg.grad is not None and xg.grad.shape == x.shape
    opt = optimize_for_inference(net, x, channels_last=True)
    assert sum(type(m) is PointwiseConv2d for m in opt.modules()) == 2
