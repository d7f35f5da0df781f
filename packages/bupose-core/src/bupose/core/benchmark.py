"""Benchmarks that print figures and ratios side by side in one run.

Whole pipelines: ``bupose bench --head dekr --backbone hrnet_w32 --batch-sizes 1,8`` (or
:func:`bench_pipeline`) builds the head's own inference pipeline once per variant (batch size,
``--amp``, and with ``--compare-plain`` the pipeline without its inference optimisations) on the
same model, runs the variants interleaved over ``rounds`` and reports per image: network (forward),
decode and total time, wall clock and this process's CPU time, images per second and peak memory,
with every variant's ratio to the first. A pipeline reports its stages when its ``predict_batch``
takes a ``stopwatch`` keyword (a :class:`Stopwatch`; the plug-in point for method packages) and
offers the plain variant when its constructor takes ``optimize``; otherwise only totals are shown.

Backbones alone: ``bupose bench backbone resnet50 --size 512 --batches 1,8`` (or :func:`bench_backbone`)

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = [
    "MODES",
    "PipelineVariant",
    "Stopwatch",
    "VariantResult",
    "bench_backbone",
    "bench_pipeline",
    "format_pipeline_table",
    "format_table",
    "machine_line",
    "peak_memory_reset",
    "peak_memory_mb",
    "stage",
    "time_call",
]

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


class Stopwatch:
    """Wall-clock and process CPU seconds accumulated per named stage (``with sw.stage("forward"):``)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c


def stage(stopwatch: Stopwatch | None, name: str) -> contextlib.AbstractContextManager[None]:
    """``stopwatch.stage(name)``, or a no-op without a stopwatch: what a pipeline's ``predict_batch``
    wraps its stages in (``forward``, ``decode``) so that ``bupose bench`` can report them."""
    return contextlib.nullcontext() if stopwatch is None else stopwatch.stage(name)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes keyword ``name`` (the engine's rule for optional collaborator arguments)."""
    from .engine.data import _accepts as accepts

    return accepts(fn, name)


def peak_memory_reset(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA allocator peak, or this process's peak RSS on Linux)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM (Linux >= 4.0)
        f.write("5")


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak memory since :func:`peak_memory_reset`: CUDA allocated MB, or peak RSS MB (None if unknown)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class PipelineVariant:
    """One configuration of a bench run: a name, a batch size and the pipeline's keyword arguments."""

    name: str
    batch_size: int
    pipeline_kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class VariantResult:
    """Medians over rounds, per image (seconds), of one variant; ``stages`` may be empty."""

    name: str
    batch_size: int
    wall: float
    cpu: float
    stages_wall: dict[str, float]
    stages_cpu: dict[str, float]
    peak_mb: float | None
    images_per_s: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _variants(pipeline_cls: type, options_fields: set[str], batch_sizes: Sequence[int], amp: bool,
              compare_plain: bool) -> list[PipelineVariant]:
    precisions: list[tuple[str, dict[str, Any]]] = [("fp32", {"amp": False} if "amp" in options_fields else {})]
    if amp:
        if "amp" not in options_fields:
            raise ValueError(f"{pipeline_cls.__name__} has no 'amp' option, so --amp cannot be benchmarked")
        precisions.append(("amp", {"amp": True}))
    plain = compare_plain and _accepts(pipeline_cls.__init__, "optimize")
    if compare_plain and not plain:
        raise ValueError(f"{pipeline_cls.__name__} takes no 'optimize' argument, so --compare-plain does not apply")
    out = []
    for b in batch_sizes:
        for pname, kw in precisions:
            out.append(PipelineVariant(f"{pname} b{b}", b, dict(kw)))
            if plain:
                out.append(PipelineVariant(f"{pname} plain b{b}", b, {**kw, "optimize": False}))
    return out


def bench_pipeline(
    head: str,
    backbone: str,
    *,
    weights: str | None = None,
    layout: str | None = None,
    batch_sizes: Sequence[int] = (1,),
    amp: bool = False,
    compare_plain: bool = False,
    images: int = 8,
    image_size: tuple[int, int] = (480, 640),
    rounds: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> list[VariantResult]:
    """Time the head's inference pipeline in every variant, interleaved; results in variant order.

    ``images`` random RGB images of ``image_size`` (H, W) are run in batches of each batch size;
    without ``weights`` the model has its random initialisation (the network's work does not
    depend on the values; the decoder's does, through the number of detections).
    """
    from .inference import load_model
    from .options import options_as_dict
    from .plugins import get_registry
    from .specs import HeadSpec, import_object

    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if images < 1 or rounds < 1:
        raise ValueError(f"images and rounds must be >= 1, got images={images}, rounds={rounds}")
    spec = get_registry().get("heads", head)
    assert isinstance(spec, HeadSpec)
    torch.manual_seed(seed)
    estimator = load_model(head, backbone, weights, layout=layout, device=device, **dict(options or {}))
    model = estimator.model.eval()
    pipeline_cls = import_object(spec.pipeline) if spec.pipeline else type(estimator.pipeline)
    base = options_as_dict(estimator.pipeline.options) if not isinstance(estimator.pipeline.options, dict) else {}
    variants = _variants(pipeline_cls, set(base), batch_sizes, amp, compare_plain)
    pipelines = [pipeline_cls(model, **{**dict(options or {}), **v.pipeline_kwargs}) for v in variants]
    rng = np.random.default_rng(seed)
    h, w = image_size
    data = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(images)]
    dev = torch.device(device)
    staged = [_accepts(p.predict_batch, "stopwatch") for p in pipelines]

    def run(k: int) -> tuple[float, float, Stopwatch]:
        pipe, b = pipelines[k], variants[k].batch_size
        sw = Stopwatch()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t, c = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            for i in range(0, len(data), b):
                if staged[k]:
                    pipe.predict_batch(data[i : i + b], stopwatch=sw)
                else:
                    pipe.predict_batch(data[i : i + b])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t, time.process_time() - c, sw

    for k in range(len(variants)):
        for _ in range(warmup):
            run(k)
    walls: list[list[float]] = [[] for _ in variants]
    cpus: list[list[float]] = [[] for _ in variants]
    stage_w: list[dict[str, list[float]]] = [{} for _ in variants]
    stage_c: list[dict[str, list[float]]] = [{} for _ in variants]
    peaks: list[float | None] = [None for _ in variants]
    for r in range(rounds):
        order = range(len(variants)) if r % 2 == 0 else reversed(range(len(variants)))
        for k in order:
            peak_memory_reset(dev)
            wall, cpu, sw = run(k)
            peak = peak_memory_mb(dev)
            if peak is not None:
                peaks[k] = max(peaks[k] or 0.0, peak)
            walls[k].append(wall / len(data))
            cpus[k].append(cpu / len(data))
            for name, v in sw.wall.items():
                stage_w[k].setdefault(name, []).append(v / len(data))
            for name, v in sw.cpu.items():
                stage_c[k].setdefault(name, []).append(v / len(data))
    results = []
    for k, v in enumerate(variants):
        wall = statistics.median(walls[k])
        note = ""
        if v.pipeline_kwargs.get("amp") and dev.type == "cpu":
            from .amp import cpu_has_native_bf16

            if not cpu_has_native_bf16():
                note = "no native bf16 on this CPU: runs in float32"
        results.append(
            VariantResult(
                name=v.name,
                batch_size=v.batch_size,
                wall=wall,
                cpu=statistics.median(cpus[k]),
                stages_wall={n: statistics.median(x) for n, x in stage_w[k].items()},
                stages_cpu={n: statistics.median(x) for n, x in stage_c[k].items()},
                peak_mb=peaks[k],
                images_per_s=1.0 / wall if wall > 0 else float("inf"),
                note=note,
            )
        )
    return results


def format_pipeline_table(results: Sequence[VariantResult], title: str = "") -> str:
    """One row per variant: per-image forward / decode / total (wall and CPU ms), images/s, peak
    memory and the ratio of the first variant's time to this one's (> 1 is faster)."""
    lines = [title] if title else []
    head = (
        f"{'variant':<18}{'forward ms':>11}{'decode ms':>10}{'total ms':>10}{'cpu ms':>10}{'img/s':>8}"
        f"{'peak MB':>9}{'x wall':>8}{'x cpu':>7}"
    )
    lines += [head, "-" * len(head)]
    base = results[0] if results else None
    for r in results:

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1e3:.1f}"

        row = (
            f"{r.name:<18}{ms(r.stages_wall.get('forward')):>11}{ms(r.stages_wall.get('decode')):>10}"
            f"{ms(r.wall):>10}{ms(r.cpu):>10}{r.images_per_s:>8.2f}"
            f"{('-' if r.peak_mb is None else f'{r.peak_mb:.0f}'):>9}"
            f"{(base.wall / r.wall if base and r.wall else float('nan')):>7.2f}x"
            f"{(base.cpu / r.cpu if base and r.cpu else float('nan')):>6.2f}x"
        )
        if r.note:
            row += f"  ({r.note})"
        lines.append(row)
    lines.append(
        "per image, medians over interleaved rounds; forward/decode/total wall clock, cpu = this process's CPU "
        "time; x = first variant / this variant (> 1 is faster); peak = CUDA allocated or process peak RSS"
    )
    return "\n".join(lines)
