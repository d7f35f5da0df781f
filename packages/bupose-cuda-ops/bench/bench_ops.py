"""Benchmark: reference vs C++ (vs CUDA when a GPU is present), forward and forward+backward.

Sizes: DEKR's AdaptBlock (15 channels, 3x3, 128x128 maps at batch 1 and 8) and GroupPose's
multi-scale deformable attention (8 heads x 32 channels, 4 levels, 4 points; decoder queries over
an 800x1333 image's pyramid, and the encoder's self-attention at 512x512).

    python packages/bupose-cuda-ops/bench/bench_ops.py [--repeats 5] [--quick]

Prints one table: median milliseconds per implementation and the speed-up over the reference.
``cpp`` forward without gradients runs the channels-last inference columns; ``cpp-nchw`` is the
(B, C, K, L) column path that training uses, timed on the same forward for comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from bupose.core.ops import reference


def _timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _dcn_case(b: int, c: int, hw: int, device: str, g: torch.Generator) -> dict:
    return {
        "input": torch.randn(b, c, hw, hw, generator=g).to(device),
        "offset": (torch.randn(b, 18, hw, hw, generator=g) * 3).to(device),
        "weight": (torch.randn(c, c, 3, 3, generator=g) / (9 * c) ** 0.5).to(device),
        "bias": None,
        "stride": 1,
        "padding": 1,
        "dilation": 1,
    }


def _msda_case(n: int, shapes: list[tuple[int, int]], lq: int | None, device: str, g: torch.Generator) -> dict:
    m, d, p = 8, 32, 4
    ss = torch.tensor(shapes, dtype=torch.long)
    areas = ss[:, 0] * ss[:, 1]
    s = int(areas.sum())
    lq = s if lq is None else lq
    levels = len(shapes)
    return {
        "value": torch.randn(n, s, m, d, generator=g).to(device),
        "spatial_shapes": ss.to(device),
        "level_start_index": torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]]).to(device),
        "sampling_locations": torch.rand(n, lq, m, levels, p, 2, generator=g).to(device),
        "attention_weights": torch.rand(n, lq, m, levels, p, generator=g).softmax(-1).to(device),
    }


def _fwd_bwd(fn: Callable[..., torch.Tensor], args: dict, grad_keys: tuple[str, ...]) -> Callable[[], None]:
    def run() -> None:
        a = {k: (v.detach().requires_grad_(True) if k in grad_keys and v is not None else v) for k, v in args.items()}
        fn(**a).sum().backward()

    return run


def _dcn_nchw_columns(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      stride: int, padding: int, dilation: int) -> torch.Tensor:
    """The C++ op through its training-path (B, C, K, L) columns, whatever the grad mode."""
    from bupose.cuda_ops import functions
    from bupose.cuda_ops.availability import load_extension

    params = (weight.shape[2], weight.shape[3], stride, stride, padding, padding, dilation, dilation)
    empty = input.new_empty(0)
    return functions._DeformConv2d.apply(load_extension("cpp"), params, 1, input.contiguous(), offset, empty,
                                         weight, empty if bias is None else bias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    opts = parser.parse_args()

    from bupose.cuda_ops import availability, functions

    impls: list[tuple[str, str, dict[str, Callable[..., torch.Tensor]]]] = [
        ("reference", "cpu", {"dcn": reference.deform_conv2d, "msda": reference.ms_deform_attn})
    ]
    ok, why = availability.cpp_available()
    if ok:
        impls.append(("cpp", "cpu", {"dcn": functions.deform_conv2d_cpp, "msda": functions.ms_deform_attn_cpp}))
        impls.append(("cpp-nchw", "cpu", {"dcn": _dcn_nchw_columns}))  # deform_conv2d only
    else:
        print(f"cpp unavailable: {why}")
    if torch.cuda.is_available():
        impls.append(("reference", "cuda", {"dcn": reference.deform_conv2d, "msda": reference.ms_deform_attn}))
        ok, why = availability.cuda_available()
        if ok:
            impls.append(
                ("cuda", "cuda", {"dcn": functions.deform_conv2d_cuda, "msda": functions.ms_deform_attn_cuda})
            )
        else:
            print(f"cuda unavailable: {why}")

    hw = 64 if opts.quick else 128
    dcn_cases = [(f"deform_conv2d b1 15ch {hw}x{hw} 3x3", 1), (f"deform_conv2d b8 15ch {hw}x{hw} 3x3", 8)]
    pyramid_800 = [(100, 167), (50, 84), (25, 42), (13, 21)]
    pyramid_512 = [(64, 64), (32, 32), (16, 16), (8, 8)]
    if opts.quick:
        pyramid_800 = [(50, 84), (25, 42), (13, 21), (7, 11)]
        pyramid_512 = [(32, 32), (16, 16), (8, 8), (4, 4)]
    msda_cases = [
        ("ms_deform_attn decoder 1800q 800x1333", 1, pyramid_800, 1800),
        ("ms_deform_attn encoder 512x512 (Lq=S)", 1, pyramid_512, None),
    ]

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
        + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU")
        + f"; median of {opts.repeats} runs after a warm-up, milliseconds"
    )
    header = f"{'case':<42} {'pass':<9} " + " ".join(f"{i}/{d:<14}"[:20].ljust(20) for i, d, _ in impls)
    print(header + "  speed-up vs reference (same device)")
    print("-" * (len(header) + 36))

    rows: list[tuple[str, str, list[float]]] = []
    for name, b in dcn_cases:
        for mode in ("forward", "fwd+bwd"):
            times = []
            for _impl, device, fns in impls:
                args = _dcn_case(b, 15, hw, device, torch.Generator().manual_seed(0))
                sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
                fn = fns["dcn"]
                if mode == "forward":
                    with torch.no_grad():
                        times.append(_timed(lambda fn=fn, args=args: fn(**args), opts.repeats, sync))
                else:
                    run = _fwd_bwd(fn, args, ("input", "offset", "weight"))
                    times.append(_timed(run, opts.repeats, sync))
            rows.append((name, mode, times))
            _print_row(name, mode, times, impls)
    for name, n, shapes, lq in msda_cases:
        for mode in ("forward", "fwd+bwd"):
            times = []
            for _impl, device, fns in impls:
                args = _msda_case(n, shapes, lq, device, torch.Generator().manual_seed(0))
                sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
                fn = fns.get("msda")
                if fn is None:
                    times.append(float("nan"))
                elif mode == "forward":
                    with torch.no_grad():
                        times.append(_timed(lambda fn=fn, args=args: fn(**args), opts.repeats, sync))
                else:
                    run = _fwd_bwd(fn, args, ("value", "sampling_locations", "attention_weights"))
                    times.append(_timed(run, opts.repeats, sync))
            rows.append((name, mode, times))
            _print_row(name, mode, times, impls)


def _print_row(name: str, mode: str, times: list[float], impls: list) -> None:
    cells = " ".join(f"{t:>10.2f} ms".ljust(20) for t in times)
    ratios = []
    for (impl, device, _), t in zip(impls, times):
        if impl == "reference" or t != t:  # NaN: not run for this op
            continue
        ref_t = next(tt for (i, d, _), tt in zip(impls, times) if i == "reference" and d == device)
        ratios.append(f"{impl}: {ref_t / t:.2f}x")
    print(f"{name:<42} {mode:<9} {cells}  {', '.join(ratios)}", flush=True)


if __name__ == "__main__":
    main()
