"""Inference: pipelines (prepare -> network -> decode) and ``load_model``.

A head names its pipeline class in ``HeadSpec.pipeline``. A pipeline is built as
``Pipeline(model, **options)`` and turns RGB uint8 images (H, W, 3) into one
:class:`~bupose.core.poses.Poses` per image, in image pixels. :class:`Estimator` wraps a model and
its pipeline behind ``predict(images)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .model import PoseModel, build_model
from .plugins import Registry, get_registry
from .poses import Poses
from .specs import HeadSpec, import_object
from .weights import CheckpointError, detect_official, load_state_dict_strict, read_checkpoint

__all__ = ["Estimator", "Pipeline", "load_model"]

class Pipeline:
    """Base class of inference pipelines. Subclasses implement :meth:`predict_batch`."""

    def __init__(self, model: PoseModel, **options: Any) -> None:
        self.model = model
        self.options = options

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:  # pragma: no cover
        """Poses for each image of one batch (RGB uint8 arrays of any sizes)."""
        raise NotImplementedError


def _check_image(img: Any, index: int) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"image {index}: expected an RGB uint8 array of shape (H, W, 3), got "
            f"dtype {arr.dtype} shape {arr.shape}"
        )
    return arr


class Estimator:
    """A ready-to-use pose estimator: ``Estimator.predict(images) -> list[Poses]``."""

    def __init__(self, model: PoseModel, pipeline: Pipeline) -> None:
        self.model = model
        self.pipeline = pipeline

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray] | np.ndarray, batch_size: int = 1) -> list[Poses]:
        """Poses for each RGB uint8 image; results do not depend on ``batch_size``."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        arrays = [_check_image(img, i) for i, img in enumerate(images)]
        self.model.eval()
        out: list[Poses] = []
        for start in range(0, len(arrays), max(1, batch_size)):
            out.extend(self.pipeline.predict_batch(arrays[start : start + max(1, batch_size)]))
        return out


def load_weights(
    model: PoseModel,
    weights: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    trust: bool = False,
    checkpoint: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Load a bupose (safetensors) or official checkpoint into ``model``, strictly.

    ``checkpoint`` is ``read_checkpoint(weights)``'s result when the caller already read the file.
    Returns the checkpoint's metadata (empty for official files).
    """
    raw, meta = checkpoint if checkpoint is not None else read_checkpoint(weights, trust=trust)
    if meta:
        for field in ("head", "backbone", "layout"):
            expected = meta.get(field)
            actual = model.metadata()[field]
            if expected is not None and expected != actual:
                raise CheckpointError(
                    f"{weights}: checkpoint is for {field} {expected!r}, but the model uses {actual!r}"
                )
        load_state_dict_strict(model, raw, str(weights))
        return meta
    spec = detect_official(raw, registry=registry, role="model")
    if spec is None:
        if all(isinstance(v, torch.Tensor) for v in raw.values()) and any(
            k.startswith(("backbone.", "head.")) for k in raw
        ):
            load_state_dict_strict(model, raw, str(weights))
            return {}
        raise CheckpointError(
            f"{weights}: not a bupose checkpoint and not a known official key layout "
            f"(known: {', '.join(sorted((registry or get_registry()).names('weights'))) or 'none installed'})"
        )
    if spec.head != model.head_name:
        raise CheckpointError(
            f"{weights}: this is an official {spec.head} checkpoint ({spec.name}); "
            f"the model was built with head {model.head_name!r}"
        )
    converted = spec.load().convert(raw)
    load_state_dict_strict(model, converted, f"{weights} ({spec.name})")
    return {"official": spec.name}


def load_model(
    head: str,
    backbone: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    layout: str | None = None,
    device: str | torch.device = "cpu",
    head_kwargs: Mapping[str, Any] | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
    trust: bool = False,
    **pipeline_options: Any,
) -> Estimator:
    """Build ``head`` on ``backbone``, load ``weights`` (bupose or official), return an Estimator.

    A bupose-trained file rebuilds the model it was trained as: its stored head/backbone kwargs are
    used unless given here, and its training input size becomes the pipeline's default.

    ``pipeline_options`` go to the head's pipeline (for example ``flip=True``, ``scales=(1.0,)``).
    """
    registry = get_registry()
    checkpoint = read_checkpoint(weights, trust=trust) if weights is not None else None
    stored = checkpoint[1].get("config") if checkpoint is not None else None
    trained = dict(stored) if isinstance(stored, Mapping) else {}  # a bupose-trained file's model config
    if head_kwargs is None:
        head_kwargs = trained.get("head_kwargs")
    if backbone_kwargs is None:
        backbone_kwargs = trained.get("backbone_kwargs")
    model = build_model(
        head, backbone, layout, head_kwargs=head_kwargs, backbone_kwargs=backbone_kwargs, registry=registry
    )
    if weights is not None:
        load_weights(model, weights, registry=registry, trust=trust, checkpoint=checkpoint)
        if "input_size" in trained:  # the input size a bupose-trained model was trained at
            model.config.setdefault("input_size", trained["input_size"])
    model.to(device).eval()
    spec = registry.get("heads", head)
    assert isinstance(spec, HeadSpec)
    if spec.pipeline is None:
        raise CheckpointError(f"head {head!r} declares no inference pipeline")
    pipeline_cls = import_object(spec.pipeline)
    return Estimator(model, pipeline_cls(model, **pipeline_options))
