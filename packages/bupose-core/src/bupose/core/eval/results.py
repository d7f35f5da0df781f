"""COCO keypoint results files: ``[{image_id, category_id, keypoints, score[, bbox]}, ...]``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._engine import EvalError

__all__ = ["load_results", "poses_to_results", "write_metrics", "write_results"]


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> plain Python (``json.dump`` rejects numpy types)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _entry(e: Mapping[str, Any], i: int, path: str) -> dict[str, Any]:
    for key in ("image_id", "category_id", "keypoints", "score"):
        if key not in e:
            raise EvalError(f"{path}: result #{i} is missing {key!r}")
    out = {k: _plain(v) for k, v in e.items()}
    kp = out["keypoints"]
    if not isinstance(kp, list) or len(kp) % 3 != 0:
        raise EvalError(f"{path}: result #{i} 'keypoints' must be a flat list of 3*J numbers")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in kp):
        raise EvalError(f"{path}: result #{i} (image_id {out['image_id']}) has NaN/inf or non-numbers in 'keypoints'")
    if not isinstance(out["score"], (int, float)) or not math.isfinite(out["score"]):
        raise EvalError(f"{path}: result #{i} (image_id {out['image_id']}) has a non-finite 'score'")
    return out


def write_results(path: str | os.PathLike[str], entries: Iterable[Mapping[str, Any]]) -> Path:
    """Write COCO results JSON atomically (numpy values converted); returns the path."""
    from ..weights import atomic_write

    plain = [_entry(e, i, str(path)) for i, e in enumerate(entries)]

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(plain, f)

    return atomic_write(path, write)


def load_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a COCO results JSON (a list of objects); clear error on a malformed file."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as exc:
        raise EvalError(f"{path}: results file not found") from exc
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, list):
        raise EvalError(f"{path}: expected a JSON array of result objects")
    return [_entry(e, i, str(path)) if isinstance(e, Mapping) else _bad(path, i) for i, e in enumerate(data)]


def _bad(path: Any, i: int) -> dict[str, Any]:
    raise EvalError(f"{path}: result #{i} is not an object")


def poses_to_results(poses_by_image: Mapping[int, Any], category_id: int = 1, with_bbox: bool = True) -> list[dict[str, Any]]:
    """COCO results entries from ``{image_id: Poses}`` (``Poses.to_coco`` per image, in key order)."""
    out: list[dict[str, Any]] = []
    for image_id, poses in poses_by_image.items():
        out.extend(poses.to_coco(int(image_id), category_id=category_id, with_bbox=with_bbox))
    return out


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Write a flat JSON object of metrics atomically."""
    from ..weights import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
            f.write("\n")

    return atomic_write(path, write)
