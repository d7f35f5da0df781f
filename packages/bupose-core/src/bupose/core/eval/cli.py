"""``bupose eval``: metrics of a COCO results file against COCO-format ground truth.

Results mode: ``bupose eval --results results.json --annotations gt.json [--layout coco17|crowdpose14|
ochuman] [--output metrics.json]`` prints the metric table and, with ``--output``, writes the metrics
as a flat JSON object (atomically). A model mode (run a model on a dataset first) is added in this
file by the training engine: add its options to ``eval_command`` and branch before
``_results_mode``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["eval_command", "write_metrics"]


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Write a flat JSON object of metrics atomically."""
    from ..weights import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
            f.write("\n")

    return atomic_write(path, write)


def _results_mode(results: str, annotations: str, layout: str, output: str | None, engine: str) -> None:
    from . import EvalError, evaluate, format_table

    try:
        metrics = evaluate(results, annotations, layout=layout, engine=engine)
    except EvalError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(format_table(metrics, layout))
    if output:
        write_metrics(output, metrics)
        click.echo(f"metrics written to {output}")


@click.command("eval")
@click.option("--results", type=click.Path(dir_okay=False), help="COCO keypoint results JSON.")
@click.option("--annotations", type=click.Path(dir_okay=False), help="Ground-truth COCO keypoints JSON.")
@click.option(
    "--layout",
    default="coco17",
    show_default=True,
    help="Keypoint layout / protocol: coco17, ochuman (COCO protocol) or crowdpose14 (CrowdPose E/M/H).",
)
@click.option("--output", type=click.Path(dir_okay=False), help="Write the metrics as a flat JSON object.")
@click.option(
    "--engine",
    type=click.Choice(["auto", "faster", "pycocotools"]),
    default="auto",
    show_default=True,
    help="Matching engine (identical numbers; faster-coco-eval is faster).",
)
def eval_command(results: str | None, annotations: str | None, layout: str, output: str | None, engine: str) -> None:
    """Keypoint AP/AR (COCO / OCHuman / CrowdPose) of a results file."""
    if not results or not annotations:
        raise click.UsageError("results mode needs both --results and --annotations")
    _results_mode(results, annotations, layout, output, engine)
