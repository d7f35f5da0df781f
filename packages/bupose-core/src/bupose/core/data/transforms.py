"""Bottom-up training augmentation: random affine (scale, rotation, translation) + horizontal flip.

Geometry follows HigherHRNet/DEKR ``RandomAffineTransform`` + ``RandomHorizontalFlip``: the crop is
centred on the image centre (plus a random translation of up to ``max_translate * scale`` original
pixels), ``200 * scale`` original pixels map onto the output square with ``scale = short side / 200 *
U(scale_range)``, rotation U(+-max_rotation) degrees about the output centre. One affine per output
resolution (the image's ``input_size`` and each heatmap size) so that every map is warped from the
original, never resampled twice. The ignore mask is warped per heatmap size from the ORIGINAL mask
(uint8 x255, bilinear, then > 0.5), the image bilinearly with zero borders. Flip mirrors the
warped outputs: pixel x -> size - 1 - x, joints permuted with the layout's flip index.

A sample in (``dataset[i]``) -> a sample out with:

- ``image`` (S, S, 3) uint8;
- ``keypoints`` (N, K, 3) in input pixels; v set to 0 for joints that leave [0, S) (K is the
  layout's J, or J + 1 when the caller appended a person-centre row, flipped with
  ``flip_index_with_center``);
- ``keypoints_at`` {size: (N, K, 3)} in that heatmap's pixels exactly as the official transform
  produces them (visibility untouched: codecs apply their own in-map test);
- ``areas`` (N,) times the input affine's scale product (t00 * t11, before rotation, as DEKR);
- ``masks`` {size: (size, size) float32}; ``matrix`` (2, 3) original -> input pixels (before flip);
  ``flipped`` bool; every other key of the input sample is passed through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..algorithms.geometry import apply_affine, crop_affine, warp_affine, warp_mask
from ..algorithms.image import IMAGENET_MEAN, IMAGENET_STD, normalize_images
from ..specs import LayoutSpec

__all__ = ["BottomUpRandomAffine", "to_tensor"]


class BottomUpRandomAffine:
    """Random affine + flip for bottom-up training (see the module docstring).

    Deterministic given ``rng`` (a ``numpy.random.Generator`` or an int seed) at call time; without
    one, draws from the transform's own generator seeded by ``seed`` (in DataLoader workers pass a
    per-sample generator, e.g. seeded from (epoch, index), so workers do not repeat each other).
    ``identity=True`` (or scale_range (1, 1), no rotation/translation/flip) reproduces a square
    ``input_size`` image exactly.
    """

    def __init__(
        self,
        input_size: int,
        heatmap_sizes: Sequence[int] | None = None,
        scale_range: tuple[float, float] = (0.75, 1.5),
        max_rotation: float = 30.0,
        max_translate: float = 40.0,
        flip_prob: float = 0.5,
        layout: LayoutSpec | str = "coco17",
        scale_type: str = "short",
        identity: bool = False,
        seed: int | None = None,
        output_sizes: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        if input_size <= 0:
            raise ValueError("input_size must be positive")
        if output_sizes is not None and heatmap_sizes is None:  # the engine's factory call (codec sizes)
            if any(int(h) != int(w) for h, w in output_sizes.values()):
                raise ValueError(f"BottomUpRandomAffine makes square maps; the codec wants {dict(output_sizes)}")
            heatmap_sizes = sorted({int(h) for h, _ in output_sizes.values()}, reverse=True)
        if scale_type not in ("short", "long"):
            raise ValueError(f"scale_type must be 'short' or 'long', got {scale_type!r}")
        self.input_size = int(input_size)
        self.heatmap_sizes = tuple(int(s) for s in (heatmap_sizes or (input_size // 4,)))
        if identity:
            scale_range, max_rotation, max_translate, flip_prob = (1.0, 1.0), 0.0, 0.0, 0.0
        if not (0 < scale_range[0] <= scale_range[1]):
            raise ValueError(f"scale_range must be 0 < min <= max, got {scale_range}")
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.max_rotation = float(max_rotation)
        self.max_translate = float(max_translate)
        self.flip_prob = float(flip_prob)
        self.scale_type = scale_type
        if isinstance(layout, str):
            from ..layouts import get_layout

            layout = get_layout(layout)
        self.layout = layout
        self._rng = np.random.default_rng(seed)

    def _flip_index(self, k: int) -> np.ndarray:
        j = self.layout.num_keypoints
        if k == j:
            return np.asarray(self.layout.flip_index)
        if k == j + 1:
            return np.asarray(self.layout.flip_index_with_center())
        raise ValueError(f"keypoints have {k} rows; layout {self.layout.name} has {j} (or {j + 1} with a centre)")

    def sample_params(self, height: int, width: int, rng: np.random.Generator) -> dict[str, Any]:
        """Draw (center, scale, rotation, flip) for an image of this size."""
        center = np.array([width / 2.0, height / 2.0])
        base = (min(height, width) if self.scale_type == "short" else max(height, width)) / 200.0
        lo, hi = self.scale_range
        scale = base * (rng.random() * (hi - lo) + lo if hi > lo else lo)
        rot = (rng.random() * 2 - 1) * self.max_rotation if self.max_rotation > 0 else 0.0
        if self.max_translate > 0:
            m = int(self.max_translate * scale)
            if m > 0:
                center[0] += rng.integers(-m, m)
                center[1] += rng.integers(-m, m)
        flip = bool(self.flip_prob > 0 and rng.random() < self.flip_prob)
        return {"center": center, "scale": float(scale), "rotation": float(rot), "flip": flip}

    def __call__(self, sample: Mapping[str, Any], rng: np.random.Generator | int | None = None) -> dict[str, Any]:
        if rng is None:
            rng = self._rng
        elif not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        image = sample["image"]
        h, w = image.shape[:2]
        params = self.sample_params(h, w, rng)
        return self.apply(sample, params)

    def apply(self, sample: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a fixed (center, scale, rotation, flip) to a sample."""
        image = np.asarray(sample["image"])
        h, w = image.shape[:2]
        kps = np.asarray(sample.get("keypoints", np.zeros((0, self.layout.num_keypoints, 3))), dtype=np.float64)
        if kps.ndim != 3 or kps.shape[2] != 3:
            raise ValueError(f"sample keypoints must be (N, K, 3), got {kps.shape}")
        mask = sample.get("mask")
        if mask is None:
            mask = np.ones((h, w), dtype=np.float32)
        center, scale, rot, flip = params["center"], params["scale"], params["rotation"], params["flip"]
        flip_idx = self._flip_index(kps.shape[1]) if flip else None

        s = self.input_size
        mat_in, scale_product = crop_affine(center, scale, s, rot)
        if h == s and w == s and np.array_equal(mat_in, np.eye(3)):
            out_img = image.copy()
        else:
            out_img = warp_affine(image, mat_in, (s, s))
        kp_in = kps.copy()
        kp_in[:, :, :2] = apply_affine(kps[:, :, :2], mat_in)

        masks: dict[int, np.ndarray] = {}
        kp_at: dict[int, np.ndarray] = {}
        for size in self.heatmap_sizes:
            mat, _ = crop_affine(center, scale, size, rot)
            masks[size] = warp_mask(mask, mat, size)
            k = kps.copy()
            k[:, :, :2] = apply_affine(kps[:, :, :2], mat)
            kp_at[size] = k

        if flip:
            out_img = np.ascontiguousarray(out_img[:, ::-1])
            kp_in = kp_in[:, flip_idx]
            kp_in[:, :, 0] = s - kp_in[:, :, 0] - 1
            for size in self.heatmap_sizes:
                masks[size] = np.ascontiguousarray(masks[size][:, ::-1])
                k = kp_at[size][:, flip_idx]
                k[:, :, 0] = size - k[:, :, 0] - 1
                kp_at[size] = k
        outside = (kp_in[:, :, 0] < 0) | (kp_in[:, :, 1] < 0) | (kp_in[:, :, 0] >= s) | (kp_in[:, :, 1] >= s)
        kp_in[:, :, 2] = np.where(outside, 0.0, kp_in[:, :, 2])

        out = {k: v for k, v in sample.items() if k not in ("image", "keypoints", "mask", "areas")}
        out.update(
            {
                "image": out_img,
                "keypoints": kp_in,
                "keypoints_at": kp_at,
                "areas": np.asarray(sample.get("areas", np.zeros(len(kps))), dtype=np.float64) * scale_product,
                "masks": masks,
                "matrix": mat_in[:2].copy(),
                "flipped": flip,
                "aug_params": dict(params),
            }
        )
        return out


def to_tensor(image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Any:
    """RGB uint8 (H, W, 3) -> float32 tensor (3, H, W), /255 then ImageNet-normalised."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"to_tensor expects an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    return normalize_images([arr], mean=mean, std=std)[0]
