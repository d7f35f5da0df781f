"""Forward latency of any registered backbone, in several execution modes, side by side.

``bupose bench backbone resnet50 --size 512 --batches 1,8`` (or :func:`bench_backbone`) times fp32,
channels_last, bf16 autocast and both, after warm-up, under ``torch.inference_mode`` with random
weights (the values do not change the work), and prints one table with every mode's ratio to plain
fp32. On a CPU without native bfloat16 the bf16 rows show what emulation costs (core's inference
autocast refuses it there: :mod:`bupose.core.amp`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = ["MODES", "bench_backbone", "format_table", "machine_line", "time_call"]

MODES = ("fp32", "channels_last", "bf16_autocast", "bf16_autocast+channels_last")


def time_call(run: Callable[[], object], warmup: int = 1, iters: int = 5) -> float:
    """Median seconds of ``iters`` timed calls of ``run`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(max(1, iters)):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _runner(model: torch.nn.Module, x: torch.Tensor, mode: str) -> Callable[[], object]:
    fmt = torch.channels_last if "channels_last" in mode else torch.contiguous_format
    model.to(memory_format=fmt)
    inp = x.contiguous(memory_format=fmt)
    bf16 = mode.startswith("bf16")

    def run() -> object:
        ctx = torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            return model(inp)

    return run


def bench_backbone(
    name: str,
    *,
    size: int = 512,
    batches: Sequence[int] = (1,),
    modes: Sequence[str] = MODES,
    warmup: int = 1,
    iters: int = 5,
    kwargs: Mapping[str, Any] | None = None,
    device: str = "cpu",
) -> dict[tuple[str, int], float]:
    """Median forward seconds of backbone ``name`` per (mode, batch size)."""
    from .model import build_backbone

    unknown = set(modes) - set(MODES)
    if unknown:
        raise ValueError(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    torch.manual_seed(0)
    model = build_backbone(name, **dict(kwargs or {})).to(device).eval()
    results: dict[tuple[str, int], float] = {}
    for b in batches:
        x = torch.randn(b, 3, size, size, device=device)
        for mode in modes:
            results[(mode, b)] = time_call(_runner(model, x, mode), warmup, iters)
        model.to(memory_format=torch.contiguous_format)
    return results


def format_table(results: Mapping[tuple[str, int], float], title: str = "") -> str:
    """The results as one table: a row per mode, per batch size its ms and its ratio to fp32."""
    modes = list(dict.fromkeys(m for m, _ in results))
    batches = list(dict.fromkeys(b for _, b in results))
    lines = [title] if title else []
    head = f"{'mode':<30}" + "".join(f"{f'batch {b} ms':>14}{'vs fp32':>9}" for b in batches)
    lines += [head, "-" * len(head)]
    for mode in modes:
        row = f"{mode:<30}"
        for b in batches:
            t, base = results[(mode, b)], results.get(("fp32", b))
            row += f"{t * 1e3:>14.1f}{(f'{base / t:.2f}x' if base else '-'):>9}"
        lines.append(row)
    lines.append("ratio = fp32 latency / mode latency (>1 is faster); median of timed iterations")
    return "\n".join(lines)


def machine_line(what: str) -> str:
    """One line naming what was timed and on what (CPU, threads, torch, load average)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{what}, CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, load avg {load:.1f}"
    )
