"""SimplePoseCodec: encode -> ideal outputs -> decode recovers the people; shapes and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bupose.simplepose.codec import SimplePoseCodec

# a standing person in COCO order, unit height
_COCO = np.array([
    (0.00, 0.08), (0.03, 0.06), (-0.03, 0.06), (0.06, 0.07), (-0.06, 0.07), (0.14, 0.20), (-0.14, 0.20),
    (0.18, 0.36), (-0.18, 0.36), (0.20, 0.50), (-0.20, 0.50), (0.09, 0.52), (-0.09, 0.52), (0.10, 0.73),
    (-0.10, 0.73), (0.11, 0.95), (-0.11, 0.95),
])


def _people(size: int) -> list[np.ndarray]:
    out = []
    for cx, top, height in ((0.3, 0.05, 0.85), (0.72, 0.12, 0.8)):
        kp = np.zeros((17, 3))
        kp[:, :2] = _COCO * height * size + np.array([cx * size, top * size])
        kp[:, 2] = 2
        out.append(kp)
    return out


def test_round_trip_recovers_people() -> None:
    size = 256
    codec = SimplePoseCodec("coco17", size)
    people = _people(size)
    enc = codec.encode({"keypoints": np.stack(people)})
    assert enc["maps"].shape == (50, 64, 64) and enc["mask_misses"].shape == (1, 64, 64)
    poses = codec.decode({"maps": enc["maps"][None]}, [{"input_hw": (size, size)}])[0]
    assert len(poses) == 2
    for person in people:
        err = np.linalg.norm(poses.keypoints[:, :, :2] - person[None, :, :2], axis=2).mean(axis=1)
        assert err.min() < 2.5, f"person not recovered (mean error {err.min():.2f} px)"
    assert np.all(poses.keypoints[:, :, 2] == 1)


def test_mask_and_bad_input() -> None:
    codec = SimplePoseCodec("coco17", 64)
    mask = np.zeros((16, 16), np.float32)
    enc = codec.encode({"keypoints": np.zeros((0, 17, 3)), "masks": {16: mask}})
    assert float(enc["maps"].abs().sum()) == 0 and torch.equal(enc["mask_misses"][0], torch.from_numpy(mask))
    with pytest.raises(ValueError, match=r"\(N, 17, 3\)"):
        codec.encode({"keypoints": np.zeros((1, 14, 3))})
    with pytest.raises(ValueError, match="coco17"):
        SimplePoseCodec("crowdpose14", 64)
