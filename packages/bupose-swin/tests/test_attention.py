"""Shifted-window attention against a naive per-window loop; masks, merging, drop path, gradients.

There is no official Swin forward fixture, so the vectorised modules are checked against a
reference written differently: explicit Python loops over images, windows and heads, the cyclic
shift done by index arithmetic instead of ``torch.roll``, the bias gathered from coordinate
differences instead of the index buffer, and the region labels built with the official slices.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bupose.core.model import build_backbone
from bupose.swin.model import (
    DropPath,
    PatchMerging,
    SwinBlock,
    SwinStage,
    build_swin,
    shifted_window_mask,
)


def _labels_official_slices(hp: int, wp: int, window: int, shift: int) -> torch.Tensor:
    """(hp, wp) region labels of the shifted grid, built like the official ``img_mask``."""
    lab = torch.zeros(hp, wp, dtype=torch.long)
    cnt = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            lab[hs, ws] = cnt
            cnt += 1
    return lab


def naive_block(blk: SwinBlock, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """One Swin block, the slow way (eval, no drop path)."""
    b, length, c = x.shape
    s, shift = blk.window_size, blk.shift_size
    heads = blk.attn.num_heads
    hd = c // heads
    n = s * s
    y = F.layer_norm(x, (c,), blk.norm1.weight, blk.norm1.bias, 1e-5).reshape(b, height, width, c)
    hp, wp = math.ceil(height / s) * s, math.ceil(width / s) * s
    grid = torch.zeros(b, hp, wp, c)
    grid[:, :height, :width] = y
    labels = _labels_official_slices(hp, wp, s, shift) if shift else None
    local_r = torch.arange(n) // s
    local_c = torch.arange(n) % s
    bias_rows = (local_r[:, None] - local_r[None, :] + s - 1) * (2 * s - 1) + (
        local_c[:, None] - local_c[None, :] + s - 1
    )
    table = blk.attn.relative_position_bias_table
    out = torch.zeros_like(grid)
    for bi in range(b):
        for wr in range(hp // s):
            for wc in range(wp // s):
                shifted = [(wr * s + i, wc * s + j) for i in range(s) for j in range(s)]
                source = [((r + shift) % hp, (q + shift) % wp) for r, q in shifted]
                tokens = torch.stack([grid[bi, r, q] for r, q in source])
                qkv = tokens @ blk.attn.qkv.weight.T + blk.attn.qkv.bias
                q_all, k_all, v_all = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
                heads_out = []
                for h in range(heads):
                    qh, kh, vh = (t[:, h * hd : (h + 1) * hd] for t in (q_all, k_all, v_all))
                    logits = (qh @ kh.T) / math.sqrt(hd) + table[bias_rows, h]
                    if labels is not None:
                        lab = torch.tensor([labels[r, q].item() for r, q in shifted])
                        logits = logits + (lab[:, None] != lab[None, :]).float() * -100.0
                    heads_out.append(torch.softmax(logits, dim=-1) @ vh)
                o = torch.cat(heads_out, dim=-1) @ blk.attn.proj.weight.T + blk.attn.proj.bias
                for t, (r, q) in enumerate(source):
                    out[bi, r, q] = o[t]
    x = x + out[:, :height, :width].reshape(b, length, c)
    z = F.layer_norm(x, (c,), blk.norm2.weight, blk.norm2.bias, 1e-5)
    z = F.gelu(z @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias) @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias
    return x + z


def naive_merge(m: PatchMerging, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Patch merging with the four strided slices (the official formulation)."""
    b, _, c = x.shape
    x = x.view(b, height, width, c)
    x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
    cat = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    cat = F.layer_norm(cat.reshape(b, -1, 4 * c), (4 * c,), m.norm.weight, m.norm.bias, 1e-5)
    return cat @ m.reduction.weight.T


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim > 1 else 0.5))


@pytest.mark.parametrize(
    ("dim", "heads", "window", "shift", "height", "width"),
    [
        (24, 3, 7, 0, 14, 14),  # no shift, no padding
        (24, 3, 7, 3, 14, 14),  # shifted, no padding
        (24, 3, 7, 3, 10, 13),  # shifted and padded to 14 x 14
        (16, 2, 4, 2, 5, 9),  # padded to 8 x 12
        (16, 2, 12, 6, 13, 7),  # Swin-L window on a small map (padded to 24 x 12)
        (16, 2, 7, 3, 3, 4),  # map smaller than one window
    ],
)
def test_vectorised_block_equals_naive_loop(dim, heads, window, shift, height, width) -> None:
    torch.manual_seed(0)
    blk = SwinBlock(dim, heads, window, shift, mlp_ratio=2.0, drop_path=0.0).eval()
    _randomise(blk, 1)
    x = torch.randn(2, height * width, dim, generator=torch.Generator().manual_seed(2))
    hp, wp = math.ceil(height / window) * window, math.ceil(width / window) * window
    mask = shifted_window_mask(hp, wp, window, shift) if shift else None
    with torch.no_grad():
        got = blk(x, height, width, mask)
        ref = naive_block(blk, x, height, width)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("hp", "wp", "window", "shift"), [(14, 14, 7, 3), (24, 36, 12, 6), (8, 4, 4, 2), (7, 14, 7, 3)]
)
def test_mask_equals_the_official_slices(hp, wp, window, shift) -> None:
    mask = shifted_window_mask(hp, wp, window, shift)
    labels = _labels_official_slices(hp, wp, window, shift)
    windows = []
    for wr in range(hp // window):
        for wc in range(wp // window):
            windows.append(
                labels[wr * window : (wr + 1) * window, wc * window : (wc + 1) * window].reshape(-1)
            )
    lab = torch.stack(windows)
    expected = torch.where(lab[:, None, :] != lab[:, :, None], -100.0, 0.0)
    assert torch.equal(mask, expected)
    assert mask.shape == ((hp // window) * (wp // window), window * window, window * window)


def _affected(blk: SwinBlock, size: int, at: tuple[int, int]) -> set[tuple[int, int]]:
    """Token positions whose block output changes when the input token ``at`` changes."""
    x = torch.randn(1, size * size, blk.norm1.normalized_shape[0], generator=torch.Generator().manual_seed(5))
    mask = shifted_window_mask(size, size, blk.window_size, blk.shift_size) if blk.shift_size else None
    y = x.clone()
    y[0, at[0] * size + at[1]] += torch.randn(x.shape[-1], generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        diff = (blk(y, size, size, mask) - blk(x, size, size, mask)).abs().amax(-1)[0]
    return {(i // size, i % size) for i in torch.nonzero(diff > 1e-6).flatten().tolist()}


def test_shift_and_mask_decide_who_attends_to_whom() -> None:
    torch.manual_seed(0)
    window, shift, size = 4, 2, 8
    plain = SwinBlock(16, 2, window, 0, 2.0, 0.0).eval()
    shifted = SwinBlock(16, 2, window, shift, 2.0, 0.0).eval()
    shifted.load_state_dict(plain.state_dict())
    square = lambda r0, r1, c0, c1: {(r, c) for r in range(r0, r1) for c in range(c0, c1)}  # noqa: E731
    # no shift: the token's own 4x4 window
    assert _affected(plain, size, (0, 0)) == square(0, 4, 0, 4)
    assert _affected(plain, size, (5, 6)) == square(4, 8, 4, 8)
    # shift 2: windows move by 2; an interior token sees the window straddling the old ones
    assert _affected(shifted, size, (4, 4)) == square(2, 6, 2, 6)
    # the corner token is rolled into the bottom-right window together with the far rows/columns;
    # the mask keeps it with the tokens of its own (wrapped) region only
    assert _affected(shifted, size, (0, 0)) == square(0, 2, 0, 2)
    assert _affected(shifted, size, (0, 4)) == square(0, 2, 2, 6)


def test_without_mask_the_wrapped_tokens_would_mix() -> None:
    torch.manual_seed(0)
    shifted = SwinBlock(16, 2, 4, 2, 2.0, 0.0).eval()
    x = torch.randn(1, 64, 16)
    mask = shifted_window_mask(8, 8, 4, 2)
    with torch.no_grad():
        masked = shifted(x, 8, 8, mask)
        unmasked = shifted(x, 8, 8, torch.zeros_like(mask))
    assert (masked - unmasked).abs().max() > 1e-3


@pytest.mark.parametrize(("height", "width"), [(6, 8), (7, 9), (1, 3)])
def test_patch_merging_equals_strided_slices(height, width) -> None:
    m = PatchMerging(8)
    _randomise(m, 3)
    x = torch.randn(2, height * width, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            m(x, height, width), naive_merge(m, x, height, width), rtol=1e-5, atol=1e-5
        )


def test_stage_equals_naive_blocks_then_merge() -> None:
    torch.manual_seed(0)
    stage = SwinStage(16, 3, 2, 4, 2.0, [0.0, 0.0, 0.0], downsample=True).eval()
    _randomise(stage, 4)
    x = torch.randn(2, 7 * 10, 16)
    with torch.no_grad():
        y, h, w, down, dh, dw = stage(x, 7, 10)
        ref = x
        for blk in stage.blocks:
            ref = naive_block(blk, ref, 7, 10)
        ref_down = naive_merge(stage.downsample, ref, 7, 10)
    assert (h, w, dh, dw) == (7, 10, 4, 5)
    assert [blk.shift_size for blk in stage.blocks] == [0, 2, 0]
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(down, ref_down, rtol=1e-5, atol=1e-5)


def test_drop_path_schedule_is_linear() -> None:
    with torch.device("meta"):
        model = build_swin("swin_t", drop_path_rate=0.2)
    rates = [blk.drop_path.p for stage in model.layers for blk in stage.blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.2, 12), rtol=0, atol=1e-7)


def test_drop_path_drops_whole_samples_in_training_only() -> None:
    drop = DropPath(0.25)
    x = torch.ones(4000, 3, 5)
    torch.manual_seed(0)
    y = drop.train()(x)
    per_sample = y.flatten(1)
    assert torch.equal(per_sample.amin(1), per_sample.amax(1)), "one decision per sample"
    assert per_sample[:, 0].unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    assert abs((per_sample[:, 0] == 0).float().mean().item() - 0.25) < 0.03
    assert torch.equal(drop.eval()(x), x)


def test_deterministic_in_eval_and_stochastic_in_training() -> None:
    torch.manual_seed(0)
    model = build_backbone("swin_t").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), model(x)
        model.train()
        c, d = model(x), model(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(c[k], d[k]) for k in c), "drop path samples differ between training forwards"


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = build_swin("swin_t", drop_path_rate=0.0).train()
    out = model(torch.randn(2, 3, 64, 64))
    sum(v.square().mean() for v in out.values()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_activation_checkpointing_gives_the_same_values_and_gradients() -> None:
    torch.manual_seed(0)
    plain = build_swin("swin_t", drop_path_rate=0.0)
    ckpt = build_swin("swin_t", drop_path_rate=0.0, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        out = model.train()(x)
        sum(v.square().mean() for v in out.values()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6)
