"""The grouping model's reordered products equal the direct ones: ``self_attention`` vs
``nn.MultiheadAttention``, ``LocationAttention.attend`` vs per-joint keys and values projected for
every keypoint candidate (values and gradients)."""

from __future__ import annotations

import torch
from torch import nn

from bupose.centergroup.grouping import LocationAttention, self_attention


def _grads(out: torch.Tensor, tensors: list[torch.Tensor], seed: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return list(torch.autograd.grad((out * w).sum(), tensors))


def test_self_attention_equals_multihead_attention() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, dropout=0.1, batch_first=True).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 11, 32, generator=g, dtype=torch.float64, requires_grad=True)
    pos = torch.randn(3, 11, 32, generator=g, dtype=torch.float64)
    pad = torch.rand(3, 11, generator=g) < 0.4
    pad[:, 0] = False  # no row fully masked
    mha.eval()
    q = x + pos
    ref = mha(q, q, x, key_padding_mask=pad, need_weights=False)[0]
    out = self_attention(mha, q, x, pad)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    params = [x, mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight]
    for a, b in zip(_grads(out, params), _grads(ref, params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # no mask at all
    torch.testing.assert_close(self_attention(mha, q, x, None), mha(q, q, x, need_weights=False)[0], rtol=1e-10, atol=1e-12)


def test_self_attention_dropout_in_training_only() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, dropout=0.5, batch_first=True)
    x = torch.randn(2, 9, 16)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    mha.eval()
    plain = self_attention(mha, x, x, pad)
    mha.train()
    torch.manual_seed(3)
    a = self_attention(mha, x, x, pad)
    torch.manual_seed(3)
    b = self_attention(mha, x, x, pad)
    assert torch.equal(a, b)
    assert not torch.allclose(a, plain)
    mha.dropout = 0.0
    torch.testing.assert_close(self_attention(mha, x, x, pad), plain)


def _direct(att: LocationAttention, c, cp, kp, kpp, masked):  # type: ignore[no-untyped-def]
    """Keys and values of every candidate for every joint, then per-joint attention."""
    b, p, _ = c.shape
    k = kp.shape[1]
    j, d = att.num_joints, att.head_dim
    q = att.q_linear(c + cp).reshape(b, p, j, d)
    key = att.k_linear(kp + kpp).reshape(b, k, j, d)
    v = att.v_linear(kp).reshape(b, k, j, d)
    logits = torch.einsum("bpjd,bkjd->bpjk", q * att.scale, key).masked_fill(masked[:, None, None, :], float("-inf"))
    weights = logits.softmax(-1)
    return logits, weights, torch.einsum("bpjk,bkjd->bpjd", weights, v)


def test_location_attention_reordered_equals_direct() -> None:
    torch.manual_seed(0)
    att = LocationAttention(24, 5, head_dim=8).double()
    g = torch.Generator().manual_seed(2)
    b, p, k = 2, 4, 5 * 6
    c = torch.randn(b, p, 24, generator=g, dtype=torch.float64, requires_grad=True)
    cp = torch.randn(b, p, 24, generator=g, dtype=torch.float64)
    kp = torch.randn(b, k, 24, generator=g, dtype=torch.float64, requires_grad=True)
    kpp = torch.randn(b, k, 24, generator=g, dtype=torch.float64, requires_grad=True)
    masked = torch.rand(b, k, generator=g) < 0.3
    masked[:, 0] = False
    logits, weights, values = att.attend(c, cp, kp, kpp, masked)
    r_logits, r_weights, r_values = _direct(att, c, cp, kp, kpp, masked)
    assert torch.equal(torch.isfinite(logits), torch.isfinite(r_logits))
    fin = torch.isfinite(r_logits)
    torch.testing.assert_close(logits[fin], r_logits[fin], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weights, r_weights, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(values, r_values, rtol=1e-10, atol=1e-12)
    params = [c, kp, kpp, *att.parameters()]
    out = torch.cat([weights.flatten(), values.flatten()])
    ref = torch.cat([r_weights.flatten(), r_values.flatten()])
    for a, r in zip(_grads(out, params), _grads(ref, params), strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-12)
    fwd_logits, fwd_values = att(c, cp, kp, kpp, masked)
    assert torch.equal(fwd_logits, logits) and torch.equal(fwd_values, values)
