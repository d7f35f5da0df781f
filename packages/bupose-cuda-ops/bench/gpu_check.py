"""GPU check for a session that has a lent GPU: kernel equality CUDA vs CPU, network and pipeline
throughput of every installed head, at batch 1/8/32 in fp32 and bf16 (and the pipelines' --amp).

Run it through ``gpu_check.sh`` (which installs the packages and builds the CUDA extension first):

    python packages/bupose-cuda-ops/bench/gpu_check.py --out "$OUT" [--quick]

Writes ``gpu_check.json`` (every figure) and ``gpu_check.md`` (the tables to paste into the package
READMEs) under ``--out``. Random weights: the network's work does not depend on the values.
Timings are CUDA-event medians after warm-up; nothing here runs on a CPU-only machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

DEFAULT_BACKBONES = {"dekr": "hrnet_w32", "logocap": "hrnet_w32", "simplepose": "imhn"}
"""Backbone per head when no registered official checkpoint names one."""


def _cuda_ms(fn: Callable[[], object], warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernel_equality(report: dict[str, Any]) -> list[str]:
    """deform_conv2d and ms_deform_attn, CUDA vs the C++ CPU kernels (or the reference), fwd + bwd."""
    from bupose.core.ops import reference
    from bupose.cuda_ops import availability, functions

    ok, why = availability.cuda_available()
    if not ok:
        return [f"CUDA kernels unavailable: {why}"]
    cpu_ok, _ = availability.cpp_available()
    cpu_dcn = functions.deform_conv2d_cpp if cpu_ok else reference.deform_conv2d
    cpu_msda = functions.ms_deform_attn_cpp if cpu_ok else reference.ms_deform_attn
    g = torch.Generator().manual_seed(0)
    rows = []
    failures = []
    # DEKR's adaptive conv (one joint, and all 17 joints as one grouped call), then a masked DCNv2.
    for name, b, c, hw, og, mask in (
        ("dekr joint", 2, 15, 128, 1, False), ("dekr 17 grouped", 2, 255, 64, 17, False), ("dcnv2", 2, 32, 48, 4, True),
    ):  # fmt: skip
        x = torch.randn(b, c, hw, hw, generator=g)
        off = torch.randn(b, 2 * og * 9, hw, hw, generator=g) * 3
        w = torch.randn(c, c // og, 3, 3, generator=g) / (9 * c // og) ** 0.5
        bias = torch.randn(c, generator=g)
        m = torch.rand(b, og * 9, hw, hw, generator=g) if mask else None

        def run(fn: Callable[..., torch.Tensor], dev: str, x=x, off=off, w=w, bias=bias, m=m) -> list[torch.Tensor]:
            args = [t.to(dev).requires_grad_(True) for t in (x, off, w, bias)]
            mm = None if m is None else m.to(dev).requires_grad_(True)
            out = fn(*args, stride=1, padding=1, dilation=1, mask=mm)
            grads = torch.autograd.grad(out.square().sum(), [*args, *([mm] if mm is not None else [])])
            return [out.detach().cpu(), *(t.cpu() for t in grads)]

        want, got = run(cpu_dcn, "cpu"), run(functions.deform_conv2d_cuda, "cuda")
        errs = [float((a - e).abs().max() / (e.abs().max() + 1e-12)) for a, e in zip(got, want)]
        rows.append({"op": "deform_conv2d", "case": name, "max_rel_err": max(errs)})
        if max(errs) > 1e-4:
            failures.append(f"deform_conv2d {name}: relative error {max(errs):.2e}")
    # GroupPose-like multi-scale deformable attention.
    shapes = torch.tensor([[32, 32], [16, 16], [8, 8], [4, 4]])
    starts = torch.cat([torch.zeros(1, dtype=torch.long), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(2, s, 8, 32, generator=g)
    loc = torch.rand(2, 300, 8, 4, 4, 2, generator=g)
    attn = torch.rand(2, 300, 8, 4, 4, generator=g)

    def run_msda(fn: Callable[..., torch.Tensor], dev: str) -> list[torch.Tensor]:
        v, lo, at = (t.to(dev).requires_grad_(True) for t in (value, loc, attn))
        out = fn(v, shapes.to(dev), starts.to(dev), lo, at)
        grads = torch.autograd.grad(out.square().sum(), [v, lo, at])
        return [out.detach().cpu(), *(t.cpu() for t in grads)]

    want, got = run_msda(cpu_msda, "cpu"), run_msda(functions.ms_deform_attn_cuda, "cuda")
    errs = [float((a - e).abs().max() / (e.abs().max() + 1e-12)) for a, e in zip(got, want)]
    rows.append({"op": "ms_deform_attn", "case": "4 levels x 4 points", "max_rel_err": max(errs)})
    if max(errs) > 1e-4:
        failures.append(f"ms_deform_attn: relative error {max(errs):.2e}")
    report["kernel_equality"] = rows
    return failures


def _heads() -> list[tuple[str, str]]:
    """(head, backbone) of every installed head with a pipeline whose backbone is installed."""
    from bupose.core.plugins import get_registry

    reg = get_registry()
    backbones = set(reg.names("backbones"))
    out = []
    for head in reg.names("heads"):
        spec = reg.get("heads", head)
        if getattr(spec, "pipeline", None) is None:
            continue
        named = [
            w.backbone for w in (reg.get("weights", n) for n in reg.names("weights"))
            if getattr(w, "head", None) == head and getattr(w, "backbone", None) and w.role == "model"
        ]  # fmt: skip
        choice = next((b for b in named if b in backbones), DEFAULT_BACKBONES.get(head))
        if choice in backbones:
            out.append((head, choice))
    return out


def network_throughput(report: dict[str, Any], batches: list[int], size: int, quick: bool) -> list[str]:
    """Forward images/s of each head's model: plain fp32, folded + channels_last fp32, and bf16/fp16 autocast."""
    from bupose.core.fuse import optimize_for_inference
    from bupose.core.model import build_model

    rows, failures = [], []
    for head, backbone in _heads():
        try:
            torch.manual_seed(0)
            model = build_model(head, backbone).cuda().eval()
            mult = int(getattr(model.backbone, "size_divisibility", 1) or 1)
            side = max(mult, (size + mult - 1) // mult * mult)
            fused = optimize_for_inference(model, torch.randn(1, 3, 64, 64, device="cuda"), channels_last=True)
            for b in batches:
                x = torch.randn(b, 3, side, side, device="cuda")
                xl = x.contiguous(memory_format=torch.channels_last)
                variants: dict[str, Callable[[], object]] = {
                    "fp32 plain": lambda m=model, x=x: m(x),
                    "fp32 folded+cl": lambda m=fused, x=xl: m(x),
                    "bf16 folded+cl": lambda m=fused, x=xl: _autocast(m, x, torch.bfloat16),
                    "fp16 folded+cl": lambda m=fused, x=xl: _autocast(m, x, torch.float16),
                }
                for name, fn in variants.items():
                    with torch.inference_mode():
                        torch.cuda.reset_peak_memory_stats()
                        ms = _cuda_ms(fn, 2 if quick else 3, 5 if quick else 10)
                    rows.append({
                        "head": head, "backbone": backbone, "batch": b, "size": side, "variant": name,
                        "ms_per_batch": ms, "images_per_s": b * 1e3 / ms,
                        "peak_mb": torch.cuda.max_memory_allocated() / 2**20,
                    })  # fmt: skip
                    print(f"{head}+{backbone} b{b} {name}: {ms:.2f} ms, {b * 1e3 / ms:.1f} img/s", flush=True)
            del model, fused
            torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001 - one head failing must not hide the others
            failures.append(f"network {head}+{backbone}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
    report["network"] = rows
    return failures


def _autocast(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype) -> object:
    with torch.autocast("cuda", dtype=dtype):
        return model(x)


def pipeline_throughput(report: dict[str, Any], batches: list[int], images: int) -> list[str]:
    """Each head's whole pipeline (``bupose bench``'s measurement) on CUDA, fp32 and --amp."""
    from bupose.core.benchmark import bench_pipeline

    rows, failures = [], []
    for head, backbone in _heads():
        try:
            results = bench_pipeline(
                head, backbone, batch_sizes=batches, amp=True, compare_plain=head == "dekr", images=images,
                rounds=2, device="cuda",
            )  # fmt: skip
            for r in results:
                rows.append({"head": head, "backbone": backbone, **r.as_dict()})
                print(f"{head}+{backbone} pipeline {r.name}: {r.wall * 1e3:.1f} ms/image, {r.images_per_s:.1f} img/s", flush=True)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"pipeline {head}+{backbone}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
    report["pipeline"] = rows
    return failures


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# GPU check: {report.get('gpu')}, torch {report.get('torch')}", ""]
    if report.get("kernel_equality"):
        lines += ["| op | case | max relative error CUDA vs CPU |", "|---|---|---|"]
        lines += [f"| {r['op']} | {r['case']} | {r['max_rel_err']:.2e} |" for r in report["kernel_equality"]]
        lines.append("")
    if report.get("network"):
        lines += ["| head | backbone | input | batch | variant | ms/batch | images/s | peak MB |", "|---|---|---|---|---|---|---|---|"]
        lines += [
            f"| {r['head']} | {r['backbone']} | {r['size']} | {r['batch']} | {r['variant']} | {r['ms_per_batch']:.2f} "
            f"| {r['images_per_s']:.1f} | {r['peak_mb']:.0f} |"
            for r in report["network"]
        ]  # fmt: skip
        lines.append("")
    if report.get("pipeline"):
        lines += ["| head | variant | ms/image (wall) | forward ms | decode ms | images/s | peak MB |", "|---|---|---|---|---|---|---|"]
        lines += [
            f"| {r['head']} | {r['name']} | {r['wall'] * 1e3:.1f} | {r['stages_wall'].get('forward', float('nan')) * 1e3:.1f} "
            f"| {r['stages_wall'].get('decode', float('nan')) * 1e3:.1f} | {r['images_per_s']:.1f} | {r['peak_mb'] or 0:.0f} |"
            for r in report["pipeline"]
        ]  # fmt: skip
    if report.get("failures"):
        lines += ["", "Failures:", *(f"- {f}" for f in report["failures"])]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--size", type=int, default=512, help="square network input side for the network table")
    ap.add_argument("--images", type=int, default=32, help="images per pipeline round")
    ap.add_argument("--quick", action="store_true", help="fewer timed iterations")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: kernels,network,pipeline")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device; nothing to do", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    batches = [int(b) for b in args.batches.split(",") if b]
    skip = set(args.skip.split(","))
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "failures": []}
    t0 = time.time()
    if "kernels" not in skip:
        report["failures"] += kernel_equality(report)
    if "network" not in skip:
        report["failures"] += network_throughput(report, batches, args.size, args.quick)
    if "pipeline" not in skip:
        report["failures"] += pipeline_throughput(report, batches, args.images)
    report["seconds"] = time.time() - t0
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    (args.out / "gpu_check.md").write_text(_markdown(report))
    print(_markdown(report))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
