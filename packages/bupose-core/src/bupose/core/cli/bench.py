"""``bupose bench``: benchmarks that print figures and ratios side by side in one run."""

from __future__ import annotations

import json

import click

from . import BuposeError
from ._device import DEVICE_HELP, resolve_device

__all__ = ["bench_group"]


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise BuposeError(f"{flag} {text!r}: expected comma-separated positive integers, e.g. 1,8")
    return values


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
    except ValueError:
        h = w = 0
    if h < 16 or w < 16:
        raise BuposeError(f"--image-size {text!r}: expected HEIGHTxWIDTH (or one side), each >= 16, e.g. 480x640")
    return h, w


@click.group("bench", invoke_without_command=True)
@click.option("--head", help="Benchmark this head's whole inference pipeline (with --backbone).")
@click.option("--backbone", help="Backbone of the model (with --head).")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), help="Checkpoint (default: random weights).")
@click.option("--layout", help="Keypoint layout (default: the head's / the checkpoint's).")
@click.option("--batch-sizes", default="1", show_default=True, help="Comma-separated batch sizes, e.g. 1,8.")
@click.option("--amp", is_flag=True, help="Also run each batch size under the pipeline's --amp (mixed precision).")
@click.option("--compare-plain", is_flag=True, help="Also run the pipeline without its inference optimisations.")
@click.option("--images", type=click.IntRange(min=1), default=8, show_default=True, help="Random images per round.")
@click.option("--image-size", default="480x640", show_default=True, help="HEIGHTxWIDTH of the random images.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="Interleaved rounds (median).")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="torch threads (0: torch's default).")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--option", "option_items", multiple=True, metavar="KEY=VALUE", help="A pipeline option (repeatable).")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the results as JSON here.")
@click.pass_context
def bench_group(
    ctx: click.Context, head: str | None, backbone: str | None, weights: str | None, layout: str | None,
    batch_sizes: str, amp: bool, compare_plain: bool, images: int, image_size: str, rounds: int, warmup: int,
    threads: int, device: str, option_items: tuple[str, ...], output: str | None,
) -> None:
    """Benchmarks (figures and ratios side by side, one run).

    With --head and --backbone: the head's whole inference pipeline on random images, every variant
    (batch size, --amp, --compare-plain) interleaved in one run: forward / decode / total per image,
    images per second, peak memory and each variant's ratio to the first.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not head or not backbone:
        if head or backbone:
            raise BuposeError("bupose bench: give both --head and --backbone (or a subcommand, e.g. `bench backbone`)")
        click.echo(ctx.get_help())
        return
    import torch

    from ..benchmark import bench_pipeline, format_pipeline_table, machine_line
    from ..options import split_option_items

    sizes = _ints(batch_sizes, "--batch-sizes")
    hw = _size(image_size)
    try:
        options = split_option_items(option_items)
    except ValueError as exc:
        raise BuposeError(str(exc)) from None
    device, _ = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    try:
        results = bench_pipeline(
            head, backbone, weights=weights, layout=layout, batch_sizes=sizes, amp=amp,
            compare_plain=compare_plain, images=images, image_size=hw, rounds=rounds, warmup=warmup,
            device=device, options=options,
        )  # fmt: skip
    except (ValueError, TypeError, KeyError) as exc:
        raise BuposeError(f"bupose bench: {exc}") from None
    what = f"{head} + {backbone} pipeline, {images} images {hw[0]}x{hw[1]}, {'given' if weights else 'random'} weights"
    title = machine_line(what)
    click.echo(format_pipeline_table(results, title))
    if output:
        with open(output, "w") as f:
            json.dump({"title": title, "results": [r.as_dict() for r in results]}, f, indent=2)


@bench_group.command("backbone")
@click.argument("name")
@click.option("--size", type=click.IntRange(min=16), default=512, show_default=True, help="Square input side.")
@click.option("--batches", default="1", show_default=True, help="Comma-separated batch sizes.")
@click.option("--modes", default="fp32,channels_last,bf16_autocast,bf16_autocast+channels_last", show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=0, help="torch threads (0: torch's default).")
@click.option("--kwargs", "kwargs_json", default="{}", help='Backbone settings as JSON, e.g. \'{"norm": "frozen_bn"}\'.')
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
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
    device, _ = resolve_device(device)
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
