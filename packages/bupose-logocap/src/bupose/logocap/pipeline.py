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
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bupose.core.algorithms.geometry import WarpMeta, multi_scale_size, warp_image
from bupose.core.algorithms.image import normalize_images
from bupose.core.algorithms.tta import flip_input
from bupose.core.amp import autocast
from bupose.core.inference import Pipeline
from bupose.core.model import PoseModel
from bupose.core.poses import Poses

from .codec import LogoCapCodec
from .decode import ADAPTATION_LEVELS, LogoCapDecoder

__all__ = ["LogoCapPipeline", "default_input_size"]


def default_input_size(model: PoseModel) -> int:
    """The official test input size: ``model.config['input_size']`` when set, 640 for HRNet-W48,
    else 512."""
    size = model.config.get("input_size") if isinstance(model.config, dict) else None
    if size is not None:
        return int(size)
    return 640 if "w48" in str(model.backbone_name) else 512


class LogoCapPipeline(Pipeline):
    """LOGO-CAP test pipeline.

    Args:
        model: a LOGO-CAP :class:`PoseModel` (head outputs ``heatmap``, ``offset``, ``embedding``;
            the head's ``kam`` runs the KAM network).
        flip: flip test. The official pipeline always flips; ``flip=False`` is a bupose addition
            whose results differ from the official ones.
        input_size: short side of the network input; default from :func:`default_input_size`.
        adaptation: ``full`` (official), ``partial`` or ``none``.
        amp: run the network and the KAM under :func:`bupose.core.amp.autocast` (float16 on CUDA,
            bfloat16 on CPUs with native bf16, else float32 with a warning); decoding stays float32.
        scales: only ``(1.0,)`` (the official pipeline is single scale).
        **decode_options: other :class:`~bupose.logocap.decode.LogoCapDecoder` options.
    """

    def __init__(
        self,
        model: PoseModel,
        flip: bool = True,
        input_size: int | None = None,
        adaptation: str = "full",
        amp: bool = False,
        scales: Sequence[float] = (1.0,),
        **decode_options: Any,
    ) -> None:
        super().__init__(model, flip=flip, input_size=input_size, adaptation=adaptation, amp=amp, **decode_options)
        if tuple(float(s) for s in scales) != (1.0,):
            raise ValueError(f"LogoCapPipeline: only single-scale (1.0,) inference exists, got scales {tuple(scales)}")
        if adaptation not in ADAPTATION_LEVELS:
            raise ValueError(f"LogoCapPipeline: adaptation must be one of {ADAPTATION_LEVELS}, got {adaptation!r}")
        head = model.head
        if not hasattr(head, "kam"):
            raise TypeError(f"LogoCapPipeline needs a LOGO-CAP head (with a KAM network), got {type(head).__name__}")
        self.flip = bool(flip)
        self.amp = bool(amp)
        self.input_size = int(input_size) if input_size is not None else default_input_size(model)
        if self.input_size <= 0:
            raise ValueError(f"LogoCapPipeline: input_size must be positive, got {self.input_size}")
        stride = int(getattr(head, "stride", 4))
        base = (self.input_size + 63) // 64 * 64
        try:
            self.codec = LogoCapCodec(
                model.layout, base, stride=stride, adaptation=adaptation, decode_options=decode_options
            ).bind(self._kam)
        except TypeError as exc:
            raise TypeError(f"LogoCapPipeline: unknown option ({exc})") from None
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
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Poses]:
        """Poses for each RGB uint8 (H, W, 3) image, in image pixels."""
        if len(images) == 0:
            return []
        arrays = []
        for k, im in enumerate(images):
            a = np.asarray(im)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
                raise ValueError(
                    f"image {k}: expected an RGB uint8 array of shape (H, W, 3), got dtype {a.dtype} shape {a.shape}"
                )
            arrays.append(np.ascontiguousarray(a))
        metas: list[WarpMeta] = [multi_scale_size(a.shape[:2], self.input_size, 1.0) for a in arrays]
        warped = [warp_image(a, m) for a, m in zip(arrays, metas)]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, w in enumerate(warped):
            groups.setdefault(tuple(w.shape[:2]), []).append(i)
        results: list[Poses | None] = [None] * len(arrays)
        for idx in groups.values():
            # NCHW-contiguous like the official ToTensor/cat (a channels-last input changes the
            # float rounding of the network, and so near-tie decisions)
            x = normalize_images([warped[i] for i in idx], self.device).contiguous()
            out = self.network_outputs(x)
            for k, i in enumerate(idx):
                results[i] = self.decoder.decode(
                    out["heatmap"][k], out["offset"][k], out["embedding"][k], self._kam, metas[i],
                    out["heatmap_flip"][k] if self.flip else None,
                    out["offset_flip"][k] if self.flip else None,
                )
        return [r for r in results if r is not None]
