"""Golden weight recipe v1: deterministic, seed-free-of-order weights for any state_dict.

Given a state_dict layout (key, shape, dtype), fill every tensor from a generator seeded
with the CRC32 of its key, so two implementations that share a key layout (or a key
mapping) get bit-identical weights without shipping any weight file.

Rules, applied to each key in turn:
  * keys listed as "const" in a manifest keep the value that the model itself builds
    (for example DEKR's `regular_matrix` buffer or Swin's `relative_position_index`);
  * integer tensors (e.g. `num_batches_tracked`) are zeros;
  * `*running_var`   -> U[0.75, 1.25)
  * `*running_mean`  -> N(0, 0.05^2)
  * tensors with ndim >= 2 -> N(0, 1/fan_in), fan_in = prod(shape[1:])
  * 1-d `*weight` (norm scales) -> 1 + N(0, 0.1^2)
  * anything else (biases, 1-d params such as `bias_`) -> N(0, 0.05^2)

All tensors are generated in float32 on the CPU with torch.Generator and then cast to the
target dtype.
"""

from __future__ import annotations

import math
import zlib

import torch


def golden_tensor(key: str, shape, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    shape = tuple(int(s) for s in shape)
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    if key.endswith("running_var"):
        t = torch.rand(shape, generator=g) * 0.5 + 0.75
    elif key.endswith("running_mean"):
        t = torch.randn(shape, generator=g) * 0.05
    elif len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        t = torch.randn(shape, generator=g) * (1.0 / max(fan_in, 1)) ** 0.5
    elif key.endswith("weight"):
        t = 1.0 + torch.randn(shape, generator=g) * 0.1
    else:
        t = torch.randn(shape, generator=g) * 0.05
    return t.to(dtype)


def golden_state_dict(reference: dict, const_keys=()) -> dict:
    """Fill a state_dict shaped like `reference` by the recipe; `const_keys` keep their value."""
    const_keys = set(const_keys)
    out = {}
    for key, value in reference.items():
        if key in const_keys:
            out[key] = value.clone()
        else:
            out[key] = golden_tensor(key, value.shape, value.dtype)
    return out


def golden_input(shape, seed: int = 0) -> torch.Tensor:
    """A deterministic float32 input tensor, N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=g)
