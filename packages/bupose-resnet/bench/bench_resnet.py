"""Forward latency of a ResNet backbone on the CPU: fp32 vs channels_last vs bf16 autocast.

Prints one table, batch sizes side by side, with every mode's ratio to plain fp32::

    python packages/bupose-resnet/bench/bench_resnet.py                      # resnet50, 512x512, batch 1
    python packages/bupose-resnet/bench/bench_resnet.py --model resnet18 --size 256 --batches 1,4
    python packages/bupose-resnet/bench/bench_resnet.py --norm frozen_bn     # GroupPose's R-50 norms

Latency is the median of the timed iterations after warm-up (``torch.inference_mode``, eval mode,
random weights: the values do not change the work).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from bupose.resnet.model import build_resnet

MODES = ("fp32", "channels_last", "bf16_autocast", "bf16_autocast+channels_last")


def _runner(model: torch.nn.Module, x: torch.Tensor, mode: str) -> Callable[[], object]:
    channels_last = "channels_last" in mode
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    inp = x.contiguous(memory_format=fmt)
    ctx = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if mode.startswith("bf16")
        else contextlib.nullcontext
    )

    def run() -> object:
        with torch.inference_mode(), ctx():
            return model(inp)

    return run


def _time(run: Callable[[], object], warmup: int, iters: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--norm", default="bn", choices=("bn", "frozen_bn"))
    parser.add_argument("--size", type=int, default=512, help="square input side in pixels")
    parser.add_argument("--batches", default="1", help="comma-separated batch sizes")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()

    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_resnet(args.model, norm=args.norm).eval()
    batches = [int(b) for b in args.batches.split(",")]
    print(
        f"{args.model} ({args.norm}) forward, {args.size}x{args.size}, CPU: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, load avg {os.getloadavg()[0]:.1f}"
    )
    results = {}
    for b in batches:
        x = torch.randn(b, 3, args.size, args.size)
        for mode in modes:
            results[(mode, b)] = _time(_runner(model, x, mode), args.warmup, args.iters)
        model.to(memory_format=torch.contiguous_format)

    head = f"{'mode':<30}" + "".join(f"{f'batch {b} ms':>14}{'vs fp32':>9}" for b in batches)
    print(head)
    print("-" * len(head))
    for mode in modes:
        row = f"{mode:<30}"
        for b in batches:
            t, base = results[(mode, b)], results.get(("fp32", b))
            row += f"{t * 1e3:>14.1f}{(f'{base / t:.2f}x' if base else '-'):>9}"
        print(row)
    print("ratio = fp32 latency / mode latency (>1 is faster); median of timed iterations")


if __name__ == "__main__":
    main()
