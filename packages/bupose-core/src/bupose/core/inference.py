"""Inference: pipelines (prepare -> network -> decode) and ``load_model``.

A head names its pipeline class in ``HeadSpec.pipeline`` and the dataclass of its test-time options
in ``HeadSpec.options`` (the pipeline's ``options_class``). A pipeline is built as
``Pipeline(model, options)`` or ``Pipeline(model, **option_values)`` and turns RGB uint8 images
(H, W, 3) into one :class:`~bupose.core.poses.Poses` per image, in image pixels. Pipelines of heads
that hand keypoint candidates to a grouper also take ``grouper=`` (a registered name or a grouper;
default: the head's). :class:`Estimator` wraps a model and its pipeline behind ``predict(images)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from .grouping import Candidates, Grouper, check_candidates, resolve_grouper
from .model import PoseModel, build_model
from .options import OptionError, build_options, options_as_dict
from .plugins import Registry, get_registry
from .poses import Poses
from .specs import GrouperSpec, HeadSpec, WeightsSpec, import_object
from .weights import CheckpointError, detect_official, load_state_dict_strict, read_checkpoint

__all__ = [
    "Checkpoint", "Estimator", "GroupingPipeline", "Pipeline", "check_image", "load_backbone_weights", "load_model",
    "load_weights",
]  # fmt: skip


class Pipeline:
    """Base class of inference pipelines. Subclasses implement :meth:`predict_batch`.

    A subclass that sets ``options_class`` (a dataclass, see :mod:`bupose.core.options`) gets
    ``self.options``: an instance validated from ``options`` (an instance, or ``None`` for the
    defaults) updated with the keyword values; unknown keys and bad values raise
    :class:`~bupose.core.options.OptionError`. Without ``options_class``, ``self.options`` is the
    dict of keyword values.
    """

    options_class: ClassVar[type | None] = None

    def __init__(self, model: PoseModel, options: Any = None, /, **values: Any) -> None:
        self.model = model
        cls = self.options_class
        if cls is None:
            if options is not None:
                raise TypeError(f"{type(self).__name__} declares no options class; pass options as keywords")
            self.options: Any = dict(values)
            return
        if options is not None and not isinstance(options, cls):
            raise OptionError(
                f"{type(self).__name__}: options must be a {cls.__name__}, got {type(options).__name__}"
            )
        base = options_as_dict(options) if options is not None else {}
        self.options = build_options(cls, {**base, **values}, context=type(self).__name__, flag="option")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:  # pragma: no cover
        """Poses for each image of one batch (RGB uint8 arrays of any sizes)."""
        raise NotImplementedError


def check_image(img: Any, index: int) -> np.ndarray:
    """``img`` as a C-contiguous RGB uint8 (H, W, 3) array; one clear ValueError naming ``index`` else."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"image {index}: expected an RGB uint8 array of shape (H, W, 3), got "
            f"dtype {arr.dtype} shape {arr.shape}"
        )
    return np.ascontiguousarray(arr)


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
        arrays = [check_image(img, i) for i, img in enumerate(images)]
        self.model.eval()
        out: list[Poses] = []
        for start in range(0, len(arrays), max(1, batch_size)):
            out.extend(self.pipeline.predict_batch(arrays[start : start + max(1, batch_size)]))
        return out


class GroupingPipeline(Pipeline):
    """A pipeline that finds keypoint candidates and hands them to a grouper.

    ``grouper`` is a registered grouper name (checked against the head's ``candidate_fields``), a
    grouper object, or ``None`` for the head's default (``HeadSpec.grouper``).
    :meth:`group` runs it on one image's :class:`~bupose.core.grouping.Candidates`.
    """

    def __init__(
        self, model: PoseModel, options: Any = None, /, *, grouper: str | Grouper | None = None, **values: Any
    ) -> None:
        super().__init__(model, options, **values)
        self.grouper_spec: GrouperSpec | None = None
        if grouper is None or isinstance(grouper, str):
            resolved, self.grouper_spec = resolve_grouper(model.head_name, grouper, model.layout)
            if resolved is None:
                raise TypeError(f"head {model.head_name!r} declares no grouper, so {type(self).__name__} cannot group")
            self.grouper: Grouper = resolved
        else:
            self.grouper = grouper

    @property
    def grouper_name(self) -> str:
        """The registered name of the grouper in use (``"custom"`` for an object passed in)."""
        return self.grouper_spec.name if self.grouper_spec is not None else "custom"

    def group(self, candidates: Candidates) -> Poses:
        """People of one image from its candidates, by the grouper in use."""
        if self.grouper_spec is not None:
            check_candidates(candidates, self.grouper_spec.requires, self.grouper_spec.name)
        return self.grouper(candidates)


_UNSET: Any = object()


@dataclass
class Checkpoint:
    """A checkpoint file read once: its raw mapping, bupose metadata (``{}`` for other files) and,
    detected once on demand, the official format it is in."""

    path: str
    raw: dict[str, Any]
    meta: dict[str, Any]
    _official: Any = field(default=_UNSET, repr=False)

    @classmethod
    def read(cls, path: str | os.PathLike[str], *, trust: bool = False) -> Checkpoint:
        raw, meta = read_checkpoint(path, trust=trust)
        return cls(str(path), raw, meta)

    def official(self, registry: Registry | None = None) -> WeightsSpec | None:
        """The registered official model format the file is in (``None`` for bupose files / unknown)."""
        if self._official is _UNSET:
            self._official = None if self.meta else detect_official(self.raw, registry=registry, role="model")
        return self._official

    def layout(self, registry: Registry | None = None) -> str | None:
        """The layout the checkpoint was made for (bupose metadata or the detected official format)."""
        if self.meta.get("layout"):
            return str(self.meta["layout"])
        spec = self.official(registry)
        return spec.layout if spec is not None and spec.layout else None


def load_weights(
    model: PoseModel,
    weights: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    trust: bool = False,
    checkpoint: Checkpoint | tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Load a bupose (safetensors) or official checkpoint into ``model``, strictly.

    ``checkpoint`` is the file already read (a :class:`Checkpoint`, or ``read_checkpoint``'s pair).
    Returns the checkpoint's metadata (empty for official files).
    """
    if checkpoint is None:
        checkpoint = Checkpoint.read(weights, trust=trust)
    elif isinstance(checkpoint, tuple):
        checkpoint = Checkpoint(str(weights), *checkpoint)
    raw, meta = checkpoint.raw, checkpoint.meta
    if meta:
        own = model.metadata()
        _check_fits(checkpoint, own["head"], own["backbone"], own["layout"], str(weights), registry or get_registry())
        load_state_dict_strict(model, raw, str(weights))
        return meta
    spec = checkpoint.official(registry)
    if spec is None:
        if all(isinstance(v, torch.Tensor) for v in raw.values()) and any(
            k.startswith(("backbone.", "head.")) for k in raw
        ):
            load_state_dict_strict(model, raw, str(weights))
            return {}
        other = detect_official(raw, registry=registry, role=None)
        if other is not None and other.role != "model":
            raise CheckpointError(
                f"{weights}: this is the {other.role} file {other.name} ({other.summary or other.backbone}), "
                f"not a whole {model.head_name} model; use it as init weights for `bupose train`"
            )
        raise CheckpointError(
            f"{weights}: not a bupose checkpoint and not a known official key layout "
            f"(known: {', '.join(sorted((registry or get_registry()).names('weights'))) or 'none installed'})"
        )
    _check_official_fits(spec, model.metadata(), str(weights))
    converted = spec.load().convert(raw)
    load_state_dict_strict(model, converted, f"{weights} ({spec.name})")
    return {"official": spec.name}


def _width_of(backbone: str) -> str | None:
    """The channel width in a backbone name such as ``hrnet_w48`` (``None`` when it names none)."""
    m = re.search(r"_w(\d+)", backbone)
    return m.group(1) if m else None


def _width(backbone: str) -> str:
    w = _width_of(backbone)
    return f" (width {w})" if w else ""


def _check_fits(
    checkpoint: Checkpoint, head: str, backbone: str, layout: str | None, where: str, registry: Registry
) -> None:
    """What :func:`load_weights` checks, done on the names alone (no model built yet)."""
    wanted = {"head": head, "backbone": backbone, "layout": layout}
    if checkpoint.meta:
        for name in ("head", "backbone", "layout"):
            expected, actual = checkpoint.meta.get(name), wanted[name]
            if expected is not None and actual is not None and expected != actual:
                width = ""
                if name == "backbone" and _width_of(str(expected)) and _width_of(str(actual)):
                    width = f" (width {_width_of(str(expected))} vs {_width_of(str(actual))})"
                raise CheckpointError(
                    f"{where}: checkpoint is for {name} {expected!r}, but the model uses {actual!r}{width}: "
                    f"use --{name} {expected}"
                )
        return
    spec = checkpoint.official(registry)
    if spec is not None:
        _check_official_fits(spec, wanted, where)


def _check_official_fits(spec: WeightsSpec, meta: Mapping[str, Any], where: str) -> None:
    """One line naming what differs when an official file is not for the model's head/backbone/layout
    (``meta``: the model's names; ``None`` values are not checked)."""
    if spec.head and meta.get("head") and spec.head != meta["head"]:
        raise CheckpointError(
            f"{where}: this is an official {spec.head} checkpoint ({spec.name}); "
            f"the model was built with head {meta['head']!r}: use --head {spec.head}"
        )
    if spec.backbone and meta.get("backbone") and spec.backbone != meta["backbone"]:
        raise CheckpointError(
            f"{where}: this official checkpoint ({spec.name}) is for backbone {spec.backbone}{_width(spec.backbone)}, "
            f"but the model was built with --backbone {meta['backbone']}{_width(meta['backbone'])}: "
            f"use --backbone {spec.backbone}"
        )
    if spec.layout and meta.get("layout") and spec.layout != meta["layout"]:
        raise CheckpointError(
            f"{where}: this official checkpoint ({spec.name}) is for layout {spec.layout}, "
            f"but the model was built with --layout {meta['layout']}: use --layout {spec.layout} (or omit --layout)"
        )


def _backbone_spec(raw: Mapping[str, Any], backbone: str, registry: Registry) -> WeightsSpec | None:
    """The registered ``role="backbone"`` spec recognising ``raw``, one made for ``backbone`` first."""
    found: list[WeightsSpec] = []
    for spec in registry.components["weights"].values():
        assert isinstance(spec, WeightsSpec)
        if spec.role != "backbone":
            continue
        try:
            if spec.load().detect(raw):
                found.append(spec)
        except Exception:  # noqa: BLE001 - a broken converter must not hide the others
            continue
    found.sort(key=lambda s: s.backbone != backbone)
    return found[0] if found else None


def load_backbone_weights(
    model: PoseModel,
    weights: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    trust: bool = False,
) -> str:
    """Initialise only ``model.backbone`` from a checkpoint, strictly; the head is left as built.

    Accepted: a bupose checkpoint of any head on the same backbone (its ``backbone.*`` entries, e.g.
    a ``bupose train`` export), a registered official backbone file (``role="backbone"``, e.g. the
    ImageNet HRNets through bupose-hrnet's converters), a registered official model file of any
    head (converted, then its ``backbone.*`` entries: e.g. an official DEKR model), or a plain
    state_dict with ``backbone.*`` keys. Returns what the file was recognised as.
    """
    where = os.fspath(weights)
    checkpoint = Checkpoint.read(weights, trust=trust)
    raw, meta = checkpoint.raw, checkpoint.meta

    def backbone_part(sd: Mapping[str, Any], what: str) -> dict[str, torch.Tensor]:
        part = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
        if not part:
            raise CheckpointError(f"{where}: {what} has no backbone.* entries")
        return part

    if meta:
        expected = meta.get("backbone")
        if expected is not None and expected != model.backbone_name:
            raise CheckpointError(
                f"{where}: checkpoint is for backbone {expected!r}, but the model uses {model.backbone_name!r}"
            )
        load_state_dict_strict(model.backbone, backbone_part(raw, "the bupose checkpoint"), f"{where} (backbone)")
        return f"bupose checkpoint ({meta.get('head')} + {expected})"
    spec = _backbone_spec(raw, model.backbone_name, registry or get_registry())
    if spec is not None:
        load_state_dict_strict(model.backbone, spec.load().convert(raw), f"{where} ({spec.name})")
        return f"official backbone {spec.name}"
    spec = checkpoint.official(registry)
    if spec is not None:
        converted = spec.load().convert(raw)
        load_state_dict_strict(model.backbone, backbone_part(converted, spec.name), f"{where} ({spec.name}, backbone)")
        return f"backbone of official model {spec.name}"
    if all(isinstance(v, torch.Tensor) for v in raw.values()) and any(k.startswith("backbone.") for k in raw):
        load_state_dict_strict(model.backbone, backbone_part(raw, "the state_dict"), f"{where} (backbone)")
        return "state_dict backbone.* entries"
    raise CheckpointError(
        f"{where}: no backbone weights recognised (expected a bupose checkpoint, a registered official backbone "
        "or model file, or a state_dict with backbone.* keys)"
    )


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
    options: Any = None,
    grouper: str | None = None,
    checkpoint: Checkpoint | None = None,
    **pipeline_options: Any,
) -> Estimator:
    """Build ``head`` on ``backbone``, load ``weights`` (bupose or official), return an Estimator.

    A bupose-trained file rebuilds the model it was trained as: its stored head/backbone kwargs are
    used unless given here, and its training input size becomes the pipeline's default.

    The pipeline is built from ``options`` (an instance of the head's options dataclass) updated
    with ``pipeline_options`` (for example ``flip=True``, ``scales=(1.0,)``), validated against the
    head's declared options. ``grouper`` names a registered grouper for heads that group candidates
    (default: the head's). ``checkpoint`` is ``weights`` already read (:meth:`Checkpoint.read`).
    """
    registry = get_registry()
    spec = registry.get("heads", head)
    assert isinstance(spec, HeadSpec)
    if spec.pipeline is None:
        raise CheckpointError(f"head {head!r} declares no inference pipeline")
    if weights is not None and checkpoint is None:
        checkpoint = Checkpoint.read(weights, trust=trust)
    if checkpoint is not None:  # a file for another head/backbone/layout: say so before building anything
        _check_fits(checkpoint, head, backbone, layout, str(weights), registry)
    stored = checkpoint.meta.get("config") if checkpoint is not None else None
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
    pipeline_cls = import_object(spec.pipeline)
    declared = spec.load_options()
    if declared is not None and getattr(pipeline_cls, "options_class", None) is not declared:
        raise TypeError(f"head {head!r}: {spec.pipeline}.options_class is not {spec.options}")
    args = () if options is None else (options,)
    extra: dict[str, Any] = dict(pipeline_options)
    if spec.grouper is not None:
        extra["grouper"] = grouper
    elif grouper is not None:
        resolve_grouper(spec, grouper, model.layout, registry=registry)  # raises: the head takes none
    return Estimator(model, pipeline_cls(model, *args, **extra))
