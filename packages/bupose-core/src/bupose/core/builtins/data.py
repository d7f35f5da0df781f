"""Core's data plugin: dataset formats and the ``bupose data synth`` / ``bupose eval`` commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..hookspecs import hookimpl
from ..specs import DatasetSpec


@hookimpl
def bupose_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(
        DatasetSpec(
            name="coco",
            factory="bupose.core.data.dataset:open_coco",
            layout="coco17",
            summary="COCO person keypoints: ROOT/annotations/person_keypoints_SPLIT.json + ROOT/SPLIT/",
        )
    )
    register(
        DatasetSpec(
            name="crowdpose",
            factory="bupose.core.data.dataset:open_crowdpose",
            layout="crowdpose14",
            summary="CrowdPose: ROOT/json/crowdpose_SPLIT.json + ROOT/images/ (14 joints, crowdIndex)",
        )
    )
    register(
        DatasetSpec(
            name="ochuman",
            factory="bupose.core.data.dataset:open_ochuman",
            layout="coco17",
            summary="OCHuman (COCO format): ochuman_coco_format_SPLIT_range_0.00_1.00.json + ROOT/images/",
        )
    )
    register(
        DatasetSpec(
            name="json",
            factory="bupose.core.data.dataset:load_dataset",
            layout="coco17",
            summary="any COCO-format keypoints json (images in a sibling images/ folder or next to it); "
            "also `bupose data synth` output",
        )
    )


@click.group("data")
def data_group() -> None:
    """Datasets: synthetic scenes."""


@data_group.command("synth")
@click.option("--layout", type=click.Choice(["coco17", "crowdpose14"]), default="coco17", show_default=True)
@click.option("--images", "num_images", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.IntRange(min=32), default=256, show_default=True, help="Square image size.")
@click.option(
    "--difficulty",
    type=click.Choice(["easy", "normal"]),
    default="normal",
    show_default=True,
    help="easy: 1-3 large, well separated people, no crowd regions (quick training runs).",
)
@click.option("--format", "image_format", type=click.Choice(["png", "jpg"]), default="png", show_default=True)
def synth_command(
    layout: str, num_images: int, out_dir: str, seed: int, size: int, difficulty: str, image_format: str
) -> None:
    """Write synthetic multi-person scenes: OUT/images/*.png + OUT/annotations.json (COCO format)."""
    from ..data.synth import generate

    path = generate(
        out_dir, layout=layout, num_images=num_images, size=size, seed=seed,
        difficulty=difficulty, image_format=image_format,
    )  # fmt: skip
    click.echo(f"wrote {num_images} images and {path}")


@hookimpl
def bupose_register_commands(cli: Any) -> None:
    from ..eval.cli import eval_command

    existing = cli.commands.get("data") if hasattr(cli, "commands") else None
    if isinstance(existing, click.Group):
        existing.add_command(synth_command)
    else:
        cli.add_command(data_group)
    if "eval" not in getattr(cli, "commands", {}):
        cli.add_command(eval_command)
