"""``bupose export``: a model's network as an ONNX file, checked in onnxruntime after export.

``bupose export --head dekr --backbone hrnet_w32 --weights pose_dekr_hrnetw32_coco.pth model.onnx``
writes the backbone + head (DEKR's adaptive convolution as ONNX ``DeformConv``, opset 19) with the
model's metadata, runs the file in onnxruntime on the export input and fails (removing the file) when
it disagrees with torch. ``bupose run --backend onnxruntime --model model.onnx`` runs the head's own
pre/post-processing around it.
"""

from __future__ import annotations

import click

from . import BuposeError

__all__ = ["export_command", "parse_input_hw"]


def parse_input_hw(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"384x640"`` (height x width) -> (384, 640)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) <= 0:
        raise BuposeError(f"--input-size {text!r}: expected S or HxW with positive integers, e.g. 512 or 384x640")
    return values[0], values[1]


@click.command("export")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--head", required=True, help="Registered head, e.g. dekr.")
@click.option("--backbone", required=True, help="Registered backbone, e.g. hrnet_w32.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Weights (bupose or official); random if absent.")
@click.option("--layout", default=None, help="Keypoint layout (default: the head's first, or the weights').")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--opset", type=click.IntRange(min=19), default=19, show_default=True,
              help="ONNX opset (>= 19: DeformConv).")
@click.option("--input-size", "input_size", default="512", show_default=True,
              help="Example input, S or HxW; with dynamic sizes other sizes run too.")
@click.option("--dynamic-batch/--static-batch", default=True, show_default=True)
@click.option("--dynamic-size/--static-size", default=True, show_default=True,
              help="Let height and width vary (DEKR's input size follows the aspect ratio).")
@click.option("--no-check", is_flag=True, help="Skip the onnxruntime comparison after export.")
@click.option("--trust-checkpoint", "trust", is_flag=True, help="Allow arbitrary pickles in --weights.")
def export_command(
    output: str, head: str, backbone: str, weights: str | None, layout: str | None, fmt: str, opset: int,
    input_size: str, dynamic_batch: bool, dynamic_size: bool, no_check: bool, trust: bool,
) -> None:
    """Export HEAD on BACKBONE (with WEIGHTS) to OUTPUT as ONNX and check it in onnxruntime."""
    from ..export import ExportError, export_onnx
    from ..inference import load_model
    from ..weights import CheckpointError

    hw = parse_input_hw(input_size)
    try:
        model = load_model(head, backbone, weights, layout=layout, trust=trust).model
        check = export_onnx(
            model, output, input_hw=hw, opset=opset, dynamic_batch=dynamic_batch, dynamic_size=dynamic_size,
            check=not no_check,
        )  # fmt: skip
    except (ExportError, CheckpointError) as exc:
        raise BuposeError(str(exc)) from None
    click.echo(f"wrote {output} ({fmt}, opset {opset}, example input {hw[0]}x{hw[1]})")
    if check is not None:
        errs = ", ".join(f"{k} {v:.2g}" for k, v in check.max_abs_error.items())
        click.echo(f"onnxruntime matches torch on the example input: max |error| {errs}")
