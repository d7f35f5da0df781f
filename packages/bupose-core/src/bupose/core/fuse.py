"""Inference-time model optimisation: BatchNorm folded into the convolution before it, once.

In eval mode a BatchNorm is the per-channel affine map ``y = (x - mean) / sqrt(var + eps) * gamma +
beta``; when its input is the output of a convolution used by nothing else, the map can be folded
into that convolution's weight and bias (``W' = W * s``, ``b' = (b - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``) and the BatchNorm dropped: the same function, one pass over memory
fewer per pair. The folding is computed in float64 and stored in the convolution's dtype.

Which pairs fold is found by running the model once on an example input and watching every tensor
operation (a :class:`~torch.overrides.TorchFunctionMode`): a ``Conv{1,2,3}d`` whose output tensor is
consumed by exactly one BatchNorm (``nn.BatchNorm*`` in eval mode, or a ``FrozenBatchNorm2d``) and
by no other operation, each module called once, and that tensor not among the model's outputs. No
module code needs to declare anything, and a conv whose output is also used elsewhere (a residual
read before the BatchNorm, a feature map returned) is left alone.

:func:`optimize_for_inference` returns an optimised deep copy (the given model is not touched);
:class:`InferenceSnapshot` keeps such a copy for a pipeline and rebuilds it when the model's
parameters or buffers change (training steps, ``load_state_dict``, ``.to()``), and uses the model
itself while it is in training mode (batch statistics cannot be folded).
"""

from __future__ import annotations

import copy
import pickle
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "InferenceSnapshot",
    "PointwiseConv2d",
    "fold_batchnorm",
    "foldable_pairs",
    "optimize_for_inference",
    "use_pointwise_convs",
    "parameter_fingerprint",
]

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _is_batchnorm(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.track_running_stats and module.running_mean is not None
    # Frozen BatchNorm (torchvision/detectron2 style): fixed statistics and affine buffers.
    return type(module).__name__.startswith("FrozenBatchNorm") and all(
        isinstance(getattr(module, n, None), torch.Tensor) for n in ("weight", "bias", "running_mean", "running_var")
    )


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


class _Watch(TorchFunctionMode):
    """Counts, per tensor, the operations that read it and produce a tensor, with the module they ran in."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.uses: dict[int, list[str]] = {}
        self.alive: list[torch.Tensor] = []  # every tensor seen stays alive, so ids are never reused

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if any(True for _ in _tensors(out)):  # metadata queries (shape, dtype, dim) are not uses
            where = self.stack[-1] if self.stack else ""
            for t in _tensors((args, kwargs)):
                self.uses.setdefault(id(t), []).append(where)
                self.alive.append(t)
            self.alive.extend(_tensors(out))
        return out


def foldable_pairs(model: nn.Module, *example_args: Any, **example_kwargs: Any) -> list[tuple[str, str]]:
    """The ``(conv name, batchnorm name)`` pairs of ``model`` that can be folded, found by running
    ``model(*example_args, **example_kwargs)`` once (without gradients)."""
    names = {m: n for n, m in model.named_modules()}
    stack: list[str] = []
    calls: Counter[str] = Counter()
    conv_out: dict[str, torch.Tensor] = {}  # also keeps every conv output alive, so ids stay unique
    bn_in: dict[str, torch.Tensor] = {}
    handles = []

    def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        name = names[module]
        stack.append(name)
        calls[name] += 1
        if _is_batchnorm(module) and args and isinstance(args[0], torch.Tensor):
            bn_in[name] = args[0]

    def post(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        name = stack.pop()
        if isinstance(module, _CONV_TYPES) and isinstance(output, torch.Tensor):
            conv_out[name] = output

    for module in names:
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    watch = _Watch(stack)
    try:
        with torch.no_grad(), watch:
            outputs = model(*example_args, **example_kwargs)
    finally:
        for h in handles:
            h.remove()
    returned = {id(t) for t in _tensors(outputs)}
    by_id = {id(t): name for name, t in conv_out.items()}
    pairs = []
    for bn, t in bn_in.items():
        conv = by_id.get(id(t))
        if conv is None or calls[conv] != 1 or calls[bn] != 1 or id(t) in returned:
            continue
        if set(watch.uses.get(id(t), [])) == {bn}:
            pairs.append((conv, bn))
    return pairs


def _fold_into(conv: nn.Module, bn: nn.Module) -> None:
    w = conv.weight
    with torch.no_grad():
        mean = bn.running_mean.double()
        var = bn.running_var.double()
        gamma = bn.weight.double() if getattr(bn, "weight", None) is not None else torch.ones_like(mean)
        beta = bn.bias.double() if getattr(bn, "bias", None) is not None else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + float(bn.eps))
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
        shape = (-1,) + (1,) * (w.dim() - 1)
        new_w = (w.double() * scale.view(shape)).to(w.dtype)
        new_b = ((bias - mean) * scale + beta).to(w.dtype)
    conv.weight = nn.Parameter(new_w, requires_grad=w.requires_grad)
    conv.bias = nn.Parameter(new_b, requires_grad=w.requires_grad)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1, stride-1, ungrouped ``nn.Conv2d`` that runs oneDNN's convolution on CPU float32 input.

    PyTorch sends 1x1 convolutions to its plain im2col/GEMM kernel whenever it runs one thread (its
    heuristic: oneDNN is faster only multi-threaded); on channels-last maps oneDNN is ~2.4x faster
    one-threaded too (HRNet-W32's 480->255 1x1 at 128x176, batch 2: 155 -> 66 ms). Same function
    (summation order only); other inputs take ``nn.Conv2d``'s path.
    """

    @staticmethod
    def applies(module: nn.Module) -> bool:
        return (
            type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.stride == (1, 1)
            and module.padding == (0, 0) and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros"
        )  # fmt: skip

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if (
            input.device.type == "cpu" and input.dtype == torch.float32 and input.dim() == 4
            and self.weight.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()
            and not (torch.is_grad_enabled() and (input.requires_grad or self.weight.requires_grad))
        ):  # fmt: skip
            return torch.mkldnn_convolution(input, self.weight, self.bias, (0, 0), (1, 1), (1, 1), 1)
        return super().forward(input)


def use_pointwise_convs(model: nn.Module) -> int:
    """Turn every plain 1x1 ``nn.Conv2d`` of ``model`` into a :class:`PointwiseConv2d`, in place
    (same parameters and state_dict); returns how many."""
    count = 0
    for module in model.modules():
        if PointwiseConv2d.applies(module):
            module.__class__ = PointwiseConv2d
            count += 1
    return count


def _set_submodule(model: nn.Module, name: str, value: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, value)


def fold_batchnorm(model: nn.Module, *example_args: Any, **example_kwargs: Any) -> int:
    """Fold every foldable BatchNorm of ``model`` (in eval mode) into its convolution, in place.

    The pairs are found with :func:`foldable_pairs` on the example input; each folded BatchNorm is
    replaced by ``nn.Identity``. Returns how many were folded. Raises ``ValueError`` when ``model``
    is in training mode (BatchNorm then uses batch statistics, which cannot be folded).
    """
    if model.training:
        raise ValueError("fold_batchnorm: the model is in training mode; call model.eval() first")
    pairs = foldable_pairs(model, *example_args, **example_kwargs)
    for conv, bn in pairs:
        _fold_into(model.get_submodule(conv), model.get_submodule(bn))
        _set_submodule(model, bn, nn.Identity())
    return len(pairs)


def _max_rel_error(a: Any, b: Any) -> float:
    worst = 0.0
    for x, y in zip(_tensors(a), _tensors(b)):
        if x.shape != y.shape:
            return float("inf")
        if x.is_floating_point() and x.numel():
            scale = float(y.abs().max()) or 1.0
            worst = max(worst, float((x.double() - y.double()).abs().max()) / scale)
        elif not torch.equal(x, y):
            return float("inf")
    return worst


def optimize_for_inference(
    model: nn.Module,
    *example_args: Any,
    channels_last: bool = False,
    verify: float | None = 1e-4,
    **example_kwargs: Any,
) -> nn.Module:
    """An eval-mode deep copy of ``model`` with its BatchNorms folded (``model`` is not changed).

    ``channels_last`` also converts the copy's 4-d weights to ``torch.channels_last`` and its plain
    1x1 convolutions to :class:`PointwiseConv2d`.
    ``verify``: the copy's outputs on the example input must match the model's within this error
    relative to each output's largest magnitude; otherwise a ``RuntimeWarning`` is issued and the
    unfolded copy is returned. ``None`` skips the check.
    """
    fused = copy.deepcopy(model).eval()
    count = fold_batchnorm(fused, *example_args, **example_kwargs)
    if channels_last:
        count += use_pointwise_convs(fused)
    if verify is not None and count:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                ref = model(*example_args, **example_kwargs)
                got = fused(*example_args, **example_kwargs)
        finally:
            model.train(was_training)
        err = _max_rel_error(got, ref)
        if not err <= verify:
            warnings.warn(
                f"optimize_for_inference: folding BatchNorms / oneDNN 1x1 convolutions ({count} changes) changed "
                f"the outputs by {err:.2e} (relative, allowed {verify:.0e}); using the model without them",
                RuntimeWarning,
                stacklevel=2,
            )
            fused = copy.deepcopy(model).eval()
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused


def parameter_fingerprint(model: nn.Module) -> tuple[Any, ...]:
    """Changes whenever a parameter or buffer of ``model`` is replaced, moved or modified in place."""
    items = []
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        try:
            version = t._version
        except RuntimeError:  # inference tensors have no version counter
            version = -1
        items.append((name, id(t), version, t.data_ptr(), t.dtype, t.device))
    return tuple(items)


class InferenceSnapshot:
    """A pipeline's optimised copy of its model, kept up to date.

    ``snapshot.module()`` is the model itself while it is in training mode or when ``enabled`` is
    false; otherwise :func:`optimize_for_inference` of it, built on first use and rebuilt whenever
    :func:`parameter_fingerprint` of the model changes. ``example`` returns the example inputs (a
    tuple of positional arguments) the folding probe runs on; keep it small.
    """

    def __init__(
        self,
        model: nn.Module,
        example: Callable[[], tuple[Any, ...]],
        *,
        enabled: bool = True,
        channels_last: bool = False,
    ) -> None:
        self.model = model
        self.example = example
        self.enabled = enabled
        self.channels_last = channels_last
        self._fused: nn.Module | None = None
        self._fingerprint: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self.builds = 0
        """How many optimised copies were built so far."""

    def module(self) -> nn.Module:
        """The module to run for inference now."""
        if not self.enabled or self.model.training:
            return self.model
        with self._lock:
            fp = parameter_fingerprint(self.model)
            if self._fused is None or fp != self._fingerprint:
                try:
                    with torch.inference_mode(False):
                        self._fused = optimize_for_inference(
                            self.model, *self.example(), channels_last=self.channels_last
                        )
                except (TypeError, copy.Error, pickle.PicklingError):
                    # a model that cannot be copied (e.g. one wrapping an onnxruntime session) runs as given
                    self.enabled = False
                    return self.model
                self._fingerprint = fp
                self.builds += 1
            return self._fused
