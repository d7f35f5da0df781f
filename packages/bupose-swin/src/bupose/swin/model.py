"""Swin Transformer backbones (shifted-window attention) in the official key layout.

Module tree, and so ``state_dict`` keys and order, of the official detection backbone (the one
GroupPose, DINO and Swin-Transformer-Object-Detection use): ``patch_embed.{proj,norm}``,
``layers.<i>.blocks.<j>.{norm1, attn.relative_position_bias_table, attn.relative_position_index,
attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``layers.<i>.downsample.{reduction,norm}`` (not in
the last stage) and one output norm ``norm<i>`` per output stage. There is no absolute position
embedding and no classification ``norm`` / ``head``.

Behaviour (the detection variant):

- the image is padded bottom/right to a multiple of the patch size, each block pads its tokens to a
  multiple of the window (the padded tokens take part in attention, as in the official code), each
  merge pads odd sizes to even, so any input size works and outputs are ceil(size / stride);
- odd blocks of a stage shift the windows by ``window // 2``; tokens that the cyclic shift brought
  together from different regions are kept apart by an additive mask of -100;
- ``relative_position_index`` is a constant the module builds (persistent buffer, as in the
  official state_dicts); loading a different value is an error;
- stochastic depth (drop path) with a linear schedule from 0 to ``drop_path_rate`` over all blocks;
- LayerNorm eps 1e-5, exact (erf) GELU.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bupose.core.model import Backbone
from bupose.core.specs import FeatureShape

from .config import SIZE_DIVISIBILITY, SwinConfig, output_name, output_shapes, swin_config

__all__ = [
    "DropPath",
    "Mlp",
    "PatchEmbed",
    "PatchMerging",
    "SwinBlock",
    "SwinStage",
    "SwinTransformer",
    "WindowAttention",
    "build_swin",
    "relative_position_index",
    "shifted_window_mask",
    "swin_l",
    "swin_t",
    "window_merge",
    "window_partition",
]

MASK_VALUE = -100.0
"""Additive attention logit between tokens of different regions of a shifted window."""


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) int64, N = window², for tokens i, j of a window (row-major): the bias-table row of their offset.

    Offset (dy, dx) = position(i) - position(j) maps to ``(dy + w - 1) * (2w - 1) + (dx + w - 1)``.
    """
    w = window_size
    rows, cols = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    pos = torch.stack((rows.flatten(), cols.flatten()))  # (2, N)
    offset = pos[:, :, None] - pos[:, None, :]  # (2, N, N): i - j
    return (offset[0] + w - 1) * (2 * w - 1) + (offset[1] + w - 1)


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of the window -> (B * windows, window², C), image-major, row-major."""
    b, h, w, c = x.shape
    s = window_size
    x = x.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * (h // s) * (w // s), s * s, c)


def window_merge(
    windows: torch.Tensor, window_size: int, batch: int, height: int, width: int
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * windows, window², C) -> (B, H, W, C)."""
    s = window_size
    c = windows.shape[-1]
    x = windows.view(batch, height // s, width // s, s, s, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height, width, c)


def shifted_window_mask(
    height: int, width: int, window_size: int, shift: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(windows, N, N) additive mask for a shifted-window block on a padded (height, width) token grid.

    After the cyclic shift by ``-shift``, rows (and columns) fall in three bands: up to the last
    window, the last window before the wrapped strip, and the wrapped strip of ``shift`` rows. Two
    tokens of a window may attend to each other only if they share both bands (0), else -100.
    """

    def bands(n: int) -> torch.Tensor:
        idx = torch.arange(n, device=device)
        return (idx >= n - window_size).long() + (idx >= n - shift).long()

    region = bands(height)[:, None] * 3 + bands(width)[None, :]
    labels = window_partition(region[None, :, :, None], window_size).squeeze(-1)  # (windows, N)
    differ = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(differ.shape, device=device).masked_fill_(differ, MASK_VALUE)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole sample's residual branch with probability ``p``.

    Kept samples are scaled by 1 / (1 - p); the identity in eval mode or when ``p`` is 0.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:.4g}"


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with hidden width ``mlp_ratio * dim``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias per head.

    ``relative_position_bias_table`` ((2w-1)², heads) is indexed by the constant
    ``relative_position_index`` buffer. Logits are q·k / sqrt(head_dim) + bias (+ the shift mask).
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, attn_drop: float = 0.0) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=True)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, N, N) bias added to the attention logits."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Windows (B * windows, N, C), ``mask`` (windows, N, N) or None -> (B * windows, N, C).

        The logits are computed in the official order (q scaled first, then q·k, + bias, + mask);
        that is also faster on the CPU than ``scaled_dot_product_attention`` for these small windows.
        """
        bw, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).view(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B * windows, heads, N, head_dim)
        attn = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
        attn = attn + self.relative_position_bias().unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(bw // windows, windows, heads, n, n) + mask[None, :, None].to(attn.dtype)
            attn = attn.view(bw, heads, n, n)
        attn = attn.softmax(dim=-1)
        if self.training and self.attn_drop > 0:
            attn = F.dropout(attn, self.attn_drop)
        out = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + "relative_position_index"
        value = state_dict.get(key)
        built = self.relative_position_index
        if (
            isinstance(value, torch.Tensor)
            and not value.is_meta
            and not built.is_meta
            and value.shape == built.shape
            and not torch.equal(value.to(built.device, built.dtype), built)
        ):
            error_msgs.append(
                f"{key}: differs from the constant this module builds for window {self.window_size}"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, each with a drop-path residual."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float, drop_path: float
    ) -> None:
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(
                f"Swin shift_size must be in [0, window_size), got {shift_size} for window {window_size}"
            )
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, height: int, width: int, mask: torch.Tensor | None) -> torch.Tensor:
        """Tokens (B, H*W, C) of an (height, width) grid; ``mask`` from :func:`shifted_window_mask`."""
        b, length, c = x.shape
        s, shift = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x).view(b, height, width, c)
        pad_b, pad_r = (-height) % s, (-width) % s
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = height + pad_b, width + pad_r
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        x = window_merge(self.attn(window_partition(x, s), mask if shift else None), s, b, hp, wp)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        x = x[:, :height, :width, :].reshape(b, length, c)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 token neighbourhoods -> one token: concatenate (4C), LayerNorm, linear to 2C (no bias).

    Concatenation order: (even row, even col), (odd, even), (even, odd), (odd, odd). Odd sizes are
    zero-padded bottom/right first.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, height, width, c)
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        h2, w2 = x.shape[1] // 2, x.shape[2] // 2
        # (b, h2, row parity, w2, col parity, c) -> (b, h2, w2, col parity, row parity, c)
        x = x.view(b, h2, 2, w2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h2 * w2, 4 * c)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: a patch-size strided conv, then LayerNorm."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Images (B, 3, H, W) -> tokens (B, h*w, C), h, w (H, W padded bottom/right to the patch size)."""
        p = self.patch_size
        pad_b, pad_r = (-x.shape[2]) % p, (-x.shape[3]) % p
        if pad_b or pad_r:
            x = F.pad(x, (0, pad_r, 0, pad_b))
        x = self.proj(x)
        h, w = x.shape[2], x.shape[3]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class SwinStage(nn.Module):
    """One stage: ``depth`` blocks (odd ones shifted) and an optional patch merging (``downsample``)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop_path: list[float],
        downsample: bool,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim, num_heads, window_size, 0 if j % 2 == 0 else self.shift_size, mlp_ratio, drop_path[j]
            )
            for j in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(
        self, x: torch.Tensor, height: int, width: int
    ) -> tuple[torch.Tensor, int, int, torch.Tensor, int, int]:
        """-> (stage output, its height, width, the merged tokens for the next stage, their height, width)."""
        s = self.window_size
        mask = None
        if len(self.blocks) > 1 and self.shift_size:
            mask = shifted_window_mask(
                math.ceil(height / s) * s, math.ceil(width / s) * s, s, self.shift_size, x.device
            )
        for blk in self.blocks:
            if self.use_checkpoint and x.requires_grad:
                x = checkpoint(blk, x, height, width, mask, use_reentrant=False)
            else:
                x = blk(x, height, width, mask)
        if self.downsample is None:
            return x, height, width, x, height, width
        return x, height, width, self.downsample(x, height, width), (height + 1) // 2, (width + 1) // 2


class SwinTransformer(Backbone):
    """A Swin Transformer built from a :class:`~bupose.swin.config.SwinConfig`.

    Outputs: the stages in ``config.out_indices`` after their norms ``norm<i>``, as (B, C, h, w) maps
    named ``c<log2 stride>`` (``c3``, ``c4``, ``c5`` by default, strides 8/16/32). An output is
    channels_last when the input is, contiguous otherwise. Stages after the last output are built
    (their keys exist) but not run. ``use_checkpoint`` recomputes blocks in backward (activation
    checkpointing) to save memory in training.

    ``size_divisibility`` is 32: sides that are multiples of 32 need no patch/merge padding (any size
    works; see the module docstring).

    Fresh initialisation (as the official backbone): linear weights and the bias tables truncated
    normal std 0.02, linear biases 0, LayerNorms 1/0.
    """

    size_divisibility: ClassVar[int] = SIZE_DIVISIBILITY

    def __init__(self, config: SwinConfig, *, use_checkpoint: bool = False) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim)
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        self.layers = nn.ModuleList()
        start = 0
        for i, (depth, heads) in enumerate(zip(config.depths, config.num_heads)):
            self.layers.append(
                SwinStage(
                    config.stage_channels(i),
                    depth,
                    heads,
                    config.window_size,
                    config.mlp_ratio,
                    rates[start : start + depth],
                    downsample=i < len(config.depths) - 1,
                    use_checkpoint=use_checkpoint,
                )
            )
            start += depth
        for i in config.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(config.stage_channels(i)))
        self._outputs = output_shapes(config)
        self._names = {i: output_name(config, i) for i in config.out_indices}
        self._init_weights()

    def _init_weights(self) -> None:
        if self.patch_embed.proj.weight.is_meta:  # shape-only model: nothing to initialise
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, WindowAttention):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)

    def output_shape(self) -> dict[str, FeatureShape]:
        """One entry per output stage (``c3``/``c4``/``c5`` by default) with channels and strides."""
        return dict(self._outputs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (B, 3, H, W) -> ``{"c3": (B, 2C, ceil(H/8), ceil(W/8)), ...}``."""
        channels_last = (
            x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        )
        tokens, h, w = self.patch_embed(x)
        out: dict[str, torch.Tensor] = {}
        last = self.config.out_indices[-1]
        for i, stage in enumerate(self.layers):
            y, yh, yw, tokens, h, w = stage(tokens, h, w)
            if i in self._names:
                y = getattr(self, f"norm{i}")(y)
                fmap = y.view(y.shape[0], yh, yw, y.shape[-1]).permute(0, 3, 1, 2)
                out[self._names[i]] = fmap if channels_last else fmap.contiguous()
            if i == last:
                break
        return out


def build_swin(
    config: SwinConfig | str, *, use_checkpoint: bool = False, **overrides: Any
) -> SwinTransformer:
    """A :class:`SwinTransformer` from a config or preset name; ``overrides`` replace config fields
    (``drop_path_rate``, ``out_indices``, ``window_size``...)."""
    if isinstance(config, str):
        config = swin_config(config)
    if overrides:
        fields = {f.name for f in dataclasses.fields(SwinConfig)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"unknown Swin option(s) {', '.join(unknown)}; known: use_checkpoint, {', '.join(sorted(fields))}"
            )
        if "out_indices" in overrides:
            overrides["out_indices"] = tuple(overrides["out_indices"])
        config = dataclasses.replace(config, **overrides)
    return SwinTransformer(config, use_checkpoint=use_checkpoint)


def swin_t(**kwargs: Any) -> SwinTransformer:
    """Swin-T: embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7; outputs c3/c4/c5 192/384/768."""
    return build_swin("swin_t", **kwargs)


def swin_l(**kwargs: Any) -> SwinTransformer:
    """Swin-L: embed 192, depths 2-2-18-2, heads 6-12-24-48, window 12; outputs c3/c4/c5 384/768/1536."""
    return build_swin("swin_l", **kwargs)
