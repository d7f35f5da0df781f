"""SimplePoseCodec: Heatmapper targets from augmented samples (encode) and people from maps (decode).

Implements core's :class:`bupose.core.codec.Codec`. ``encode`` converts the sample's COCO-17 people
(input pixels) to the internal CMU-18 joints and draws the official 50 target maps at stride 4
(:func:`bupose.simplepose.targets.create_heatmaps`); ``mask_misses`` is the sample's valid mask (1 =
annotated). The person-mask channel (48) needs person segmentations, which augmented samples do not
carry: it is drawn as the union of the people's keypoint boxes (padded by one cell), then eroded as
officially. ``decode`` is single-scale, no flip: maps upsampled x4 (cubic) to the input, peaks and the
``simplepose_limbs`` grouping, back to image pixels through ``meta["matrix"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from bupose.core.codec import BaseCodec, Encoded, image_points, input_hw_of
from bupose.core.poses import Poses
from bupose.core.specs import LayoutSpec

from .config import NUM_LIMBS
from .grouping import LimbGroupingParams, group_people
from .targets import coco_to_internal18, create_heatmaps

__all__ = ["SimplePoseCodec"]


class SimplePoseCodec(BaseCodec):
    """Encode samples into SimplePose targets (``maps``, ``mask_misses``); decode ``maps`` into poses.

    Options: ``stride`` 4, ``sigma`` 9 and ``limb_sigma`` 7 input pixels (official, for 512 inputs; scale
    them with smaller training inputs), ``grouping`` (:class:`LimbGroupingParams` fields for decode).
    """

    sample_keys = ("keypoints",)
    output_fields = ("maps",)

    def __init__(
        self,
        layout: str | LayoutSpec = "coco17",
        input_size: int | tuple[int, int] = 512,
        *,
        stride: int = 4,
        sigma: float = 9.0,
        limb_sigma: float = 7.0,
        grouping: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(layout, input_size)
        if self.layout.name != "coco17":
            raise ValueError(f"SimplePoseCodec: only layout coco17 is supported, got {self.layout.name!r}")
        self.stride = int(stride)
        h, w = self.input_hw
        if h % self.stride or w % self.stride:
            raise ValueError(f"SimplePoseCodec: input size {(h, w)} is not a multiple of the stride {self.stride}")
        self.sigma = float(sigma)
        self.limb_sigma = float(limb_sigma)
        self.params = LimbGroupingParams.from_mapping(grouping or {})

    def output_sizes(self, input_size: int | tuple[int, int] | None = None) -> dict[str, tuple[int, int]]:
        """``{"1/4": (h / 4, w / 4)}``."""
        h, w = input_hw_of(self.input_hw if input_size is None else input_size)
        return {f"1/{self.stride}": (h // self.stride, w // self.stride)}

    def _valid_mask(self, sample: Mapping[str, Any], size: tuple[int, int]) -> np.ndarray:
        masks = sample.get("masks") or {}
        m = masks.get(size[0]) if size[0] == size[1] else None
        if m is None:
            m = masks.get(size)
        if m is None:
            return np.ones(size, dtype=np.float32)
        m = np.asarray(m, dtype=np.float32)
        if m.shape != size:
            raise ValueError(f"sample mask at output resolution has shape {m.shape}, expected {size}")
        return m

    def encode(self, sample: Mapping[str, Any]) -> Encoded:
        """Dense ``maps`` (50, h, w) and ``mask_misses`` (1, h, w) float32; instances ``keypoints``."""
        self.check_sample(sample)
        kp = np.asarray(sample["keypoints"], dtype=np.float64)
        if kp.size == 0:
            kp = kp.reshape(0, 17, 3)
        if kp.ndim != 3 or kp.shape[1:] != (17, 3):
            raise ValueError(f"sample 'keypoints' must be (N, 17, 3) COCO joints, got {kp.shape}")
        size = self.output_sizes()[f"1/{self.stride}"]
        coco = kp.copy()
        coco[:, :, 2] = np.where(kp[:, :, 2] > 0, np.where(kp[:, :, 2] >= 2, 2, 1), 0)
        joints18 = coco_to_internal18(coco)
        person = np.zeros(size, dtype=np.uint8)
        for p in kp:
            lab = p[p[:, 2] > 0, :2] / self.stride
            if lab.shape[0] < 2:
                continue
            x0, y0 = np.floor(lab.min(axis=0)).astype(int) - 1
            x1, y1 = np.ceil(lab.max(axis=0)).astype(int) + 1
            person[max(y0, 0) : max(y1 + 1, 0), max(x0, 0) : max(x1 + 1, 0)] = 1
        maps = create_heatmaps(joints18, person, self.stride, sigma=self.sigma, limb_sigma=self.limb_sigma)
        mask = self._valid_mask(sample, size)[None]
        return Encoded(
            dense={"maps": torch.from_numpy(maps), "mask_misses": torch.from_numpy(np.ascontiguousarray(mask))},
            instances={"keypoints": torch.from_numpy(kp.astype(np.float32))},
        )

    def decode(self, outputs: Mapping[str, torch.Tensor], metas: Sequence[Mapping[str, Any]]) -> list[Poses]:
        """Single-scale, no-flip decoding of ``outputs["maps"]`` (B, 50, h, w)."""
        maps = outputs["maps"].detach().float().cpu().numpy()
        out = []
        for b in range(maps.shape[0]):
            meta = metas[b] if b < len(metas) else {}
            hwc = np.ascontiguousarray(maps[b].transpose(1, 2, 0))
            up = cv2.resize(hwc, (0, 0), fx=self.stride, fy=self.stride, interpolation=cv2.INTER_CUBIC)
            ih, iw = meta.get("input_hw", up.shape[:2])
            up = up[: int(ih), : int(iw)].astype(np.float64)
            r = group_people(up[:, :, NUM_LIMBS:], up[:, :, :NUM_LIMBS], self.params)
            kps = image_points(r.keypoints, meta)
            kps[r.keypoints[..., 2] == 0] = 0.0
            out.append(Poses(kps, r.scores, self.layout.name))
        return out
