"""``bupose eval``: metrics of a COCO results file against COCO-format ground truth.

Results mode: ``bupose eval --results results.json --annotations gt.json [--layout coco17|crowdpose14|
ochuman] [--output metrics.json]`` prints the metric table and, with ``--output``, writes the metrics
as a flat JSON object (atomically).

Model mode: ``bupose eval --head H --backbone B --weights FILE --data DATASET_SPEC [--batch-size N]
[--flip/--no-flip] [--scales ...] [--input-size S] [--save-results results.json] [--output
metrics.json]`` runs the model over every image of the dataset (batched, through the head's
inference pipeline, exactly as ``bupose run`` does), writes the COCO results JSON and prints the
metrics of the dataset's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from . import BuposeError

__all__ = ["eval_command", "model_mode"]


def _results_mode(results: str, annotations: str, layout: str, output: str | None, engine: str) -> None:
    from ..eval import EvalError, evaluate, format_table
    from ..eval.results import write_metrics

    try:
        metrics = evaluate(results, annotations, layout=layout, engine=engine)
    except EvalError as exc:
        raise click.ClickException(str(exc)) from exc
    for path, key, what in ((results, None, "results"), (annotations, "annotations", "ground-truth annotations")):
        if _is_empty(path, key):
            click.echo(f"warning: {path}: holds no {what}; the metrics below say nothing about a model", err=True)
    click.echo(format_table(metrics, layout))
    if output:
        write_metrics(output, metrics)
        click.echo(f"metrics written to {output}")


def _is_empty(path: str, key: str | None) -> bool:
    """Whether the (already validated) JSON file's list, or its ``key`` list, is empty."""
    import json

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return not (data.get(key) if key is not None else data)


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
@click.option("--head", help="Model mode: registered head, e.g. dekr.")
@click.option("--backbone", help="Model mode: registered backbone, e.g. hrnet_w18_small.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Model mode: weights (bupose or official).")
@click.option("--data", help="Model mode: dataset (COCO json, folder with annotations.json, coco:ROOT:SPLIT...).")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Model mode: cpu, cuda, cuda:1.")
@click.option("--flip/--no-flip", default=None,
              help="Model mode: short for --option flip=true/false (heads with a flip test; default: the head's).")
@click.option("--scales", default=None,
              help="Model mode: short for --option scales=0.5,1,2 (heads with multi-scale testing).")
@click.option("--input-size", "input_size", type=click.IntRange(min=32), default=None,
              help="Model mode: short for --option input_size=N (default: the trained size stored in the weights, else the head's).")
@click.option("--amp", is_flag=True, default=None, help="Model mode: short for --option amp=true (autocast).")
@click.option("--max-images", "max_images", type=click.IntRange(min=1), default=None,
              help="Model mode: evaluate the first N images only.")
@click.option("--save-results", "save_results", type=click.Path(dir_okay=False), default="results.json",
              show_default=True, help="Model mode: where to write the COCO results JSON.")
@click.option("--trust-checkpoint", "trust", is_flag=True, help="Allow arbitrary pickles in --weights.")
@click.option("--option", "pipeline_options", multiple=True, metavar="KEY=VALUE",
              help="Model mode: test-time option of the head (repeatable); `bupose run --head H --help` lists H's.")
def eval_command(
    results: str | None, annotations: str | None, layout: str, output: str | None, engine: str,
    head: str | None = None, backbone: str | None = None, weights: str | None = None, data: str | None = None,
    batch_size: int = 8, device: str = "cpu", flip: bool | None = None, scales: str | None = None,
    input_size: int | None = None, amp: bool | None = None, max_images: int | None = None,
    save_results: str = "results.json", trust: bool = False, pipeline_options: tuple[str, ...] = (),
) -> None:
    """Keypoint AP/AR (COCO / OCHuman / CrowdPose) of a results file, or of a model on a dataset."""
    model_opts = {"--head": head, "--backbone": backbone, "--weights": weights, "--data": data}
    if any(v is not None for v in model_opts.values()):
        if results or annotations:
            raise click.UsageError("give either --results/--annotations or --head/--backbone/--weights/--data")
        missing = [k for k, v in model_opts.items() if v is None]
        if missing:
            raise click.UsageError(f"model mode needs {', '.join(missing)} as well")
        from ..options import OptionError, split_option_items

        try:
            items = split_option_items(pipeline_options)
        except OptionError as exc:
            raise click.BadParameter(str(exc)) from None
        model_mode(
            head=str(head), backbone=str(backbone), weights=str(weights), data=str(data),
            batch_size=batch_size, device=device, flip=flip, scales=scales, input_size=input_size, amp=amp,
            max_images=max_images, save_results=save_results, output=output, engine=engine, trust=trust,
            pipeline_options=items,
        )
        return
    if not results or not annotations:
        raise click.UsageError("results mode needs both --results and --annotations")
    _results_mode(results, annotations, layout, output, engine)


def model_mode(
    *,
    head: str,
    backbone: str,
    weights: str,
    data: str,
    batch_size: int = 8,
    device: str = "cpu",
    flip: bool | None = None,
    scales: str | None = None,
    input_size: int | None = None,
    amp: bool | None = None,
    max_images: int | None = None,
    save_results: str = "results.json",
    output: str | None = None,
    engine: str = "auto",
    trust: bool = False,
    progress: bool = True,
    pipeline_options: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """``bupose eval`` model mode: run a model over a dataset, write results, print the metrics.

    ``pipeline_options`` are test-time options of the head (strings as typed or Python values, e.g.
    DEKR's ``match_hmp``), validated against the head's declared options; ``flip``, ``scales``,
    ``input_size`` and ``amp`` are their short forms (``None`` = the head's default)."""
    import copy
    import json
    import os

    from ..data.dataset import load_dataset
    from ..engine.evaluation import predict_dataset, subset_annotations
    from ..eval import evaluate, format_table
    from ..eval.results import write_metrics
    from ..grouping import GroupingError
    from ..inference import load_model
    from ..options import OptionError
    from ..plugins import get_registry
    from ..weights import atomic_write
    from .run import head_options

    head_spec = get_registry().get("heads", head)
    aliases = {"flip": flip, "scales": scales, "amp": amp, "input_size": input_size}
    options, passthrough = head_options(head_spec, dict(pipeline_options or {}), aliases)
    if not os.path.isfile(weights):
        raise BuposeError(f"--weights {weights}: file not found")
    try:
        dataset = load_dataset(data)
    except (ValueError, OSError) as exc:
        raise BuposeError(f"--data {data}: {exc}") from None
    try:
        estimator = load_model(
            head, backbone, weights, layout=dataset.layout.name, device=device, trust=trust, options=options,
            **passthrough,
        )  # fmt: skip
    except (OptionError, GroupingError) as exc:
        raise BuposeError(str(exc)) from exc
    except TypeError as exc:
        if not passthrough:
            raise
        raise BuposeError(
            f"--option {', '.join(sorted(passthrough))}: not accepted by head {head!r}: {exc}"
        ) from exc
    results = predict_dataset(
        estimator, dataset, batch_size=batch_size, max_images=max_images, progress=progress
    )

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(results, f)

    atomic_write(save_results, write)
    annotations = copy.deepcopy(subset_annotations(dataset, max_images))
    metrics = evaluate(results, annotations, layout=dataset.layout.name, engine=engine)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    click.echo(f"{head} + {backbone} on {data}: {n} images, {len(results)} poses -> {save_results}")
    click.echo(format_table(metrics, dataset.layout.name))
    if output:
        write_metrics(output, metrics)
        click.echo(f"metrics written to {output}")
    return metrics
