"""DEKR inference pipeline: resize/warp, network (plain + flipped in one call), decode.

``DEKRPipeline(model).predict_batch(images)`` turns RGB uint8 images of any sizes into one
:class:`~bupose.core.poses.Poses` per image, in image pixels, with the official test-time
behaviour (flip test with the 3-px shift, multi-scale, pose NMS, optional rescoring).

Batching is real: per scale, the warped images that share a network-input size go through the
network together, plain and flipped concatenated along the batch. DEKR's input size depends on
the aspect ratio (short side fixed, long side a multiple of 64), so a batch holds a few distinct
sizes. ``batch_mode="group"`` (default) runs one call per distinct size, which gives results
identical to batch size 1. ``batch_mode="pad"`` pads every image of the batch to the largest size
and crops the outputs back: one call per scale, but the network sees the padding, so poses near
the image border can move slightly compared with batch size 1.

Speed (``optimize=True``, the default): the network runs as an inference copy of the model made once
by :class:`bupose.core.fuse.InferenceSnapshot` (every BatchNorm folded into its convolution, weights
and inputs in ``channels_last``; rebuilt if the model's weights change, the model itself while it is
training); the head runs its per-joint offset branches as it always does. The first pipeline that
would use the slow pure-PyTorch ``deform_conv2d`` says so once (a ``RuntimeWarning`` naming the fix).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from bupose.core import ops
from bupose.core.algorithms.tta import flip_input
from bupose.core.amp import autocast
from bupose.core.benchmark import Stopwatch, stage
from bupose.core.fuse import InferenceSnapshot
from bupose.core.inference import Pipeline, check_image
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .codec import DEKRCodec
from .decode import ScaleOutput
from .options import DEKROptions
from .preprocess import WarpMeta, multi_scale_size, normalize_images, warp_image

__all__ = ["DEKRPipeline", "default_input_size", "flip_shift", "load_rescore_net"]

FLIP_SHIFT = 3
"""Columns the official flip test shifts the flipped input to the left."""


def default_input_size(model: PoseModel) -> int:
    """The official test input size for a model: ``model.config['input_size']`` when set,
    640 for HRNet-W48, else 512."""
    size = model.config.get("input_size") if isinstance(model.config, dict) else None
    if size is not None:
        return int(size)
    return 640 if "w48" in str(model.backbone_name) else 512


def flip_shift(x: torch.Tensor, shift: int = FLIP_SHIFT) -> torch.Tensor:
    """The official flip-test input: :func:`~bupose.core.algorithms.tta.flip_input` with DEKR's
    3-px shift (columns ``[0, W-3)`` take the flipped ``[3, W)``)."""
    return flip_input(x, shift)


def load_rescore_net(path: str | os.PathLike[str], layout: str, *, trust: bool = False) -> torch.nn.Module:
    """Build the rescoring net from an official (or converted) rescore file, strictly.

    The file is recognised through the registered rescore :class:`~bupose.core.specs.WeightsSpec`
    converters; its layout must be ``layout``.
    """
    from bupose.core.weights import CheckpointError, detect_official, read_checkpoint

    raw, _meta = read_checkpoint(path, trust=trust)
    spec = detect_official(raw, role="rescore")
    if spec is None:
        raise CheckpointError(
            f"{path}: not a known rescoring-net file (expected the 6 keys l1/l2/l3.weight/bias of "
            "PredictOKSNet with 74 (COCO) or 59 (CrowdPose) input features)"
        )
    if spec.layout and spec.layout != layout:
        raise CheckpointError(f"{path}: rescoring net for layout {spec.layout!r}, but the model uses {layout!r}")
    converter = spec.load()
    net = converter.build(converter.convert(raw))
    return net.eval()


def _pad_black(xs: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Concatenate normalised (1, 3, h, w) inputs top-left aligned on black (uint8 0) canvases."""
    ref = xs[0]
    black = normalize_images([np.zeros((1, 1, 3), np.uint8)], ref.device).view(1, 3, 1, 1)
    out = black.expand(len(xs), 3, size[0], size[1]).clone()
    for k, t in enumerate(xs):
        out[k, :, : t.shape[2], : t.shape[3]] = t[0]
    return out


class DEKRPipeline(Pipeline):
    """DEKR test pipeline.

    Built as ``DEKRPipeline(model, options)`` with a :class:`~bupose.dekr.options.DEKROptions`, or
    with its fields as keywords (``DEKRPipeline(model, flip=False, scales=(0.5, 1, 2))``); see
    that class for every option and its official default. The decoder comes from the head's codec
    (:class:`~bupose.dekr.codec.DEKRCodec`): one object owns encoding and decoding.

    Args:
        model: a DEKR :class:`PoseModel` (outputs ``heatmap`` and ``offset``).
        options: the test-time options (defaults when ``None``), updated with ``values``.
        rescore_net: a module mapping (N, F) pose features to (N, 1) predicted OKS (instead of the
            ``rescore_weights`` option).
        trust: allow arbitrary pickles in the ``rescore_weights`` file.
        optimize: run an inference copy of the model (BatchNorms folded, ``channels_last``) instead
            of the model itself; ``False`` runs ``model`` as given (the same poses, slower).
    """

    options_class = DEKROptions

    def __init__(
        self,
        model: PoseModel,
        options: DEKROptions | None = None,
        /,
        *,
        rescore_net: Callable[[torch.Tensor], torch.Tensor] | None = None,
        trust: bool = False,
        optimize: bool = True,
        **values: Any,
    ) -> None:
        super().__init__(model, options, **values)
        opts: DEKROptions = self.options
        self.flip = bool(opts.flip)
        self.scales = tuple(sorted((float(s) for s in opts.scales), reverse=True))
        self.batch_mode = opts.batch_mode
        self.input_size = int(opts.input_size) if opts.input_size is not None else default_input_size(model)
        self.amp = bool(opts.amp)
        divisibility = int(getattr(model.backbone, "size_divisibility", 1) or 1)
        self.size_multiple = math.lcm(int(opts.size_multiple), divisibility)
        """Input sides are multiples of this: the official 64 combined with the backbone's rule."""
        stride = int(getattr(model.head, "stride", 4))
        base = (self.input_size + self.size_multiple - 1) // self.size_multiple * self.size_multiple
        self.codec = DEKRCodec(
            model.layout, math.lcm(base, stride), stride=stride, decode_options=opts.decode_options()
        )
        self.decoder = self.codec.decoder
        if rescore_net is not None and opts.rescore_weights is not None:
            raise ValueError("DEKRPipeline: give rescore_net or rescore_weights, not both")
        if opts.rescore_weights is not None:
            rescore_net = load_rescore_net(opts.rescore_weights, model.layout.name, trust=trust)
        if isinstance(rescore_net, torch.nn.Module):
            rescore_net = rescore_net.to(self.device).eval()
        self.rescore_net = rescore_net
        self.optimize = bool(optimize)
        self._snapshot = InferenceSnapshot(model, self._probe_input, enabled=self.optimize, channels_last=True)
        ops.warn_if_reference("deform_conv2d", self.device)

    def _probe_input(self) -> tuple[torch.Tensor]:
        """A small input the inference copy is checked on (one image, a multiple of the input rule)."""
        side = self.size_multiple
        g = torch.Generator().manual_seed(0)
        return (torch.randn(1, 3, side, side, generator=g).to(self.device),)

    def network_module(self) -> torch.nn.Module:
        """The module the network runs as now: the inference copy of ``self.model`` when
        ``optimize`` is on and it is a :class:`PoseModel` in eval mode, else ``self.model``."""
        if not isinstance(self.model, PoseModel):
            return self.model
        if self._snapshot.model is not self.model:
            self._snapshot = InferenceSnapshot(
                self.model, self._probe_input, enabled=self.optimize, channels_last=True
            )
        return self._snapshot.module()

    # ------------------------------------------------------------------ network
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Core's inference autocast rule (bf16 only on CPUs that compute it natively)."""
        return autocast(self.device, self.amp)

    def _network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.network_module()
        if net is not self.model and self._snapshot.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = net(x)
        return out["heatmap"].float().contiguous(), out["offset"].float().contiguous()

    def run_network(
        self, warped: Sequence[np.ndarray]
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
        """Yield ``(i, heatmap, offset, heatmap_flip, offset_flip)`` for every warped image ``i``.

        Images are grouped (``group``) or padded (``pad``); plain and flipped inputs share one call.
        """
        dev = self.device
        if self.batch_mode == "group":
            groups: dict[tuple[int, int], list[int]] = {}
            for i, im in enumerate(warped):
                groups.setdefault(im.shape[:2], []).append(i)
            for idx in groups.values():
                x = normalize_images([warped[i] for i in idx], dev)
                yield from self._forward(idx, x, [tuple(warped[i].shape[:2]) for i in idx])
        else:
            hmax = max(im.shape[0] for im in warped)
            wmax = max(im.shape[1] for im in warped)
            xs = [normalize_images([im], dev) for im in warped]
            idx = list(range(len(warped)))
            yield from self._forward(idx, xs, [tuple(im.shape[:2]) for im in warped], pad_to=(hmax, wmax))

    def _forward(
        self,
        idx: list[int],
        x: torch.Tensor | list[torch.Tensor],
        sizes: list[tuple[int, int]],
        pad_to: tuple[int, int] | None = None,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
        if pad_to is None:
            assert isinstance(x, torch.Tensor)
            plain = x
            flipped = flip_shift(x) if self.flip else None
        else:
            assert isinstance(x, list)
            plain = _pad_black(x, pad_to)
            flipped = _pad_black([flip_shift(t) for t in x], pad_to) if self.flip else None
        n = plain.shape[0]
        batch = plain if flipped is None else torch.cat([plain, flipped], dim=0)
        heatmap, offset = self._network(batch)
        stride = self.decoder.stride
        for k, i in enumerate(idx):
            h_in, w_in = sizes[k]
            if pad_to is None:
                oh, ow = heatmap.shape[-2:]
            else:
                oh, ow = int(np.ceil(h_in / stride)), int(np.ceil(w_in / stride))
            hm = heatmap[k, :, :oh, :ow]
            of = offset[k, :, :oh, :ow]
            if flipped is None:
                yield i, hm, of, None, None
            else:
                yield i, hm, of, heatmap[n + k, :, :oh, :ow], offset[n + k, :, :oh, :ow]

    # ------------------------------------------------------------------ API
    def scale_outputs(self, images: Sequence[np.ndarray]) -> list[list[ScaleOutput]]:
        """Raw per-scale network outputs of each image (on the CPU), descending scale order."""
        per_image: list[list[ScaleOutput]] = [[] for _ in images]
        for s in self.scales:
            metas: list[WarpMeta] = [
                multi_scale_size(im.shape[:2], self.input_size, s, multiple=self.size_multiple) for im in images
            ]
            warped = [warp_image(im, m) for im, m in zip(images, metas)]
            results: dict[int, ScaleOutput] = {}
            for i, hm, of, hmf, off in self.run_network(warped):
                results[i] = ScaleOutput(
                    s,
                    hm.cpu(),
                    of.cpu(),
                    None if hmf is None else hmf.cpu(),
                    None if off is None else off.cpu(),
                    metas[i],
                )
            for i in range(len(images)):
                per_image[i].append(results[i])
        return per_image

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray], *, stopwatch: Stopwatch | None = None) -> list[Poses]:
        """Poses for each RGB uint8 (H, W, 3) image, in image pixels.

        ``stopwatch`` (``bupose bench``) accumulates the time of the ``forward`` stage (warp,
        network, outputs to the CPU) and of the ``decode`` stage.
        """
        if len(images) == 0:
            return []
        arrays = [check_image(im, k) for k, im in enumerate(images)]
        with stage(stopwatch, "forward"):
            outs = self.scale_outputs(arrays)
        with stage(stopwatch, "decode"):
            return [self.decoder.decode(o, rescore_net=self.rescore_net) for o in outs]

