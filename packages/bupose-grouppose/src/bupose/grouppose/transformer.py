"""GroupPose's transformer: multi-scale deformable encoder, two-stage query selection and the grouped
decoder (within-instance / across-instance self-attention, deformable cross-attention, iterative
keypoint refinement).

Module names follow the official state_dict (``transformer.encoder.layers.<i>.self_attn...``,
``transformer.decoder.layers.<i>.within_attn...``), so official files load after a prefix change.
Tensors are batch-first: decoder queries are (B, Q, K+1, C) with the instance token first, then the K
keypoint tokens (the official per-pose layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bupose.core.ops import get_op

__all__ = [
    "MLP",
    "DecoderLayer",
    "DecoderOutput",
    "EncoderLayer",
    "GroupPoseTransformer",
    "MSDeformAttn",
    "encoder_proposals",
    "encoder_reference_points",
    "inverse_sigmoid",
    "sine_embed_for_position",
    "sine_position_embedding",
    "valid_ratios",
]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """log(x / (1 - x)) with x clamped to [0, 1] and both terms to at least ``eps`` (official 1e-3)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class MLP(nn.Module):
    """Linear layers with ReLU between them (``layers.<i>`` keys, as DETR's MLP)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1)
        outs = [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, outs, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else F.relu(layer(x))
        return x


def sine_position_embedding(
    mask: torch.Tensor, num_feats: int = 128, temperature_h: float = 20.0, temperature_w: float = 20.0
) -> torch.Tensor:
    """(B, H, W) pad mask (True = padding) -> (B, 2*num_feats, H, W) sine position embedding over the
    valid area: cumulative sums normalised by their last value (+1e-6), times 2π; (y, x) channel order
    (GroupPose's ``PositionEmbeddingSineHW(128, 20, 20, normalize=True)``)."""
    not_mask = ~mask
    y = not_mask.cumsum(1, dtype=torch.float32)
    x = not_mask.cumsum(2, dtype=torch.float32)
    eps, scale = 1e-6, 2 * math.pi
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    idx = torch.arange(num_feats, dtype=torch.float32, device=mask.device)
    dim_x = temperature_w ** (2 * torch.div(idx, 2, rounding_mode="floor") / num_feats)
    dim_y = temperature_h ** (2 * torch.div(idx, 2, rounding_mode="floor") / num_feats)
    px = x[:, :, :, None] / dim_x
    py = y[:, :, :, None] / dim_y
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


def sine_embed_for_position(points: torch.Tensor, num_feats: int = 128) -> torch.Tensor:
    """(..., 2) normalised (x, y) points -> (..., 2*num_feats) sine embedding, temperature 10000,
    scale 2π, (y, x) order (DINO's ``gen_sineembed_for_position``)."""
    scale = 2 * math.pi
    idx = torch.arange(num_feats, dtype=torch.float32, device=points.device)
    dim_t = 10000 ** (2 * torch.div(idx, 2, rounding_mode="floor") / num_feats)
    px = points[..., 0, None] * scale / dim_t
    py = points[..., 1, None] * scale / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=-1).flatten(-2)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=-1).flatten(-2)
    return torch.cat((py, px), dim=-1)


def valid_ratios(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) pad mask -> (B, 2): the valid width and height as fractions of W and H."""
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1).float()
    valid_w = (~mask[:, 0, :]).sum(1).float()
    return torch.stack([valid_w / w, valid_h / h], -1)


def encoder_reference_points(shapes: list[tuple[int, int]], ratios: torch.Tensor) -> torch.Tensor:
    """Reference points of the encoder tokens: (B, S, L, 2), each token's pixel centre normalised by
    its level's valid size, then scaled by every level's valid ratio."""
    refs = []
    for lvl, (h, w) in enumerate(shapes):
        ys, xs = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=ratios.device),
            torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=ratios.device),
            indexing="ij",
        )
        ry = ys.reshape(-1)[None] / (ratios[:, None, lvl, 1] * h)
        rx = xs.reshape(-1)[None] / (ratios[:, None, lvl, 0] * w)
        refs.append(torch.stack((rx, ry), -1))
    ref = torch.cat(refs, 1)
    return ref[:, :, None] * ratios[:, None]


def encoder_proposals(
    memory: torch.Tensor, mask: torch.Tensor, shapes: list[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-stage proposals: (memory with invalid tokens zeroed, (B, S, 4) logit-space proposals).

    Proposal = grid-cell centre ((i + 0.5) / valid_W, (j + 0.5) / valid_H) with w = h = 0.05·2^level;
    a token is invalid when it is padding or any component is outside (0.01, 0.99); invalid tokens
    get memory 0 and proposal +inf.
    """
    n = memory.shape[0]
    proposals = []
    cur = 0
    for lvl, (h, w) in enumerate(shapes):
        m = mask[:, cur : cur + h * w].view(n, h, w)
        valid_h = (~m[:, :, 0]).sum(1)
        valid_w = (~m[:, 0, :]).sum(1)
        gy, gx = torch.meshgrid(
            torch.linspace(0, h - 1, h, dtype=torch.float32, device=memory.device),
            torch.linspace(0, w - 1, w, dtype=torch.float32, device=memory.device),
            indexing="ij",
        )
        grid = torch.cat([gx.unsqueeze(-1), gy.unsqueeze(-1)], -1)
        scale = torch.cat([valid_w.unsqueeze(-1), valid_h.unsqueeze(-1)], 1).view(n, 1, 1, 2)
        grid = (grid.unsqueeze(0).expand(n, -1, -1, -1) + 0.5) / scale
        wh = torch.ones_like(grid) * 0.05 * (2.0**lvl)
        proposals.append(torch.cat((grid, wh), -1).view(n, -1, 4))
        cur += h * w
    props = torch.cat(proposals, 1)
    valid = ((props > 0.01) & (props < 0.99)).all(-1, keepdim=True)
    props = torch.log(props / (1 - props))
    props = props.masked_fill(mask.unsqueeze(-1), float("inf"))
    props = props.masked_fill(~valid, float("inf"))
    out = memory.masked_fill(mask.unsqueeze(-1), 0.0).masked_fill(~valid, 0.0)
    return out, props


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (Deformable DETR) through core's ``ms_deform_attn`` op lookup.

    ``reference_points`` (B, Lq, L, 2) are normalised (x, y) per level; sampling offsets are divided by
    each level's (W, H). Under autocast the op runs in float32 (as the official op casts fp16 inputs).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"MSDeformAttn: d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's initialisation: offsets start on a ring of directions, uniform weights."""
        if self.sampling_offsets.weight.is_meta:
            return
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, lq, _ = query.shape
        s = value.shape[1]
        v = self.value_proj(value)
        if padding_mask is not None:
            v = v.masked_fill(padding_mask[..., None], 0.0)
        v = v.view(n, s, self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query)
        weights = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
        weights = F.softmax(weights, -1).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        # each offset divided by its level's (W, H): the same quotients as a (heads, levels, points, 2)
        # broadcast, laid out along the last dimension only (a contiguous broadcast, ~3x faster on CPU)
        normaliser = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
        normaliser = normaliser[None, :, None, :].expand(self.n_heads, -1, self.n_points, -1).reshape(-1)
        offsets = (offsets / normaliser).view(n, lq, self.n_heads, self.n_levels, self.n_points, 2)
        locations = reference_points[:, :, None, :, None, :] + offsets
        op = get_op("ms_deform_attn", v.device)
        with torch.autocast(v.device.type, enabled=False):
            out = op(v.float(), spatial_shapes, level_start_index, locations.float(), weights.float())
        if not torch.is_autocast_enabled(v.device.type):
            out = out.to(query.dtype)
        return self.output_proj(out)


class EncoderLayer(nn.Module):
    """Deformable-DETR encoder layer: deformable self-attention + FFN, post-norm, ReLU."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        padding_mask: torch.Tensor,
    ) -> torch.Tensor:
        src2 = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


class DecoderLayer(nn.Module):
    """GroupPose decoder layer on (B, Q, K+1, C) queries (instance token first).

    1. within-instance self-attention over the K+1 tokens of each pose, 2. across-instance
    self-attention over the Q tokens of the same slot, 3. deformable cross-attention with one
    reference point per token, 4. FFN; each with residual + post-norm. ``pos`` (B, Q, K, C) is added to
    the keypoint tokens before 1 (so q, k, v and the residual carry it, as the official in-place add)
    and again before 3 (the residual keeps it).
    """

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.within_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.within_dropout = nn.Dropout(dropout)
        self.within_norm = nn.LayerNorm(d_model)
        self.across_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.across_dropout = nn.Dropout(dropout)
        self.across_norm = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    @staticmethod
    def add_pos(tgt: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``tgt`` with ``pos`` added to its keypoint tokens (index 1 on); the instance token is kept."""
        return torch.cat([tgt[:, :, :1], tgt[:, :, 1:] + pos], dim=2)

    def forward(
        self,
        tgt: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        memory_mask: torch.Tensor,
    ) -> torch.Tensor:
        b, q, t, c = tgt.shape
        x = self.add_pos(tgt, pos).reshape(b * q, t, c)
        x2 = self.within_attn(x, x, x, need_weights=False)[0]
        x = self.within_norm(x + self.within_dropout(x2))
        x = x.view(b, q, t, c).transpose(1, 2).reshape(b * t, q, c)
        x2 = self.across_attn(x, x, x, need_weights=False)[0]
        x = self.across_norm(x + self.across_dropout(x2))
        x = x.view(b, t, q, c).transpose(1, 2)
        x = self.add_pos(x, pos).reshape(b, q * t, c)
        x2 = self.cross_attn(x, reference_points, memory, spatial_shapes, level_start_index, memory_mask)
        x = self.norm1(x + self.dropout1(x2))
        x2 = self.linear2(self.dropout2(F.relu(self.linear1(x))))
        x = self.norm2(x + self.dropout3(x2))
        return x.view(b, q, t, c)


class _Encoder(nn.Module):
    def __init__(self, layers: list[EncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)


class _Decoder(nn.Module):
    def __init__(self, layers: list[DecoderLayer], d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.half_pose_ref_point_head = MLP(d_model, d_model, d_model, 2)


@dataclass
class DecoderOutput:
    """What the transformer hands to the per-layer heads.

    ``hidden`` per decoder layer (B, Q, K+1, C) as the layer produced it; ``positions`` per layer the
    keypoint-token position (B, Q, K, C) that layer added; ``references`` the sigmoid-space reference
    points (B, Q, K+1, 2) entering each layer and after the last (len = layers + 1); ``memory`` the
    encoder output (B, S, C); interm (encoder) logits (B, Q, 2) and keypoints (B, Q, K, 2);
    ``topk_indices`` (B, Q) the selected encoder tokens.
    """

    hidden: list[torch.Tensor]
    positions: list[torch.Tensor]
    references: list[torch.Tensor]
    memory: torch.Tensor
    interm_logits: torch.Tensor
    interm_keypoints: torch.Tensor
    topk_indices: torch.Tensor
    topk_scores: torch.Tensor


class GroupPoseTransformer(nn.Module):
    """Encoder, two-stage selection and decoder. ``pose_embed`` (one MLP per decoder layer) is passed
    to :meth:`forward` for the iterative refinement (the official modules live on the model)."""

    def __init__(
        self,
        num_keypoints: int,
        d_model: int = 256,
        nhead: int = 8,
        num_queries: int = 100,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.0,
        num_feature_levels: int = 4,
        enc_n_points: int = 4,
        dec_n_points: int = 4,
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.num_queries = num_queries
        self.d_model = d_model
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self.encoder = _Encoder(
            [EncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points)
             for _ in range(num_encoder_layers)]
        )  # fmt: skip
        self.decoder = _Decoder(
            [DecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead, dec_n_points)
             for _ in range(num_decoder_layers)],
            d_model,
        )  # fmt: skip
        self.keypoint_embedding = nn.Embedding(num_keypoints, d_model)
        self.instance_embedding = nn.Embedding(1, d_model)
        self.enc_output = nn.Linear(d_model, d_model)
        self.enc_output_norm = nn.LayerNorm(d_model)
        self.enc_pose_embed = MLP(d_model, 2 * d_model, 2 * num_keypoints, 4)
        self.enc_out_class_embed = nn.Linear(d_model, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier for matrices, Deformable DETR's init for the deformable attentions, N(0,1) level embed."""
        if self.level_embed.is_meta:
            return
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)
        nn.init.normal_(self.keypoint_embedding.weight)
        nn.init.normal_(self.instance_embedding.weight)
        nn.init.constant_(self.enc_out_class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.constant_(self.enc_pose_embed.layers[-1].weight, 0.0)
        nn.init.constant_(self.enc_pose_embed.layers[-1].bias, 0.0)

    def forward(
        self,
        srcs: list[torch.Tensor],
        masks: list[torch.Tensor],
        pos_embeds: list[torch.Tensor],
        pose_embed: nn.ModuleList,
    ) -> DecoderOutput:
        k = self.num_keypoints
        shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        device = srcs[0].device
        src_flat = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        mask_flat = torch.cat([m.flatten(1) for m in masks], 1)
        pos_flat = torch.cat(
            [p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1) for lvl, p in enumerate(pos_embeds)], 1
        )
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=device)
        starts = [0]
        for h, w in shapes[:-1]:
            starts.append(starts[-1] + h * w)
        level_start_index = torch.as_tensor(starts, dtype=torch.long, device=device)
        ratios = torch.stack([valid_ratios(m) for m in masks], 1)  # (B, L, 2)

        # encoder
        ref = encoder_reference_points(shapes, ratios)
        memory = src_flat
        for layer in self.encoder.layers:
            memory = layer(memory, pos_flat, ref, spatial_shapes, level_start_index, mask_flat)

        # two-stage query selection
        out_memory, proposals = encoder_proposals(memory, mask_flat, shapes)
        out_memory = self.enc_output_norm(self.enc_output(out_memory))
        enc_class = self.enc_out_class_embed(out_memory)
        enc_kp = self.enc_pose_embed(out_memory) + proposals[..., :2].repeat(1, 1, k)
        if enc_class.shape[1] < self.num_queries:
            raise ValueError(
                f"grouppose: the input gives {enc_class.shape[1]} encoder tokens over its 4 levels, fewer than "
                f"num_queries={self.num_queries}; use a larger input (e.g. at least 96x96 for 100 queries)"
            )
        scores, topk = torch.topk(enc_class.max(-1)[0], self.num_queries, dim=1)
        b = memory.shape[0]
        kp_sel = torch.gather(enc_kp, 1, topk.unsqueeze(-1).expand(-1, -1, 2 * k))  # logit space
        tgt_sel = torch.gather(out_memory, 1, topk.unsqueeze(-1).expand(-1, -1, self.d_model))
        interm_logits = self.enc_out_class_embed(tgt_sel)
        interm_kp = kp_sel.sigmoid().view(b, self.num_queries, k, 2)
        kp0 = interm_kp.detach()
        reference = torch.cat([kp0.mean(2, keepdim=True), kp0], 2)  # (B, Q, K+1, 2)
        kp_queries = self.keypoint_embedding.weight[None, None] + tgt_sel.detach()[:, :, None]
        inst_queries = self.instance_embedding.weight[None, None].expand(b, self.num_queries, 1, -1)
        tgt = torch.cat([inst_queries, kp_queries], 2)

        # decoder with iterative refinement
        hidden: list[torch.Tensor] = []
        positions: list[torch.Tensor] = []
        references = [reference]
        for lid, layer in enumerate(self.decoder.layers):
            ref_in = reference[:, :, None] * ratios[:, None, :, None, :]  # (B, Q, L, K+1, 2)
            pos = self.decoder.half_pose_ref_point_head(sine_embed_for_position(ref_in[:, :, 0, 1:], self.d_model // 2))
            ref_tokens = ref_in.permute(0, 1, 3, 2, 4).reshape(b, -1, len(shapes), 2)
            tgt = layer(tgt, pos, ref_tokens, memory, spatial_shapes, level_start_index, mask_flat)
            new_kp = (inverse_sigmoid(reference[:, :, 1:]) + pose_embed[lid](tgt[:, :, 1:])).sigmoid()
            reference = torch.cat([new_kp.mean(2, keepdim=True), new_kp], 2).detach()
            hidden.append(tgt)
            positions.append(pos)
            references.append(reference)
        return DecoderOutput(hidden, positions, references, memory, interm_logits, interm_kp, topk, scores)
