"""LOGO-CAP inference pipeline: resize/warp, network on [image, flipped image], decode.

``LogoCapPipeline(model).predict_batch(images)`` turns RGB uint8 images of any sizes into one
:class:`~bupose.core.poses.Poses` per image, in image pixels, with the official test-time
behaviour (single scale, flip test without pixel shift, the chosen adaptation level, pose NMS).

Batching is real: warped images that share a network-input size go through the network together,
plain and flipped concatenated along the batch (the official code runs batch 1). The input size
depends on the aspect ratio (short side fixed, long side a multiple of 64), so one call runs per
distinct size; as every layer works per sample in eval mode, results equal batch size 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from bupose.core.algorithms.geometry import WarpMeta, multi_scale_size, warp_image
from bupose.core.algorithms.image import normalize_images
from bupose.core.algorithms.tta import flip_input
from bupose.core.amp import autocast
from bupose.core.benchmark import Stopwatch, stage
from bupose.core.inference import Pipeline, check_image
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .codec import LogoCapCodec
from .decode import LogoCapDecoder
from .options import LogoCapOptions

__all__ = ["LogoCapPipeline", "default_input_size"]


def default_input_size(model: PoseModel) -> int:
    """The official test input size: ``model.config['input_size']`` when set, 640 for HRNet-W48,
    else 512."""
    size = model.config.get("input_size") if isinstance(model.config, dict) else None
    if size is not None:
        return int(size)
    return 640 if "w48" in str(model.backbone_name) else 512


def _build_options(options: LogoCapOptions | None, values: Mapping[str, Any]) -> LogoCapOptions:
    """``options`` (or the defaults) updated with ``values``; unknown names are one error."""
    if options is not None and not isinstance(options, LogoCapOptions):
        raise TypeError(f"LogoCapPipeline: options must be a LogoCapOptions, got {type(options).__name__}")
    base = dataclasses.asdict(options) if options is not None else {}
    try:  # core's declared-options reader (string coercion, suggestions), when this core has it
        from bupose.core.options import build_options
    except ImportError:
        build_options = None
    if build_options is not None:
        return build_options(LogoCapOptions, {**base, **values}, context="LogoCapPipeline", flag="option")
    names = {f.name for f in dataclasses.fields(LogoCapOptions)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(
            f"LogoCapPipeline: unknown option(s) {', '.join(unknown)}; options are {', '.join(sorted(names))}"
        )
    merged = {**base, **values}
    if "scales" in merged:
        merged["scales"] = tuple(float(v) for v in merged["scales"])
    return LogoCapOptions(**merged)


class LogoCapPipeline(Pipeline):
    """LOGO-CAP test pipeline, built from :class:`~bupose.logocap.options.LogoCapOptions`.

    ``LogoCapPipeline(model, options=None, **values)``: ``values`` override fields of ``options``
    (e.g. ``flip=False``, ``adaptation="partial"``, ``max_num_people=10``). ``flip=False`` is a
    bupose addition (the official pipeline always flips; results differ). ``amp`` runs the network
    and the KAM under :func:`bupose.core.amp.autocast` (float16 on CUDA, bfloat16 on CPUs with
    native bf16, else float32 with a warning); decoding stays float32.
    """

    options_class: ClassVar[type] = LogoCapOptions

    def __init__(self, model: PoseModel, options: LogoCapOptions | None = None, /, **values: Any) -> None:
        self.model = model
        opts = _build_options(options, values)
        self.options = opts
        head = model.head
        if not hasattr(head, "kam"):
            raise TypeError(f"LogoCapPipeline needs a LOGO-CAP head (with a KAM network), got {type(head).__name__}")
        self.flip = bool(opts.flip)
        self.amp = bool(opts.amp)
        self.input_size = int(opts.input_size) if opts.input_size is not None else default_input_size(model)
        divisibility = int(getattr(model.backbone, "size_divisibility", 1) or 1)
        self.size_multiple = math.lcm(int(opts.size_multiple), divisibility)
        """Input sides are multiples of this: the official 64 combined with the backbone's rule."""
        stride = int(getattr(head, "stride", 4))
        base = (self.input_size + self.size_multiple - 1) // self.size_multiple * self.size_multiple
        self.codec = LogoCapCodec(
            model.layout, math.lcm(base, stride), stride=stride, decode_options=opts.decode_options()
        ).bind(self._kam)
        self.decoder: LogoCapDecoder = self.codec.decoder

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self.amp)

    def _kam(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            out = self.model.head.kam(x, clamp=False)
        return out.float()

    def network_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs for a normalised (B, 3, H, W) batch, with ``*_flip`` entries when flipping."""
        n = x.shape[0]
        batch = torch.cat([x, flip_input(x)], dim=0) if self.flip else x
        with self._autocast():
            out = self.model(batch)
        res = {
            "heatmap": out["heatmap"][:n].float(),
            "offset": out["offset"][:n].float(),
            "embedding": out["embedding"][:n].float(),
        }
        if self.flip:
            res["heatmap_flip"] = out["heatmap"][n:].float()
            res["offset_flip"] = out["offset"][n:].float()
        return res

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray], *, stopwatch: Stopwatch | None = None) -> list[Poses]:
        """Poses for each RGB uint8 (H, W, 3) image, in image pixels.

        ``stopwatch`` (``bupose bench``) accumulates the ``forward`` stage (warp, normalise, network)
        and the ``decode`` stage (centres, KEM, KAM, global adaptation).
        """
        if len(images) == 0:
            return []
        arrays = [check_image(im, k) for k, im in enumerate(images)]
        results: list[Poses | None] = [None] * len(arrays)
        with stage(stopwatch, "forward"):
            metas: list[WarpMeta] = [
                multi_scale_size(a.shape[:2], self.input_size, 1.0, multiple=self.size_multiple) for a in arrays
            ]
            warped = [warp_image(a, m) for a, m in zip(arrays, metas)]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, w in enumerate(warped):
            groups.setdefault(tuple(w.shape[:2]), []).append(i)
        for idx in groups.values():
            with stage(stopwatch, "forward"):
                # NCHW-contiguous like the official ToTensor/cat (a channels-last input changes the
                # float rounding of the network, and so near-tie decisions)
                x = normalize_images([warped[i] for i in idx], self.device).contiguous()
                out = self.network_outputs(x)
            with stage(stopwatch, "decode"):
                for k, i in enumerate(idx):
                    results[i] = self.decoder.decode(
                        out["heatmap"][k], out["offset"][k], out["embedding"][k], self._kam, metas[i],
                        out["heatmap_flip"][k] if self.flip else None,
                        out["offset_flip"][k] if self.flip else None,
                    )
        return [r for r in results if r is not None]
