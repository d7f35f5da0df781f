"""``bupose bench``: benchmarks that print figures and ratios side by side in one run."""

from __future__ import annotations

import json

import click

from . import BuposeError

__all__ = ["bench_group"]


@click.group("bench")
def bench_group() -> None:
    """Benchmarks (figures and ratios side by side, one run)."""


@bench_group.command("backbone")
@click.argument("name")
@click.option("--size", type=click.IntRange(min=16), default=512, show_default=True, help="Square input side.")
@click.option("--batches", default="1", show_default=True, help="Comma-separated batch sizes.")
@click.option("--modes", default="fp32,channels_last,bf16_autocast,bf16_autocast+channels_last", show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="torch threads (0: torch's default).")
@click.option("--kwargs", "kwargs_json", default="{}", help='Backbone settings as JSON, e.g. \'{"norm": "frozen_bn"}\'.')
@click.option("--device", default="cpu", show_default=True)
def backbone_command(
    name: str, size: int, batches: str, modes: str, iters: int, warmup: int, threads: int, kwargs_json: str,
    device: str,
) -> None:
    """Forward latency of backbone NAME: fp32 vs channels_last vs bf16 autocast, per batch size."""
    import torch

    from ..benchmark import bench_backbone, format_table, machine_line

    try:
        sizes = [int(b) for b in batches.split(",") if b.strip()]
        kwargs = json.loads(kwargs_json)
    except ValueError as exc:
        raise BuposeError(f"--batches {batches!r} / --kwargs {kwargs_json!r}: {exc}") from None
    if not sizes or min(sizes) < 1 or not isinstance(kwargs, dict):
        raise BuposeError("--batches needs positive integers and --kwargs a JSON object")
    if threads:
        torch.set_num_threads(threads)
    try:
        results = bench_backbone(
            name, size=size, batches=sizes, modes=[m for m in modes.split(",") if m], warmup=warmup, iters=iters,
            kwargs=kwargs, device=device,
        )  # fmt: skip
    except ValueError as exc:
        raise BuposeError(str(exc)) from None
    click.echo(format_table(results, machine_line(f"{name} forward, {size}x{size}")))
