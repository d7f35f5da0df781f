"""Mixed precision for inference: one rule for every pipeline.

``autocast(device, enabled)`` is float16 autocast on CUDA and bfloat16 autocast on a CPU that computes
bfloat16 natively (oneDNN reports it: AVX512-BF16 or AMX). On a CPU without it, bfloat16 is emulated
and was measured 6x slower than float32 (DEKR + HRNet-W32 at 256 px on a 2-core AMD EPYC with AVX2:
98 s vs 15 s per image), so the request falls back to float32 with one warning instead of silently
costing that. ``BUPOSE_AMP_EMULATED_BF16=1`` runs emulated bfloat16 anyway: slow, but it shows on any CPU
what bfloat16 does to the outputs (accuracy checks such as ``bupose-dekr/bench/bench_amp_accuracy.py``).

What bfloat16 keeps: 8 significant bits, so every activation is rounded to about 0.4 %. Regression
outputs (DEKR's offsets) move by a fraction of a pixel, but scores near a threshold or two people
of nearly equal score can switch, so a pose list under ``--amp`` may gain, lose or reorder people
compared with float32: measure on your data before relying on it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from typing import Any

import torch

__all__ = ["autocast", "cpu_has_native_bf16"]


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's check)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:  # noqa: BLE001 - an unknown answer means "not native"
        return False


@functools.cache
def _warn_once() -> None:
    warnings.warn(
        f"--amp: this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native bfloat16 (AVX512-BF16/AMX); "
        "emulated bfloat16 is several times slower than float32, so the network runs in float32",
        RuntimeWarning,
        stacklevel=3,
    )


def autocast(device: torch.device | str, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """The autocast context for ``device`` (a no-op when disabled or not worth it, see the module doc)."""
    dev = torch.device(device).type
    if not enabled:
        return contextlib.nullcontext()
    if dev == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    if dev == "cpu" and not cpu_has_native_bf16() and os.environ.get("BUPOSE_AMP_EMULATED_BF16", "") != "1":
        _warn_once()
        return contextlib.nullcontext()
    return torch.autocast(dev, dtype=torch.bfloat16)
