"""``bupose data``: dataset tools (``bupose data synth``: synthetic scenes; ``bupose data synth-video``: a
synthetic panning video with per-frame ground truth)."""

from __future__ import annotations

import click

__all__ = ["data_group", "synth_command", "synth_video_command"]


@click.group("data")
def data_group() -> None:
    """Datasets: synthetic scenes and videos."""


@data_group.command("synth")
@click.option("--layout", type=click.Choice(["coco17", "crowdpose14"]), default="coco17", show_default=True)
@click.option("--images", "num_images", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--out", "--output", "-o", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.IntRange(min=32), default=256, show_default=True, help="Square image size.")
@click.option(
    "--difficulty",
    type=click.Choice(["easy", "normal", "overlap"]),
    default="normal",
    show_default=True,
    help="easy: 1-3 large, well separated people, no crowd regions (quick training runs); "
    "overlap: OCHuman-style groups of 2-4 heavily overlapping people (box IoU >= 0.5).",
)
@click.option("--overlap", is_flag=True, help="Short for --difficulty overlap.")
@click.option("--format", "image_format", type=click.Choice(["png", "jpg"]), default="png", show_default=True)
def synth_command(
    layout: str, num_images: int, out_dir: str, seed: int, size: int, difficulty: str, overlap: bool,
    image_format: str,
) -> None:
    """Write synthetic multi-person scenes: OUT/images/*.png + OUT/annotations.json (COCO format)."""
    from ..data.synth import generate

    if overlap:
        difficulty = "overlap"

    path = generate(
        out_dir, layout=layout, num_images=num_images, size=size, seed=seed,
        difficulty=difficulty, image_format=image_format,
    )  # fmt: skip
    click.echo(f"wrote {num_images} images and {path}")


@data_group.command("synth-video")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="Output .mp4 file.")
@click.option("--layout", type=click.Choice(["coco17", "crowdpose14"]), default="coco17", show_default=True)
@click.option("--frames", type=click.IntRange(min=1), default=48, show_default=True)
@click.option("--size", type=click.IntRange(min=32), default=192, show_default=True, help="Square frame size.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--difficulty", type=click.Choice(["easy", "normal"]), default="normal", show_default=True)
def synth_video_command(
    out_path: str, layout: str, frames: int, size: int, fps: float, seed: int, difficulty: str
) -> None:
    """Write a synthetic video (a smooth pan over one synthetic scene) + OUT.json ground truth per frame."""
    from ..data.synth import generate_video

    if not out_path.lower().endswith(".mp4"):
        raise click.BadParameter(f"{out_path}: expected a .mp4 file", param_hint="--out")
    video, ann = generate_video(
        out_path, layout=layout, frames=frames, size=size, seed=seed, fps=fps, difficulty=difficulty
    )
    click.echo(f"wrote {video} ({frames} frames, {size}x{size}, {fps:g} fps) and {ann}")
