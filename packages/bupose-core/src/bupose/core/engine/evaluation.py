"""Model evaluation over a dataset: batched inference through the head's pipeline + core metrics."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

from ..inference import Estimator
from ..model import PoseModel
from ..plugins import Registry, get_registry
from ..specs import HeadSpec, import_object

__all__ = ["evaluate_model", "make_estimator", "model_mode", "predict_dataset", "subset_annotations"]


def make_estimator(
    model: PoseModel, pipeline_kwargs: Mapping[str, Any] | None = None, *, registry: Registry | None = None
) -> Estimator:
    """An :class:`~bupose.core.inference.Estimator` with the head's own inference pipeline."""
    spec = (registry or get_registry()).get("heads", model.head_name)
    assert isinstance(spec, HeadSpec)
    if spec.pipeline is None:
        raise ValueError(f"head {model.head_name!r} declares no inference pipeline, so it cannot be evaluated")
    return Estimator(model, import_object(spec.pipeline)(model, **dict(pipeline_kwargs or {})))


def predict_dataset(
    estimator: Estimator,
    dataset: Any,
    *,
    batch_size: int = 8,
    max_images: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """COCO results entries for the first ``max_images`` images of ``dataset`` (all by default).

    ``dataset`` is a :class:`bupose.core.data.KeypointDataset` (``image_ids``, ``load_image``).
    """
    from tqdm.auto import tqdm

    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    results: list[dict[str, Any]] = []
    bar = tqdm(total=n, desc="eval", unit="img", disable=not progress, dynamic_ncols=True, leave=False)
    for start in range(0, n, max(1, batch_size)):
        idx = list(range(start, min(n, start + batch_size)))
        images = [dataset.load_image(i) for i in idx]
        poses = estimator.predict(images, batch_size=batch_size)
        for i, p in zip(idx, poses, strict=True):
            results.extend(p.to_coco(int(dataset.image_ids[i])))
        bar.update(len(idx))
    bar.close()
    return results


def subset_annotations(dataset: Any, max_images: int | None) -> dict[str, Any]:
    """The dataset's COCO dict restricted to its first ``max_images`` images."""
    data = dataset.dataset
    if max_images is None or max_images >= len(dataset):
        return data
    keep = {int(i) for i in dataset.image_ids[:max_images]}
    out = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    out["images"] = [img for img in data["images"] if int(img["id"]) in keep]
    out["annotations"] = [a for a in data["annotations"] if int(a["image_id"]) in keep]
    return out


@torch.inference_mode()
def evaluate_model(
    model: PoseModel,
    dataset: Any,
    *,
    pipeline_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 8,
    max_images: int | None = None,
    progress: bool = True,
    registry: Registry | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """(COCO results, metrics) of ``model`` on ``dataset`` with the dataset layout's protocol."""
    from ..eval import evaluate

    was_training = model.training
    model.eval()
    try:
        estimator = make_estimator(model, pipeline_kwargs, registry=registry)
        results = predict_dataset(
            estimator, dataset, batch_size=batch_size, max_images=max_images, progress=progress
        )
    finally:
        model.train(was_training)
    annotations = copy.deepcopy(subset_annotations(dataset, max_images))
    metrics = evaluate(results, annotations, layout=dataset.layout.name)
    return results, {k: float(v) for k, v in metrics.items()}


def _parse_scales(scales: str) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in scales.split(",") if s.strip())
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"--scales {scales!r}: expected positive numbers separated by commas, e.g. 0.5,1,2")
    return values


def model_mode(
    *,
    head: str,
    backbone: str,
    weights: str,
    data: str,
    batch_size: int = 8,
    device: str = "cpu",
    flip: bool = True,
    scales: str = "1",
    input_size: int | None = None,
    amp: bool = False,
    max_images: int | None = None,
    save_results: str = "results.json",
    output: str | None = None,
    engine: str = "auto",
    trust: bool = False,
    progress: bool = True,
    pipeline_options: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """``bupose eval`` model mode: run a model over a dataset, write results, print the metrics.

    ``pipeline_options`` are extra test-time options of the head's pipeline/decoder (e.g. DEKR's
    ``match_hmp``)."""
    import json
    import os

    import click

    from ..cli import BuposeError
    from ..data.dataset import load_dataset
    from ..eval import evaluate, format_table
    from ..eval.cli import write_metrics
    from ..inference import load_model
    from ..weights import atomic_write

    if not os.path.isfile(weights):
        raise BuposeError(f"--weights {weights}: file not found")
    try:
        dataset = load_dataset(data)
        scale_tuple = _parse_scales(scales)
    except (ValueError, OSError) as exc:
        raise BuposeError(f"--data {data}: {exc}" if "scales" not in str(exc) else str(exc)) from None
    options: dict[str, Any] = {"flip": flip, "scales": scale_tuple, "amp": amp}
    if input_size is not None:
        options["input_size"] = input_size
    options.update(pipeline_options or {})
    try:
        estimator = load_model(
            head, backbone, weights, layout=dataset.layout.name, device=device, trust=trust, **options
        )
    except TypeError as exc:
        if not pipeline_options:
            raise
        raise BuposeError(
            f"--option {', '.join(sorted(pipeline_options))}: not accepted by head {head!r}: {exc}"
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
