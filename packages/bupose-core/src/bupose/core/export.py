"""ONNX export of a :class:`~bupose.core.model.PoseModel` and an onnxruntime stand-in for its network.

``export_onnx(model, "model.onnx")`` writes the network (backbone + head, every output field of the
head as one named ONNX output) with the model's metadata (head, backbone, layout, config) in the
file's ``metadata_props``, so the file alone rebuilds the same inference pipeline.
``load_onnx_model("model.onnx")`` returns a :class:`PoseModel` whose network runs in onnxruntime:
the head's own pipeline (resize, flip test, decoding) runs unchanged around it, so poses from the
ONNX file can be compared one to one with the torch path.

Deformable convolution exports as the standard ONNX ``DeformConv`` (opset 19), which onnxruntime runs
on the CPU. ``onnx`` and ``onnxruntime`` are optional (``pip install bupose-core[export]``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .inference import Estimator
from .model import PoseModel, build_model
from .weights import atomic_write

__all__ = [
    "DEFAULT_OPSET",
    "ExportCheck",
    "ExportError",
    "OnnxNetwork",
    "export_onnx",
    "load_onnx_estimator",
    "load_onnx_model",
    "OnnxPart",
    "onnx_providers",
    "onnx_run_target",
    "read_onnx_metadata",
]

DEFAULT_OPSET = 19
"""The lowest opset with ``DeformConv`` (DEKR's adaptive convolution)."""

_META_KEY = "bupose"
_PART_KEY = "bupose.part."


class ExportError(RuntimeError):
    """The model could not be exported, or the exported file does not reproduce the torch outputs."""


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"{module} is not installed; ONNX export/run needs `pip install bupose-core[export]` "
            "(onnx and onnxruntime)"
        ) from None


class _FieldsInOrder(nn.Module):
    """The model's output dict as a tuple in a fixed field order (ONNX outputs are positional)."""

    def __init__(self, model: PoseModel, fields: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.fields = tuple(fields)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(images)
        return tuple(out[f] for f in self.fields)


@dataclass(frozen=True)
class ExportCheck:
    """How closely onnxruntime reproduced the torch outputs on the export input."""

    max_abs_error: dict[str, float]
    max_abs_value: dict[str, float]

    @property
    def worst(self) -> float:
        return max(self.max_abs_error.values(), default=0.0)


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The bupose metadata stored in an exported file (head, backbone, layout, fields, config)."""
    onnx = _need("onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user error
        raise ExportError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if _META_KEY not in props:
        raise ExportError(f"{path}: an ONNX file without bupose metadata (not written by `bupose export`)")
    meta = json.loads(props[_META_KEY])
    for key in ("head", "backbone", "layout", "fields"):
        if key not in meta:
            raise ExportError(f"{path}: bupose metadata lacks {key!r}")
    return meta


def export_onnx(
    model: PoseModel,
    path: str | os.PathLike[str],
    *,
    input_hw: tuple[int, int] = (512, 512),
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    dynamic_size: bool = True,
    check: bool = True,
    batch: int = 1,
) -> ExportCheck | None:
    """Write ``model``'s network to ``path`` (atomically) as ONNX; with ``check`` compare onnxruntime's
    outputs with torch's on the export input and return the errors.

    ``input_hw`` is the example input's size (with ``dynamic_size`` other sizes run too; DEKR's inputs
    change with the aspect ratio). Raises :class:`ExportError` when export fails or onnxruntime
    disagrees with torch by more than 1e-3 of the output's magnitude.
    """
    onnx = _need("onnx")
    if opset < DEFAULT_OPSET:
        raise ExportError(f"--opset {opset}: bupose exports need opset >= {DEFAULT_OPSET} (DeformConv)")
    h, w = int(input_hw[0]), int(input_hw[1])
    if h <= 0 or w <= 0:
        raise ExportError(f"input size must be positive, got {input_hw}")
    was_training = model.training
    model = model.eval()
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    example = torch.randn(batch, 3, h, w, generator=generator).to(device)
    with torch.no_grad():
        reference = model(example)
    fields = sorted(reference)
    wrapper = _FieldsInOrder(model, fields).eval()
    axes: dict[str, dict[int, str]] = {}
    if dynamic_batch or dynamic_size:
        spatial = {2: "height", 3: "width"} if dynamic_size else {}
        axes["images"] = {**({0: "batch"} if dynamic_batch else {}), **spatial}
        for f in fields:
            dims = {**({0: "batch"} if dynamic_batch else {})}
            if dynamic_size and reference[f].dim() == 4:
                dims.update({2: f"{f}_height", 3: f"{f}_width"})
            axes[f] = dims
    meta = {
        **model.metadata(),
        "fields": fields,
        "input_hw": [h, w],
        "opset": opset,
        "dynamic_batch": dynamic_batch,
        "dynamic_size": dynamic_size,
    }

    part_inputs = {name: x.to(device) for name, x in model.head.export_parts().items()}
    meta["parts"] = sorted(part_inputs)

    def trace(module: nn.Module, args: tuple[Any, ...], target: Any, what: str, **kwargs: Any) -> None:
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # the tracer warns about every Python-level shape check; the check below is the proof
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: DeformConv needs it
                torch.onnx.export(module, args, target, opset_version=opset, dynamo=False, **kwargs)
        except Exception as exc:
            raise ExportError(f"ONNX export of {what} failed: {exc}") from exc

    def write(tmp: str) -> None:
        trace(wrapper, (example,), tmp, f"{model.head_name} + {model.backbone_name}",
              input_names=["images"], output_names=fields, dynamic_axes=axes or None)  # fmt: skip
        proto = onnx.load(tmp)
        entry = proto.metadata_props.add()
        entry.key = _META_KEY
        entry.value = json.dumps(meta)
        for name, x in part_inputs.items():  # decoding-time modules: their own graphs, in the same file
            buf = io.BytesIO()
            trace(getattr(model.head, name).eval(), (x,), buf, f"{model.head_name} part {name!r}",
                  input_names=["input"], output_names=["output"],
                  dynamic_axes={"input": {0: "n"}, "output": {0: "n"}})  # fmt: skip
            part = proto.metadata_props.add()
            part.key = _PART_KEY + name
            part.value = base64.b64encode(buf.getvalue()).decode("ascii")
        onnx.save(proto, tmp)

    try:
        out_path = atomic_write(path, write)
    finally:
        model.train(was_training)
    if not check:
        return None
    net = OnnxNetwork(out_path)
    got = net(example.cpu())
    errors = {f: float((got[f] - reference[f].float().cpu()).abs().max()) for f in fields}
    values = {f: float(reference[f].float().abs().max()) for f in fields}
    for name, x in part_inputs.items():
        with torch.no_grad():
            want = getattr(model.head, name).eval()(x).float().cpu()
        out = net.part(name)(x.cpu())
        errors[f"{name}.output"] = float((out - want).abs().max())
        values[f"{name}.output"] = float(want.abs().max())
    result = ExportCheck(errors, values)
    for f in errors:
        if errors[f] > 1e-3 * max(1.0, values[f]):
            out_path.unlink(missing_ok=True)
            raise ExportError(
                f"onnxruntime output {f!r} differs from torch by {errors[f]:.3g} (|values| up to "
                f"{values[f]:.3g}); the file was removed"
            )
    return result


class OnnxNetwork:
    """An exported network in an onnxruntime session: ``net(images) -> {field: tensor}``.

    ``device`` picks the execution provider: ``"cpu"`` runs on the CPU only; ``"cuda"`` /
    ``"cuda:N"`` needs onnxruntime's CUDA provider (``onnxruntime-gpu``) and raises
    :class:`ExportError` without it. ``providers`` (onnxruntime names) overrides ``device``.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, providers: Sequence[str] | None = None, device: str = "cpu"
    ) -> None:
        ort = _need("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{path}: ONNX file not found")
        self.metadata = read_onnx_metadata(self.path)
        chosen: list[Any] = list(providers) if providers else onnx_providers(device, ort.get_available_providers())
        self.session = ort.InferenceSession(str(self.path), providers=chosen)
        self.providers = tuple(self.session.get_providers())
        self.fields = tuple(self.metadata["fields"])
        self._chosen = chosen
        self._parts: dict[str, OnnxPart] = {}

    def part(self, name: str) -> OnnxPart:
        """The exported decoding-time module ``name`` (:meth:`~bupose.core.model.Head.export_parts`)."""
        if name not in self._parts:
            onnx = _need("onnx")
            proto = onnx.load(str(self.path), load_external_data=False)
            blobs = {p.key[len(_PART_KEY):]: p.value for p in proto.metadata_props if p.key.startswith(_PART_KEY)}
            if name not in blobs:
                raise ExportError(f"{self.path}: no exported part {name!r} (parts: {', '.join(blobs) or 'none'})")
            self._parts[name] = OnnxPart(base64.b64decode(blobs[name]), self._chosen)
        return self._parts[name]

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.detach().float().cpu().numpy()
        outs = self.session.run(list(self.fields), {"images": np.ascontiguousarray(x)})
        return {f: torch.from_numpy(np.asarray(o)).to(images.device) for f, o in zip(self.fields, outs)}


class OnnxPart(nn.Module):
    """A head's decoding-time module run by onnxruntime (one tensor in, one out), in the module's place."""

    def __init__(self, graph: bytes, providers: Sequence[Any]) -> None:
        super().__init__()
        ort = _need("onnxruntime")
        self.session = ort.InferenceSession(graph, providers=list(providers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(["output"], {"input": np.ascontiguousarray(x.detach().float().cpu().numpy())})[0]
        return torch.from_numpy(np.asarray(out)).to(x.device)


def onnx_providers(device: str, available: Sequence[str]) -> list[Any]:
    """onnxruntime execution providers for a torch-style ``device`` string (``cpu``, ``cuda``, ``cuda:N``,
    or ``auto``: CUDA when this onnxruntime has its provider, else the CPU)."""
    dev = str(device).strip().lower()
    if dev == "auto":
        dev = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    if dev == "cpu":
        return ["CPUExecutionProvider"]
    if dev == "cuda" or dev.startswith("cuda:"):
        if "CUDAExecutionProvider" not in available:
            raise ExportError(
                f"--device {device}: this onnxruntime has no CUDAExecutionProvider (available: "
                f"{', '.join(available)}); install onnxruntime-gpu or use --device cpu"
            )
        index = int(dev.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise ExportError(f"--device {device}: expected auto, cpu, cuda or cuda:N for the onnxruntime backend")


class _OnnxBackedModel(PoseModel):
    """A :class:`PoseModel` whose forward runs the exported network in onnxruntime."""

    network: OnnxNetwork

    def forward(self, images: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        x = images if isinstance(images, torch.Tensor) else images.images
        return self.network(x)


def load_onnx_model(
    path: str | os.PathLike[str], *, providers: Sequence[str] | None = None, device: str = "cpu"
) -> PoseModel:
    """A :class:`PoseModel` built from an exported file's metadata whose network runs in onnxruntime.

    The torch modules are built (randomly initialised, never run) only so that the head's pipeline finds
    the attributes it reads (strides, layout, the trained input size).
    """
    network = OnnxNetwork(path, providers=providers, device=device)
    meta = network.metadata
    config: Mapping[str, Any] = meta.get("config") or {}
    skeleton = build_model(
        meta["head"], meta["backbone"], meta["layout"],
        head_kwargs=config.get("head_kwargs"), backbone_kwargs=config.get("backbone_kwargs"),
    )  # fmt: skip
    model = _OnnxBackedModel(
        skeleton.backbone, skeleton.head, head_name=skeleton.head_name, backbone_name=skeleton.backbone_name,
        layout=skeleton.layout, config=dict(config),
    )  # fmt: skip
    model.network = network
    for name in meta.get("parts", []):
        setattr(model.head, name, network.part(name))
    return model.eval()


def load_onnx_estimator(
    path: str | os.PathLike[str],
    *,
    providers: Sequence[str] | None = None,
    device: str = "cpu",
    options: Any = None,
    grouper: str | None = None,
    **pipeline_options: Any,
) -> Estimator:
    """An :class:`~bupose.core.inference.Estimator` running the exported network in onnxruntime inside
    the head's own pipeline: the same preparation, test-time augmentation, decoding and grouping as the
    torch path. ``options`` (the head's options dataclass), ``grouper`` and ``pipeline_options`` are as
    for :func:`~bupose.core.inference.load_model`; ``device`` chooses the execution provider
    (:func:`onnx_providers`)."""
    from .grouping import resolve_grouper
    from .plugins import get_registry
    from .specs import HeadSpec, import_object

    registry = get_registry()
    meta = read_onnx_metadata(path)
    spec = registry.get("heads", meta["head"])
    assert isinstance(spec, HeadSpec)
    if spec.pipeline is None:
        raise ExportError(f"head {meta['head']!r} declares no inference pipeline")
    model = load_onnx_model(path, providers=providers, device=device)
    extra: dict[str, Any] = dict(pipeline_options)
    if spec.grouper is not None:
        extra["grouper"] = grouper
    elif grouper is not None:
        resolve_grouper(spec, grouper, model.layout, registry=registry)  # raises: the head takes none
    args = () if options is None else (options,)
    return Estimator(model, import_object(spec.pipeline)(model, *args, **extra))


def onnx_run_target(
    path: str | os.PathLike[str], head: str | None = None, backbone: str | None = None, layout: str | None = None
) -> tuple[str, str, str]:
    """``(head, backbone, layout)`` an exported file was made for; raises :class:`ExportError` when a
    given ``head``/``backbone``/``layout`` disagrees with the file (they are optional with ONNX)."""
    meta = read_onnx_metadata(path)
    for name, given in (("head", head), ("backbone", backbone), ("layout", layout)):
        if given is not None and given != meta[name]:
            raise ExportError(f"--{name} {given}: {path} was exported for {name} {meta[name]!r}")
    return str(meta["head"]), str(meta["backbone"]), str(meta["layout"])
