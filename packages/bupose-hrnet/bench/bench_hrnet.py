"""Forward latency of an HRNet backbone on the CPU: fp32 vs channels_last vs bf16 autocast.

Prints one table, batch sizes side by side, with every mode's ratio to plain fp32::

    python packages/bupose-hrnet/bench/bench_hrnet.py                  # W32, 512x512, batch 1 and 8
    python packages/bupose-hrnet/bench/bench_hrnet.py --model hrnet_w18_small --size 256
    python packages/bupose-hrnet/bench/bench_hrnet.py --compile        # adds torch.compile (inductor)

Latency is the median of the timed iterations after warm-up (``torch.inference_mode``, eval mode,
random He-initialised weights: the values do not change the work). Batch 8 runs few iterations.
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
from tqdm import tqdm

from bupose.hrnet.model import build_hrnet

MODES = ("fp32", "channels_last", "bf16_autocast", "bf16_autocast+channels_last")


def _runner(model: torch.nn.Module, x: torch.Tensor, mode: str, compiled: bool) -> Callable[[], object]:
    channels_last = "channels_last" in mode
    m = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    inp = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
    if compiled:
        torch._dynamo.reset()
        m = torch.compile(m)
    bf16 = mode.startswith("bf16")

    def run() -> object:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            return m(inp)

    return run


def _time(run: Callable[[], object], warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="hrnet_w32")
    parser.add_argument("--size", type=int, default=512, help="square input side in pixels")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations at batch 1")
    parser.add_argument("--iters-large", type=int, default=2, help="timed iterations at batch > 1")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (inductor) fp32")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_hrnet(args.model).eval()
    batches = [int(b) for b in args.batches.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    cases = [(m, False) for m in modes] + ([("fp32", True)] if args.compile else [])

    print(
        f"{args.model} forward, {args.size}x{args.size}, CPU: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, load avg {os.getloadavg()[0]:.1f}"
    )
    results: dict[tuple[str, int], float] = {}
    jobs = [(mode, compiled, b) for b in batches for mode, compiled in cases]
    for mode, compiled, b in tqdm(jobs, desc="benchmark", unit="case"):
        x = torch.randn(b, 3, args.size, args.size)
        run = _runner(model, x, mode, compiled)
        iters = args.iters if b == 1 else args.iters_large
        results[(mode + (" (compiled)" if compiled else ""), b)] = statistics.median(
            _time(run, args.warmup, iters)
        )
        model.to(memory_format=torch.contiguous_format)

    names = [m + (" (compiled)" if c else "") for m, c in cases]
    head = f"{'mode':<30}" + "".join(f"{f'batch {b} ms':>14}{'vs fp32':>9}{'img/s':>8}" for b in batches)
    print(head)
    print("-" * len(head))
    for name in names:
        row = f"{name:<30}"
        for b in batches:
            t = results[(name, b)]
            base = results.get(("fp32", b))
            ratio = f"{base / t:.2f}x" if base else "-"
            row += f"{t * 1e3:>14.1f}{ratio:>9}{b / t:>8.2f}"
        print(row)
    print("ratio = fp32 latency / mode latency (>1 is faster); median of timed iterations")


if __name__ == "__main__":
    main()
