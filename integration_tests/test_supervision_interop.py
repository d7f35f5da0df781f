"""Poses <-> supervision.KeyPoints, and drawing with supervision's annotators (docs/run.md's example)."""

from __future__ import annotations

import numpy as np
import pytest

sv = pytest.importorskip("supervision")

from bupose.core.poses import Poses, supervision_edges  # noqa: E402


def _poses() -> Poses:
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(10, 90, (2, 17, 2)), rng.uniform(0, 1, (2, 17, 1))], axis=2)
    return Poses(kp, np.array([0.9, 0.4]), "coco17", {"track_id": np.array([3, 7])})


def test_round_trip_keeps_everything() -> None:
    p = _poses()
    k = p.to_supervision(joint_threshold=0.5)
    assert isinstance(k, sv.KeyPoints) and len(k) == 2
    np.testing.assert_allclose(k.xy, p.keypoints[:, :, :2], rtol=1e-6)
    np.testing.assert_array_equal(k.visible, p.keypoints[:, :, 2] > 0.5)
    back = Poses.from_supervision(k)
    assert back.layout == "coco17"
    np.testing.assert_allclose(back.keypoints, p.keypoints, rtol=1e-6)
    np.testing.assert_allclose(back.scores, p.scores, rtol=1e-6)
    np.testing.assert_array_equal(back.extras["track_id"], [3, 7])


def test_foreign_keypoints_need_a_layout_and_get_default_scores() -> None:
    k = sv.KeyPoints(xy=np.zeros((1, 17, 2), np.float32))
    with pytest.raises(ValueError, match="pass layout="):
        Poses.from_supervision(k)
    p = Poses.from_supervision(k, layout="coco17")
    assert p.keypoints[0, :, 2].tolist() == [1.0] * 17 and p.scores.tolist() == [1.0]


def test_supervision_annotators_draw_our_skeleton() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    key_points = _poses().to_supervision()
    out = sv.EdgeAnnotator(edges=supervision_edges("coco17"), thickness=2).annotate(image.copy(), key_points)
    out = sv.VertexAnnotator(radius=3).annotate(out, key_points)
    assert out.shape == image.shape and out.any()
    assert supervision_edges("coco17")[0] == (16, 14)  # COCO's first edge (15, 13), 1-based
