"""``bupose eval``: metrics of a COCO results file against COCO-format ground truth.

Results mode: ``bupose eval --results results.json (--annotations gt.json | --data DATASET_SPEC)
[--layout coco17|crowdpose14|ochuman] [-o OUT]`` prints the metric table. The layout defaults to the
dataset's, else to what the ground truth holds (14 keypoints: CrowdPose, else COCO). ``-o DIR``
writes ``DIR/metrics.json``; ``-o FILE.json`` writes the metrics there (a flat JSON object,
atomically). ``bupose run ... DATASET_SPEC -o OUT`` then ``bupose eval --results OUT/results.json
--data DATASET_SPEC`` is the two-command chain.

Model mode: ``bupose eval [--head H --backbone B] --weights FILE --data DATASET_SPEC [-o OUT]
[--batch-size N] [--flip/--no-flip] [--scales ...] [--input-size S] [--save-results FILE]`` runs the
model over every image of the dataset (batched, through the head's inference pipeline, exactly as
``bupose run`` does; head and backbone default to what the weights say, as there) and prints the
metrics of the dataset's layout; the COCO results go to
``--save-results``, else ``OUT/results.json`` when ``-o`` is a folder (never the current folder
unasked).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import click

from . import BuposeError
from ._device import DEVICE_HELP

__all__ = ["detect_layout", "eval_command", "model_mode"]


def _output_paths(output: str | None) -> tuple[str | None, str | None]:
    """``-o``: a ``.json`` path is the metrics file; anything else a folder for metrics.json and
    results.json. Returns (metrics path, results path)."""
    if not output:
        return None, None
    if output.lower().endswith(".json"):
        return output, None
    os.makedirs(output, exist_ok=True)
    return os.path.join(output, "metrics.json"), os.path.join(output, "results.json")


def detect_layout(annotations: Any) -> str:
    """``crowdpose14`` for ground truth with 14 keypoints (its category's ``keypoints`` or its
    annotations), else ``coco17`` (COCO and OCHuman share the COCO protocol)."""
    data = annotations
    if isinstance(annotations, (str, os.PathLike)):
        try:
            with open(annotations, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError):
            return "coco17"  # the evaluation reports the unreadable file
    if not isinstance(data, Mapping):
        return "coco17"
    counts = [len(c["keypoints"]) for c in data.get("categories") or [] if isinstance(c, Mapping)
              and isinstance(c.get("keypoints"), list)]
    if not counts:
        counts = [len(a["keypoints"]) // 3 for a in (data.get("annotations") or [])[:20]
                  if isinstance(a, Mapping) and isinstance(a.get("keypoints"), list)]
    return "crowdpose14" if counts and counts[0] == 14 else "coco17"


def _file_name_ids(results: str) -> tuple[int, str] | None:
    """(entry index, as the evaluator's ``result #i`` counts, id) of the first ``image_id`` that is a string (``bupose run`` without
    ground truth), if any."""
    try:
        with open(results, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None  # the evaluation reports it
    if isinstance(data, list):
        for i, e in enumerate(data):
            if isinstance(e, Mapping) and isinstance(e.get("image_id"), str):
                return i, e["image_id"]
    return None


def _infer_names(weights: str, head: str | None, backbone: str | None, trust: bool) -> tuple[str, str]:
    """Model mode without --head/--backbone: the names the weights file states or implies (as
    ``bupose run`` infers them), said on stderr."""
    from ..inference import Checkpoint
    from ..plugins import get_registry
    from ..weights import CheckpointError
    from .run import infer_model

    if not os.path.isfile(weights):
        raise BuposeError(f"--weights {weights}: file not found")
    try:
        checkpoint = Checkpoint.read(weights, trust=trust)
    except CheckpointError as exc:
        raise BuposeError(str(exc)) from None
    head, backbone, note = infer_model(checkpoint, head, backbone, get_registry())
    if note:
        click.echo(note, err=True)
    return head, backbone


def _results_mode(results: str, annotations: str | None, layout: str | None, output: str | None, engine: str,
                  data: str | None = None) -> None:
    from ..eval import EvalError, evaluate, format_table
    from ..eval.results import write_metrics

    if data is not None:
        from ..data.dataset import load_dataset

        try:
            dataset = load_dataset(data)
        except (ValueError, OSError) as exc:
            raise BuposeError(f"--data {data}: {exc}") from None
        import copy

        gt: Any = copy.deepcopy(dataset.dataset)
        layout = layout or dataset.layout.name
        source = data
    else:
        gt = annotations
        layout = layout or detect_layout(annotations)
        source = str(annotations)
    bad = _file_name_ids(results)
    if bad is not None:
        raise BuposeError(
            f"{results}: result #{bad[0]}: 'image_id' {bad[1]!r} is a file name, not a ground-truth id; run "
            f"`bupose run --annotations GT.json ...` (or give the dataset itself as the input: "
            f"`bupose run ... {data or 'DATASET_SPEC'}`) so the results carry the dataset's ids"
        )
    try:
        metrics = evaluate(results, gt, layout=layout, engine=engine)
    except EvalError as exc:
        raise click.ClickException(str(exc)) from exc
    empty_gt = not gt.get("annotations") if isinstance(gt, dict) else _is_empty(str(gt), "annotations")
    for path, empty, what in (
        (results, _is_empty(results, None), "results"),
        (source, empty_gt, "ground-truth annotations"),
    ):
        if empty:
            click.echo(f"warning: {path}: holds no {what}; the metrics below say nothing about a model", err=True)
    click.echo(f"{results} against {source} ({layout}):")
    click.echo(format_table(metrics, layout))
    metrics_path, _ = _output_paths(output)
    if metrics_path:
        write_metrics(metrics_path, metrics)
        click.echo(f"metrics written to {metrics_path}")


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
    default=None,
    help="Keypoint layout / protocol: coco17, ochuman (COCO protocol) or crowdpose14 (CrowdPose E/M/H); "
    "default: the dataset's, else detected from the ground truth (14 keypoints: crowdpose14).",
)
@click.option("--output", "-o", "--out", "output",
              help="Folder for metrics.json (and results.json in model mode), or a .json file for the metrics.")
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
@click.option("--data", help="Dataset (COCO json, folder with annotations.json, coco:ROOT:SPLIT...): the ground "
              "truth for --results, or what model mode runs on.")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--device", default="auto", show_default=True, help="Model mode: " + DEVICE_HELP)
@click.option("--flip/--no-flip", default=None,
              help="Model mode: short for --option flip=true/false (heads with a flip test; default: the head's).")
@click.option("--scales", default=None,
              help="Model mode: short for --option scales=0.5,1,2 (heads with multi-scale testing).")
@click.option("--input-size", "input_size", type=click.IntRange(min=32), default=None,
              help="Model mode: short for --option input_size=N (default: the trained size stored in the weights, else the head's).")
@click.option("--amp", is_flag=True, default=None, help="Model mode: short for --option amp=true (autocast).")
@click.option("--max-images", "max_images", type=click.IntRange(min=1), default=None,
              help="Model mode: evaluate the first N images only.")
@click.option("--save-results", "save_results", type=click.Path(dir_okay=False), default=None,
              help="Model mode: where to write the COCO results JSON (default: OUTPUT/results.json with -o DIR).")
@click.option("--trust-checkpoint", "trust", is_flag=True, help="Allow arbitrary pickles in --weights.")
@click.option("--option", "pipeline_options", multiple=True, metavar="KEY=VALUE",
              help="Model mode: test-time option of the head (repeatable); `bupose run --head H --help` lists H's.")
def eval_command(
    results: str | None, annotations: str | None, layout: str | None, output: str | None, engine: str,
    head: str | None = None, backbone: str | None = None, weights: str | None = None, data: str | None = None,
    batch_size: int = 8, device: str = "auto", flip: bool | None = None, scales: str | None = None,
    input_size: int | None = None, amp: bool | None = None, max_images: int | None = None,
    save_results: str | None = None, trust: bool = False, pipeline_options: tuple[str, ...] = (),
) -> None:
    """Keypoint AP/AR (COCO / OCHuman / CrowdPose) of a results file, or of a model on a dataset."""
    if any(v is not None for v in (head, backbone, weights)) or (data is not None and results is None):
        if results or annotations:
            raise click.UsageError("give either --results/--annotations or --head/--backbone/--weights/--data")
        if weights is not None and data is not None and (head is None or backbone is None):
            head, backbone = _infer_names(weights, head, backbone, trust)
        given = {"--head": head, "--backbone": backbone, "--weights": weights, "--data": data}
        missing = [k for k, v in given.items() if v is None]
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
    if not results or not (annotations or data):
        raise click.UsageError("results mode needs --results and the ground truth: --annotations GT.json or --data DATASET_SPEC")
    if annotations and data:
        raise click.UsageError("give the ground truth once: --annotations GT.json or --data DATASET_SPEC")
    _results_mode(results, annotations, layout, output, engine, data=data)


def model_mode(
    *,
    head: str,
    backbone: str,
    weights: str,
    data: str,
    batch_size: int = 8,
    device: str = "auto",
    flip: bool | None = None,
    scales: str | None = None,
    input_size: int | None = None,
    amp: bool | None = None,
    max_images: int | None = None,
    save_results: str | None = None,
    output: str | None = None,
    engine: str = "auto",
    trust: bool = False,
    progress: bool = True,
    pipeline_options: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """``bupose eval`` model mode: run a model over a dataset, write results, print the metrics.

    ``pipeline_options`` are test-time options of the head (strings as typed or Python values, e.g.
    DEKR's ``match_hmp``), validated against the head's declared options; ``flip``, ``scales``,
    ``input_size`` and ``amp`` are their short forms (``None`` = the head's default). ``output`` is
    a folder (metrics.json, and results.json unless ``save_results`` says where) or a ``.json``
    metrics file; results are written only where one of them says."""
    import copy

    from ..data.dataset import load_dataset
    from ..engine.evaluation import predict_dataset, subset_annotations
    from ..eval import evaluate, format_table
    from ..eval.results import write_metrics
    from ..grouping import GroupingError
    from ..inference import load_model
    from ..options import OptionError
    from ..plugins import get_registry
    from ..weights import atomic_write
    from ._device import resolve_device
    from .run import head_options

    head_spec = get_registry().get("heads", head)
    aliases = {"flip": flip, "scales": scales, "amp": amp, "input_size": input_size}
    options, passthrough = head_options(head_spec, dict(pipeline_options or {}), aliases)
    if not os.path.isfile(weights):
        raise BuposeError(f"--weights {weights}: file not found")
    device, device_note = resolve_device(device)
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

    metrics_path, default_results = _output_paths(output)
    save_results = save_results or default_results
    if save_results:
        atomic_write(save_results, write)
    annotations = copy.deepcopy(subset_annotations(dataset, max_images))
    metrics = evaluate(results, annotations, layout=dataset.layout.name, engine=engine)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    where = f" -> {save_results}" if save_results else " (results not kept: -o DIR or --save-results FILE keeps them)"
    click.echo(f"{head} + {backbone} on {data} ({device_note}): {n} images, {len(results)} poses{where}")
    click.echo(format_table(metrics, dataset.layout.name))
    if metrics_path:
        write_metrics(metrics_path, metrics)
        click.echo(f"metrics written to {metrics_path}")
    return metrics
