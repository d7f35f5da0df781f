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
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from bupose.core.algorithms.tta import flip_input
from bupose.core.inference import Pipeline
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .decode import DEFAULT_OPTIONS, DEKRDecoder, ScaleOutput
from .preprocess import SIZE_MULTIPLE, WarpMeta, multi_scale_size, normalize_images, warp_image

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

    Args:
        model: a DEKR :class:`PoseModel` (outputs ``heatmap`` and ``offset``).
        flip: flip test (official default on).
        scales: test scales; must contain 1.0 (official multi-scale: ``(0.5, 1.0, 2.0)``).
        input_size: short side at scale 1; default from :func:`default_input_size`.
        rescore_net: a module mapping (N, F) pose features to (N, 1) predicted OKS.
        rescore_weights: path of a rescore file, loaded with :func:`load_rescore_net`.
        amp: run the network under autocast (bfloat16 on CPU, float16 on CUDA).
        batch_mode: ``"group"`` (exact, one call per input size) or ``"pad"`` (one call per scale).
        **decode_options: :class:`~bupose.dekr.decode.DEKRDecoder` options.
    """

    def __init__(
        self,
        model: PoseModel,
        flip: bool = True,
        scales: Sequence[float] = (1.0,),
        input_size: int | None = None,
        rescore_net: Callable[[torch.Tensor], torch.Tensor] | None = None,
        amp: bool = False,
        *,
        rescore_weights: str | os.PathLike[str] | None = None,
        batch_mode: str = "group",
        trust: bool = False,
        **decode_options: Any,
    ) -> None:
        super().__init__(model, flip=flip, scales=tuple(scales), input_size=input_size, amp=amp, **decode_options)
        self.flip = bool(flip)
        self.scales = tuple(sorted((float(s) for s in scales), reverse=True))
        if not self.scales or 1.0 not in self.scales:
            raise ValueError(f"DEKRPipeline: scales must contain 1.0, got {tuple(scales)}")
        if any(s <= 0 for s in self.scales) or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"DEKRPipeline: scales must be distinct and positive, got {tuple(scales)}")
        if batch_mode not in ("group", "pad"):
            raise ValueError(f"DEKRPipeline: batch_mode must be 'group' or 'pad', got {batch_mode!r}")
        self.batch_mode = batch_mode
        self.input_size = int(input_size) if input_size is not None else default_input_size(model)
        if self.input_size <= 0:
            raise ValueError(f"DEKRPipeline: input_size must be positive, got {self.input_size}")
        self.amp = bool(amp)
        unknown = set(decode_options) - set(DEFAULT_OPTIONS)
        if unknown:
            raise TypeError(
                f"DEKRPipeline: unknown option(s) {', '.join(sorted(unknown))}; decode options are "
                f"{', '.join(sorted(DEFAULT_OPTIONS))}"
            )
        stride = getattr(model.head, "stride", None)
        if stride is not None and "stride" not in decode_options:
            decode_options["stride"] = float(stride)
        self.decoder = DEKRDecoder(model.layout, **decode_options)
        if rescore_net is not None and rescore_weights is not None:
            raise ValueError("DEKRPipeline: give rescore_net or rescore_weights, not both")
        if rescore_weights is not None:
            rescore_net = load_rescore_net(rescore_weights, model.layout.name, trust=trust)
        if isinstance(rescore_net, torch.nn.Module):
            rescore_net = rescore_net.to(self.device).eval()
        self.rescore_net = rescore_net

    # ------------------------------------------------------------------ network
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.amp:
            return contextlib.nullcontext()
        dev = self.device.type
        return torch.autocast(dev, dtype=torch.float16 if dev == "cuda" else torch.bfloat16)

    def _network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            out = self.model(x)
        return out["heatmap"].float(), out["offset"].float()

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
            metas: list[WarpMeta] = [multi_scale_size(im.shape[:2], self.input_size, s, multiple=SIZE_MULTIPLE) for im in images]
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
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:
        """Poses for each RGB uint8 (H, W, 3) image, in image pixels."""
        if len(images) == 0:
            return []
        arrays = []
        for k, im in enumerate(images):
            a = np.asarray(im)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
                raise ValueError(
                    f"image {k}: expected an RGB uint8 array of shape (H, W, 3), got dtype {a.dtype} "
                    f"shape {a.shape}"
                )
            arrays.append(np.ascontiguousarray(a))
        outs = self.scale_outputs(arrays)
        return [self.decoder.decode(o, rescore_net=self.rescore_net) for o in outs]
