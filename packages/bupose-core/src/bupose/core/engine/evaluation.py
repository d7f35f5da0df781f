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

__all__ = ["evaluate_model", "make_estimator", "predict_dataset", "subset_annotations"]


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
