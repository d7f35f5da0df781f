"""``Poses``: the people found in one image, and their COCO results form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Poses", "supervision_edges"]


@dataclass
class Poses:
    """People in one image: ``keypoints`` (N, J, 3) = x, y, per-joint score in image pixels,
    ``scores`` (N,) person scores, and the keypoint ``layout`` name."""

    keypoints: np.ndarray
    scores: np.ndarray
    layout: str
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keypoints = np.asarray(self.keypoints, dtype=np.float64)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if self.keypoints.ndim != 3 or self.keypoints.shape[2] != 3:
            raise ValueError(f"Poses.keypoints must be (N, J, 3), got {self.keypoints.shape}")
        if self.scores.shape[0] != self.keypoints.shape[0]:
            raise ValueError(
                f"Poses.scores has {self.scores.shape[0]} entries for "
                f"{self.keypoints.shape[0]} people"
            )

    @classmethod
    def empty(cls, num_keypoints: int, layout: str) -> Poses:
        return cls(np.zeros((0, num_keypoints, 3)), np.zeros((0,)), layout)

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1])

    def bboxes(self) -> np.ndarray:
        """(N, 4) x_min, y_min, w, h of each pose's keypoint extent."""
        if len(self) == 0:
            return np.zeros((0, 4))
        xy = self.keypoints[:, :, :2]
        lo = xy.min(axis=1)
        hi = xy.max(axis=1)
        with np.errstate(invalid="ignore"):  # inf - inf: such a person is left out of the results
            return np.concatenate([lo, hi - lo], axis=1)

    def to_coco(self, image_id: Any, category_id: int = 1, with_bbox: bool = True) -> list[dict[str, Any]]:
        """One COCO results entry per person (plain Python floats, JSON-ready, never NaN/inf).

        A person whose score or any joint coordinate is not finite is left out (it has no place in an
        image); a non-finite joint score is written as 0.
        """
        out: list[dict[str, Any]] = []
        boxes = self.bboxes()
        finite = np.isfinite(self.scores) & np.isfinite(self.keypoints[:, :, :2]).all(axis=(1, 2))
        joint_scores = np.nan_to_num(self.keypoints[:, :, 2], nan=0.0, posinf=0.0, neginf=0.0)
        for i in np.flatnonzero(finite):
            kp = np.concatenate([self.keypoints[i, :, :2], joint_scores[i, :, None]], axis=1)
            entry: dict[str, Any] = {
                "image_id": image_id,
                "category_id": int(category_id),
                "keypoints": [float(v) for v in kp.reshape(-1)],
                "score": float(self.scores[i]),
            }
            if with_bbox:
                entry["bbox"] = [float(v) for v in boxes[i]]
            out.append(entry)
        return out

    @classmethod
    def from_coco(
        cls, entries: Iterable[Mapping[str, Any]], layout: str, num_keypoints: int
    ) -> Poses:
        """Rebuild from COCO results entries of one image."""
        kps, scores = [], []
        for e in entries:
            k = np.asarray(e["keypoints"], dtype=np.float64)
            if k.size != num_keypoints * 3:
                raise ValueError(
                    f"results entry for image {e.get('image_id')!r} has {k.size} keypoint values, "
                    f"expected {num_keypoints * 3} for layout {layout}"
                )
            kps.append(k.reshape(num_keypoints, 3))
            scores.append(float(e["score"]))
        if not kps:
            return cls.empty(num_keypoints, layout)
        return cls(np.stack(kps), np.asarray(scores), layout)

    def select(self, index: Sequence[int] | np.ndarray) -> Poses:
        idx = np.asarray(index, dtype=np.int64)
        return Poses(
            self.keypoints[idx], self.scores[idx], self.layout, {k: v[idx] for k, v in self.extras.items()}
        )

    # ------------------------------------------------------------------ supervision interop
    def to_supervision(self, joint_threshold: float | None = None) -> Any:
        """These people as a ``supervision.KeyPoints`` (``pip install supervision``).

        ``xy`` (N, J, 2) float32, ``keypoint_confidence`` the per-joint scores, ``detection_confidence``
        the person scores, ``class_id`` 0 (person); ``visible`` marks joints above ``joint_threshold``
        (all visible when None). ``data`` carries the layout name and every per-person extra.
        """
        sv = _supervision()
        n = len(self)
        conf = self.keypoints[:, :, 2].astype(np.float32)
        data = {"layout": np.array([self.layout] * n, dtype=object)}
        data.update({k: np.asarray(v) for k, v in self.extras.items() if np.shape(v)[:1] == (n,)})
        return sv.KeyPoints(
            xy=self.keypoints[:, :, :2].astype(np.float32),
            class_id=np.zeros(n, dtype=int),
            keypoint_confidence=conf,
            detection_confidence=self.scores.astype(np.float32),
            visible=None if joint_threshold is None else conf > joint_threshold,
            data=data,
        )

    @classmethod
    def from_supervision(cls, key_points: Any, layout: str | None = None) -> Poses:
        """``Poses`` from a ``supervision.KeyPoints`` (as :meth:`to_supervision` makes or another model
        gives). Missing keypoint confidences are 1; a missing person score is the mean joint score;
        ``layout`` defaults to the one stored by :meth:`to_supervision`."""
        xy = np.asarray(key_points.xy, dtype=np.float64)
        if xy.ndim != 3 or xy.shape[2] != 2:
            raise ValueError(f"supervision KeyPoints.xy must be (N, J, 2), got {xy.shape}")
        n, j = xy.shape[:2]
        if hasattr(key_points, "keypoint_confidence"):
            conf = key_points.keypoint_confidence
        else:  # supervision < 0.29 named it `confidence` (deprecated since)
            conf = getattr(key_points, "confidence", None)
        conf = np.ones((n, j)) if conf is None else np.asarray(conf, dtype=np.float64).reshape(n, j)
        det = getattr(key_points, "detection_confidence", None)
        scores = conf.mean(axis=1) if n and det is None else np.asarray(det if det is not None else [], float)
        data = dict(getattr(key_points, "data", {}) or {})
        stored = data.pop("layout", None)
        if layout is None:
            if stored is None or len(stored) == 0:
                raise ValueError("from_supervision: pass layout= (the KeyPoints carry no bupose layout)")
            layout = str(stored[0])
        extras = {k: np.asarray(v) for k, v in data.items() if np.shape(v)[:1] == (n,)}
        return cls(np.concatenate([xy, conf[:, :, None]], axis=2), scores, layout, extras)


def supervision_edges(layout: str | Any) -> list[tuple[int, int]]:
    """The layout's skeleton as supervision's 1-based edge list (for ``EdgeAnnotator(edges=...)``)."""
    from .layouts import get_layout

    return [(a + 1, b + 1) for a, b in get_layout(layout).skeleton]


def _supervision() -> Any:
    try:
        import supervision
    except ImportError:
        raise ImportError("Poses.to_supervision needs the supervision package: pip install supervision") from None
    return supervision
