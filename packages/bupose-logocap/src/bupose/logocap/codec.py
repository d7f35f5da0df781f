"""LogoCapCodec: training targets from augmented samples (encode) and poses from outputs (decode).

Implements core's :class:`bupose.core.codec.Codec`. ``encode`` gives the dense targets of
:func:`bupose.logocap.train.encode_dense` plus the kept people as instances (``keypoints`` in
input pixels, ``areas``), which the pose-pool losses of :meth:`LogoCapHead.loss` read from
``Batch.instances``. ``decode`` runs :class:`bupose.logocap.decode.LogoCapDecoder` on batched
outputs (flip outputs ``heatmap_flip``/``offset_flip`` used when present).

LOGO-CAP's local and global adaptation need the KAM network, which lives in the head: bind it
with :meth:`LogoCapCodec.bind` (the pipeline does). An unbound codec, or outputs without an
``embedding``, can only decode with ``adaptation="none"`` (initial centre-offset poses valued on
the heatmaps); asking for ``full``/``partial`` without them is one clear error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bupose.core.codec import BaseCodec, Encoded, image_points, input_hw_of
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec

from .decode import KamFn, LogoCapDecoder
from .train import LogoCapTargetConfig, encode_dense

__all__ = ["LogoCapCodec"]


class LogoCapCodec(BaseCodec):
    """Encode augmented samples into LOGO-CAP targets; decode network outputs into poses.

    Options (official defaults): ``stride`` 4, ``sigma`` 2, ``center_sigma`` 4, ``bg_weight`` 0.1,
    ``offset_radius`` 4, ``adaptation`` (``full``, needs a bound KAM), ``decode_options`` for the
    decoder. Sample fields: ``keypoints`` (N, J, 3) in input pixels (v > 0 labelled), optional
    ``areas`` (N,) instance areas in input pixels² (the segmentation area, as the official
    ``USE_MASK``; the keypoint box w·h when absent), ``iscrowd`` and ``num_keypoints`` (crowd
    entries without keypoints are dropped).
    """

    sample_keys = ("keypoints",)
    output_fields = ("heatmap", "offset")

    def __init__(
        self,
        layout: str | LayoutSpec = "coco17",
        input_size: int | tuple[int, int] = 512,
        *,
        stride: int = 4,
        sigma: float = 2.0,
        center_sigma: float = 4.0,
        bg_weight: float = 0.1,
        offset_radius: int = 4,
        adaptation: str = "full",
        decode_options: Mapping[str, Any] | None = None,
        kam: KamFn | None = None,
    ) -> None:
        super().__init__(layout, input_size)
        h, w = self.input_hw
        if h % stride or w % stride:
            raise ValueError(f"LogoCapCodec: input size {self.input_hw} is not a multiple of the stride {stride}")
        self.stride = int(stride)
        self.config = LogoCapTargetConfig(stride, sigma, center_sigma, bg_weight, offset_radius)
        options = {"adaptation": adaptation, **dict(decode_options or {})}
        self.decoder = LogoCapDecoder(self.layout, stride=stride, **options)
        self.kam = kam

    def bind(self, kam: KamFn) -> LogoCapCodec:
        """Use ``kam`` (raw KAM maps from joint-major sampled embeddings, e.g.
        ``lambda x: head.kam(x, clamp=False)``) for the local and global adaptation."""
        self.kam = kam
        return self

    def output_sizes(self, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        """``{"1/<stride>": (h, w)}``: the target (and output) map size."""
        h, w = input_hw_of(self.input_hw if input_size is None else input_size)
        if h % self.stride or w % self.stride:
            raise ValueError(f"LogoCapCodec: input size {(h, w)} is not a multiple of the stride {self.stride}")
        return {f"1/{self.stride}": (h // self.stride, w // self.stride)}

    def encode(self, sample: Mapping[str, Any]) -> Encoded:
        """Dense ``heatmap`` (J+1, h, w), ``heatmap_weight`` (1, h, w), ``offset`` / ``offset_weight``
        (2J, h, w); instances ``keypoints`` (N, J, 3) and ``areas`` (N,) of the kept people."""
        self.check_sample(sample)
        j = self.num_joints
        kp = np.asarray(sample["keypoints"], dtype=np.float64)
        if kp.size == 0:
            kp = kp.reshape(0, j, 3)
        if kp.ndim != 3 or kp.shape[1:] != (j, 3):
            raise ValueError(f"sample 'keypoints' must be (N, {j}, 3) for layout {self.layout.name}, got {kp.shape}")
        n = kp.shape[0]
        iscrowd = np.asarray(sample.get("iscrowd", np.zeros(n)), dtype=np.int64).reshape(-1)
        nkp = np.asarray(sample.get("num_keypoints", (kp[:, :, 2] > 0).sum(axis=1)), dtype=np.int64).reshape(-1)
        areas = sample.get("areas")
        areas = None if areas is None else np.asarray(areas, dtype=np.float64).reshape(-1)
        for name, arr in (("iscrowd", iscrowd), ("num_keypoints", nkp), ("areas", areas)):
            if arr is not None and arr.shape[0] != n:
                raise ValueError(f"sample {name!r} has {arr.shape[0]} entries for {n} persons")
        keep = (iscrowd == 0) | (nkp > 0)
        kp = kp[keep]
        areas = None if areas is None else areas[keep]
        dense = encode_dense(kp, areas, self.input_hw, j, self.config)
        if areas is None:
            vis = kp[..., 2] > 0
            x, y = kp[..., 0], kp[..., 1]
            wbox = np.where(vis, x, -np.inf).max(axis=1, initial=-np.inf) - np.where(vis, x, np.inf).min(axis=1, initial=np.inf)
            hbox = np.where(vis, y, -np.inf).max(axis=1, initial=-np.inf) - np.where(vis, y, np.inf).min(axis=1, initial=np.inf)
            areas = np.where(vis.any(axis=1), wbox * hbox, 0.0)
        return Encoded(
            dense={k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in dense.items()},
            instances={
                "keypoints": torch.from_numpy(kp.astype(np.float32)),
                "areas": torch.from_numpy(np.maximum(areas, 1.0).astype(np.float32)),
            },
        )

    def decode(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]]) -> list[Poses]:
        """One :class:`Poses` per image of batched (B, C, h, w) outputs; image pixels through
        ``meta["matrix"]`` when present, else input pixels."""
        for name in ("heatmap", "offset"):
            if name not in outputs:
                raise KeyError(f"LogoCapCodec.decode: outputs lack {name!r}; got {sorted(outputs)}")
        needs_kam = self.decoder.adaptation != "none"
        if needs_kam and (self.kam is None or "embedding" not in outputs):
            raise ValueError(
                f"LogoCapCodec.decode: adaptation {self.decoder.adaptation!r} needs the head's KAM network "
                "(codec.bind(...)) and an 'embedding' output; use adaptation='none' without them"
            )
        heat = outputs["heatmap"]
        b, _, h, w = heat.shape
        if len(metas) != b:
            raise ValueError(f"LogoCapCodec.decode: {len(metas)} metas for {b} images")
        out: list[Poses] = []
        for i in range(b):
            meta = metas[i]
            input_hw = tuple(meta.get("input_hw", (h * self.stride, w * self.stride)))
            emb = outputs["embedding"][i] if "embedding" in outputs else heat.new_zeros((1, h, w))
            kam = self.kam if self.kam is not None else (lambda x: x)
            poses, scores = self.decoder.decode_network(
                heat[i], outputs["offset"][i], emb, kam, (int(input_hw[0]), int(input_hw[1])),
                outputs["heatmap_flip"][i] if "heatmap_flip" in outputs else None,
                outputs["offset_flip"][i] if "offset_flip" in outputs else None,
            )
            pts = image_points(poses.detach().cpu().numpy(), meta)
            out.append(self.decoder.finalize_points(pts, scores.detach().cpu().numpy()))
        return out
