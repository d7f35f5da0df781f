"""GroupPose's training augmentation (DETR's, no rotation), as a head-declared transform.

``make_coco_transforms('train')``: horizontal flip (p 0.5, left/right joints swapped), then with p
0.5 either ``RandomResize`` of the short side to one of 480..800 (step 32, long side <= 1333), or
``RandomResize([400, 500, 600])`` -> ``RandomSizeCrop(384, 600)`` -> the same ``RandomResize``. All
sizes scale with ``input_size / 800`` (800 = the official largest training short side). Joints
leaving a crop become unlabelled; the area after a crop is the person box clipped to the crop
(as officially), else the annotation area scaled by the resize.

Departure: the flip is applied last (on the output, x -> W - 1 - x), not first; resize and the
uniformly placed crop are symmetric, so the distribution of samples is the same, and the engine's
``matrix`` + ``flipped`` convention stays exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bupose.core.algorithms.geometry import short_side_resize_size
from bupose.core.specs import LayoutSpec

__all__ = ["DetrAugmentation"]

_SCALES = tuple(range(480, 801, 32))


class DetrAugmentation:
    """The DETR random resize / crop / flip (see the module docstring); ``transform(sample, rng)``."""

    def __init__(
        self,
        input_size: int | tuple[int, int] = 800,
        *,
        layout: LayoutSpec | str = "coco17",
        output_sizes: Mapping[str, Any] | None = None,
        flip_prob: float = 0.5,
        crop_prob: float = 0.5,
        scales: tuple[int, ...] | None = None,
        max_size: int | None = None,
    ) -> None:
        del output_sizes  # a set predictor has no target maps
        side = int(min(input_size)) if isinstance(input_size, (tuple, list)) else int(input_size)
        if side <= 0:
            raise ValueError(f"DetrAugmentation: input_size must be positive, got {input_size}")
        ratio = side / 800.0
        self.scales = tuple(int(s) for s in scales) if scales else tuple(max(1, round(s * ratio)) for s in _SCALES)
        self.max_size = int(max_size) if max_size else round(1333 * ratio)
        self.crop_resize = tuple(max(1, round(s * ratio)) for s in (400, 500, 600))
        self.crop_min, self.crop_max = max(1, round(384 * ratio)), max(1, round(600 * ratio))
        if not (0 <= flip_prob <= 1 and 0 <= crop_prob <= 1):
            raise ValueError(f"DetrAugmentation: probabilities must be in [0, 1], got {flip_prob}, {crop_prob}")
        self.flip_prob, self.crop_prob = float(flip_prob), float(crop_prob)
        if isinstance(layout, str):
            from bupose.core.layouts import get_layout

            layout = get_layout(layout)
        self.layout = layout

    @staticmethod
    def _resize(image: np.ndarray, size: int, max_size: int | None) -> tuple[np.ndarray, float, float]:
        from PIL import Image

        h, w = image.shape[:2]
        rh, rw = short_side_resize_size((h, w), size, max_size)
        if (rh, rw) != (h, w):
            image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((rw, rh), Image.Resampling.BILINEAR))
        return image, rw / w, rh / h

    def __call__(self, sample: Mapping[str, Any], rng: np.random.Generator | int | None = None) -> dict[str, Any]:
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        image = np.asarray(sample["image"])
        k = self.layout.num_keypoints
        kps = np.asarray(sample.get("keypoints", np.zeros((0, k, 3))), dtype=np.float64).reshape(-1, k, 3).copy()
        n = kps.shape[0]
        areas = np.asarray(sample.get("areas", np.zeros(n)), dtype=np.float64).reshape(-1).copy()
        boxes = sample.get("bboxes")
        boxes = None if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()  # xywh
        keep = np.ones(n, dtype=bool)
        m = np.eye(3)

        def scale(img: np.ndarray, size: int, max_size: int | None) -> np.ndarray:
            nonlocal m, areas
            img, sx, sy = self._resize(img, size, max_size)
            kps[:, :, 0] *= sx
            kps[:, :, 1] *= sy
            areas *= sx * sy
            if boxes is not None:
                boxes[:, [0, 2]] *= sx
                boxes[:, [1, 3]] *= sy
            m = np.diag([sx, sy, 1.0]) @ m
            return img

        if rng.random() < self.crop_prob:
            image = scale(image, int(rng.choice(self.crop_resize)), None)
            h, w = image.shape[:2]
            cw = int(rng.integers(self.crop_min, max(self.crop_min, min(w, self.crop_max)) + 1))
            ch = int(rng.integers(self.crop_min, max(self.crop_min, min(h, self.crop_max)) + 1))
            cw, ch = min(cw, w), min(ch, h)
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            image = np.ascontiguousarray(image[top : top + ch, left : left + cw])
            kps[:, :, 0] -= left
            kps[:, :, 1] -= top
            m = np.array([[1.0, 0, -left], [0, 1.0, -top], [0, 0, 1.0]]) @ m
            if boxes is not None:
                x0 = np.clip(boxes[:, 0] - left, 0, cw)
                y0 = np.clip(boxes[:, 1] - top, 0, ch)
                x1 = np.clip(boxes[:, 0] + boxes[:, 2] - left, 0, cw)
                y1 = np.clip(boxes[:, 1] + boxes[:, 3] - top, 0, ch)
                boxes = np.stack([x0, y0, x1 - x0, y1 - y0], 1)
                areas = boxes[:, 2] * boxes[:, 3]
                keep &= (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
            outside = (kps[:, :, 0] < 0) | (kps[:, :, 1] < 0) | (kps[:, :, 0] >= cw) | (kps[:, :, 1] >= ch)
            kps[:, :, 2] = np.where(outside, 0.0, kps[:, :, 2])
        image = scale(image, int(rng.choice(self.scales)), self.max_size)
        flip = bool(rng.random() < self.flip_prob)
        if flip:
            w = image.shape[1]
            image = np.ascontiguousarray(image[:, ::-1])
            kps = kps[:, list(self.layout.flip_index)]
            kps[:, :, 0] = w - kps[:, :, 0] - 1
            if boxes is not None:
                boxes[:, 0] = w - boxes[:, 0] - boxes[:, 2]
        kps[kps[:, :, 2] <= 0, :2] = 0.0
        out = {key: v for key, v in sample.items() if key not in ("image", "keypoints", "areas", "bboxes", "iscrowd", "num_keypoints", "mask")}
        out.update({"image": image, "keypoints": kps[keep], "areas": areas[keep], "matrix": m[:2].copy(), "flipped": flip})
        if boxes is not None:
            out["bboxes"] = boxes[keep]
        for name in ("iscrowd", "num_keypoints"):
            if name in sample:
                out[name] = np.asarray(sample[name]).reshape(-1)[keep]
        return out
