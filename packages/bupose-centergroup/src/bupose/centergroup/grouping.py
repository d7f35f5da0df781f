"""CenterGroup's grouping model: keypoint and centre nodes -> transformer encoder -> per-centre poses.

Module and parameter names are the official ``GroupingModel``'s (``initial_mlp``, ``kp_encoder``,
``tr_encoder``, ``prediction_heads``), so its state_dict keys are the official
``group_model.*`` keys without the prefix.

Nodes (:class:`Nodes`) come from :func:`bupose.centergroup.nodes.extract_nodes`: per image 17 x 30
keypoint candidates (or 14 x 30 for CrowdPose) and 30 centre candidates, each with a 128-d
appearance feature, a 128-d sine position feature, integer (x, y) pixel coordinates and a keep flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "GroupPredictions",
    "GroupingModel",
    "KeypointEncoder",
    "LocationAttention",
    "Nodes",
    "PredictionHead",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "self_attention",
]


class MLP(nn.Module):
    """``layers`` Linear layers with ReLU between them (and after the last with ``relu_last``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, relu_last: bool = False) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, outs))
        self.relu_last = relu_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last or self.relu_last:
                x = F.relu(x)
        return x


class KeypointEncoder(nn.Module):
    """Node embedding = ``mlp`` (one Linear) on the sine position features + ``type_embed`` of the
    node type (joint index; centres use the last index)."""

    def __init__(self, num_types: int, dim: int = 128) -> None:
        super().__init__()
        self.mlp = MLP(dim, dim, dim, 1)
        self.type_embed = nn.Embedding(num_types, dim)

    def forward(self, pos: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        return self.mlp(pos) + self.type_embed(types)


def self_attention(
    mha: nn.MultiheadAttention, qk: torch.Tensor, value: torch.Tensor, key_padding_mask: torch.Tensor | None
) -> torch.Tensor:
    """``mha(qk, qk, value, key_padding_mask=key_padding_mask, need_weights=False)[0]`` for a
    batch-first ``nn.MultiheadAttention`` with packed input projections (its parameters, its
    dropout on the attention weights in training mode), with every product on contiguous
    (B·heads, L, head_dim) operands (the CPU's fast matrix-multiply path)."""
    b, n, e = qk.shape
    h = mha.num_heads
    d = e // h
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    q, k = F.linear(qk, w[: 2 * e], None if bias is None else bias[: 2 * e]).split(e, dim=-1)
    v = F.linear(value, w[2 * e :], None if bias is None else bias[2 * e :])

    def heads(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, n, h, d).transpose(1, 2).reshape(b * h, n, d)

    q, k, v = heads(q) * float(d) ** -0.5, heads(k), heads(v)
    if key_padding_mask is not None:
        bias_mask = torch.zeros((b, 1, n), dtype=q.dtype, device=q.device).masked_fill(key_padding_mask[:, None, :], float("-inf"))
        scores = torch.baddbmm(bias_mask.repeat_interleave(h, dim=0), q, k.transpose(1, 2))
    else:
        scores = torch.bmm(q, k.transpose(1, 2))
    attn = scores.softmax(dim=-1)
    if mha.training and mha.dropout > 0:
        attn = F.dropout(attn, mha.dropout)
    out = torch.bmm(attn, v).reshape(b, h, n, d).transpose(1, 2).reshape(b, n, e)
    return mha.out_proj(out)


class TransformerEncoderLayer(nn.Module):
    """DETR post-norm encoder layer: self-attention with the position added to queries and keys,
    then the feed-forward block, each followed by residual + LayerNorm."""

    def __init__(self, d_model: int = 128, nhead: int = 4, dim_feedforward: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        attn = self_attention(self.self_attn, x + pos, x, key_padding_mask)
        x = self.norm1(x + self.dropout1(attn))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ff))


class TransformerEncoder(nn.Module):
    """Encoder layers with an extra skip around each (``out = layer(x) + x``); returns every
    layer's output."""

    def __init__(self, num_layers: int = 3, d_model: int = 128, nhead: int = 4, dim_feedforward: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, pos: torch.Tensor, key_padding_mask: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for layer in self.layers:
            x = layer(x, pos, key_padding_mask) + x
            outs.append(x)
        return outs


class LocationAttention(nn.Module):
    """One attention head per joint type from each centre over all keypoint candidates.

    Returns the raw logits (B, P, J, K) (masked candidates -inf) and the attended values
    (B, P, J, head_dim).
    """

    def __init__(self, dim: int, num_joints: int, head_dim: int = 64) -> None:
        super().__init__()
        hidden = num_joints * head_dim
        self.num_joints = num_joints
        self.head_dim = head_dim
        self.q_linear = nn.Linear(dim, hidden)
        self.k_linear = nn.Linear(dim, hidden)
        self.v_linear = nn.Linear(dim, hidden)
        self.scale = float(head_dim) ** -0.5

    def forward(
        self, centres: torch.Tensor, centre_pos: torch.Tensor, kps: torch.Tensor, kp_pos: torch.Tensor, kp_masked: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, _, values = self.attend(centres, centre_pos, kps, kp_pos, kp_masked)
        return logits, values

    def attend(
        self, centres: torch.Tensor, centre_pos: torch.Tensor, kps: torch.Tensor, kp_pos: torch.Tensor, kp_masked: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits, softmax weights, values)``: the same quantities as projecting every keypoint to
        per-joint keys and values, evaluated in the cheaper order (``q·(W_k x + b_k) = (qW_k)·x + q·b_k``
        and ``Σ_k w_k (W_v x_k + b_v) = W_v Σ_k w_k x_k + b_v``, the weights summing to 1), so the
        (B, K, J·head_dim) keys and values are never built."""
        b, p, c = centres.shape
        k = kps.shape[1]
        j, d = self.num_joints, self.head_dim
        q = self.q_linear(centres + centre_pos).reshape(b, p, j, d) * self.scale
        w_k = self.k_linear.weight.reshape(j, d, c)
        q_w = torch.einsum("bpjd,jdc->bpjc", q, w_k).reshape(b, p * j, c)
        q_b = (q * self.k_linear.bias.reshape(j, d)).sum(-1)  # (B, P, J)
        logits = torch.bmm(q_w, (kps + kp_pos).transpose(1, 2)).reshape(b, p, j, k) + q_b[..., None]
        logits = logits.masked_fill(kp_masked[:, None, None, :], float("-inf"))
        weights = logits.softmax(dim=-1)
        pooled = torch.bmm(weights.reshape(b, p * j, k), kps).reshape(b, p, j, c)
        w_v = self.v_linear.weight.reshape(j, d, c)
        values = torch.einsum("bpjc,jdc->bpjd", pooled, w_v) + self.v_linear.bias.reshape(j, d)
        return logits, weights, values


class PredictionHead(nn.Module):
    """Location attention, visibility MLP on [centre node, attended value], personness MLP on the centre."""

    def __init__(self, dim: int, num_joints: int, head_dim: int = 64) -> None:
        super().__init__()
        self.loc_attn = LocationAttention(dim, num_joints, head_dim)
        self.mlp_vis = MLP(head_dim + dim, dim, 1, 3)
        self.mlp_person_tp = MLP(dim, dim, 1, 3)


@dataclass
class Nodes:
    """Graph nodes of a batch: ``kp_*`` for the J·K keypoint candidates (joint-major), ``c_*`` for
    the P centre candidates.

    ``*_feat`` (B, ·, D) appearance features, ``*_pos`` (B, ·, D) sine position features,
    ``*_xy`` (B, ·, 2) integer pixel coordinates (float), ``*_keep`` (B, ·) bool,
    ``kp_type`` (J·K,) joint index of each keypoint candidate.
    """

    kp_feat: torch.Tensor
    kp_pos: torch.Tensor
    kp_xy: torch.Tensor
    kp_keep: torch.Tensor
    kp_type: torch.Tensor
    c_feat: torch.Tensor
    c_pos: torch.Tensor
    c_xy: torch.Tensor
    c_keep: torch.Tensor


@dataclass
class GroupPredictions:
    """Per prediction head h (stacked first), per centre slot p and joint j of a batch b:
    ``loc`` (H, B, P, J, 2) soft locations, ``hard_loc`` (H, B, P, J, 2) argmax-candidate locations,
    ``vis`` (H, B, P, J) visibility logits, ``person`` (H, B, P) personness logits, and
    ``logits`` (B, P, J, K) the last head's raw attention logits."""

    loc: torch.Tensor
    hard_loc: torch.Tensor
    vis: torch.Tensor
    person: torch.Tensor
    logits: torch.Tensor


class GroupingModel(nn.Module):
    """The official ``GroupingModel`` (no weight sharing between its 4 prediction heads)."""

    def __init__(
        self,
        num_joints: int = 17,
        dim: int = 128,
        num_layers: int = 3,
        nhead: int = 4,
        dim_feedforward: int = 512,
        dropout: float = 0.1,
        head_dim: int = 64,
    ) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.initial_mlp = MLP(dim, dim, dim, 2, relu_last=True)
        self.kp_encoder = KeypointEncoder(num_joints + 1, dim)
        self.tr_encoder = TransformerEncoder(num_layers, dim, nhead, dim_feedforward, dropout)
        self.prediction_heads = nn.ModuleList(PredictionHead(dim, num_joints, head_dim) for _ in range(num_layers + 1))

    def forward(self, nodes: Nodes) -> GroupPredictions:
        kp_n = nodes.kp_feat.shape[1]
        b = nodes.kp_feat.shape[0]
        device = nodes.kp_feat.device
        types = torch.cat([nodes.kp_type.to(device), torch.full((nodes.c_feat.shape[1],), self.num_joints, device=device, dtype=torch.long)])
        x = self.initial_mlp(torch.cat([nodes.kp_feat, nodes.c_feat], dim=1))
        pos = self.kp_encoder(torch.cat([nodes.kp_pos, nodes.c_pos], dim=1), types[None].expand(b, -1))
        keep = torch.cat([nodes.kp_keep, nodes.c_keep], dim=1)
        padding = ~keep
        padding = padding & ~padding.all(dim=1, keepdim=True)  # a row with every token masked is un-masked
        xs = [x, *self.tr_encoder(x, pos, padding)]
        kp_xy = nodes.kp_xy.to(x.dtype)
        kp_masked = ~nodes.kp_keep
        kp_masked = kp_masked & ~kp_masked.all(dim=1, keepdim=True)
        locs, hards, viss, persons = [], [], [], []
        logits = x.new_zeros(0)
        for h, head in enumerate(self.prediction_heads):
            feats = xs[h]
            kp, c = feats[:, :kp_n], feats[:, kp_n:]
            kp_p, c_p = pos[:, :kp_n], pos[:, kp_n:]
            logits, weights, values = head.loc_attn.attend(c, c_p, kp, kp_p, kp_masked)
            locs.append(torch.einsum("bpjk,bkc->bpjc", weights, kp_xy))
            top = logits.max(dim=-1, keepdim=True).values
            ties = (logits == top).to(x.dtype)
            hards.append(torch.einsum("bpjk,bkc->bpjc", ties, kp_xy) / ties.sum(-1, keepdim=True))
            p = c.shape[1]
            vis_in = torch.cat([c[:, :, None, :].expand(-1, -1, self.num_joints, -1), values], dim=-1)
            viss.append(head.mlp_vis(vis_in)[..., 0])
            persons.append(head.mlp_person_tp(c)[..., 0].reshape(b, p))
        return GroupPredictions(
            loc=torch.stack(locs), hard_loc=torch.stack(hards), vis=torch.stack(viss), person=torch.stack(persons), logits=logits
        )
