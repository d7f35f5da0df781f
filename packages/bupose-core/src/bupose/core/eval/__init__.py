"""Keypoint evaluation: COCO / OCHuman (pycocotools semantics) and CrowdPose (crowdposetools semantics).

``evaluate(results, annotations, layout=...)`` returns a flat dict of metrics as fractions in [0, 1]
(-1 where pycocotools/crowdposetools give -1, i.e. no ground truth in that range):

- ``coco17`` / ``ochuman`` (and any other registered layout): ``AP, AP50, AP75, APM, APL, AR, AR50,
  AR75, ARM, ARL`` — identical to ``pycocotools.cocoeval.COCOeval(gt, dt, 'keypoints').stats``
  (maxDets 20, areas all/medium/large, GT ``area`` as OKS scale, crowd and ``num_keypoints == 0``
  ignored). Other layouts use their registered OKS sigmas.
- ``crowdpose14``: ``AP, AP50, AP75, AR, AR50, AR75, APE, APM, APH`` — identical to crowdposetools:
  14 CrowdPose sigmas, OKS scale and GT area ranges from ``bbox w*h*0.53`` (the GT ``area`` field is
  not used), E/M/H by the image's ``crowdIndex`` (< 0.2 easy, < 0.8 medium, else hard) as the plain
  mean of the subset's precision array (-1 entries included, so a subset without ground truth gives
  -1), rounded to 4 decimals as crowdposetools does. crowdposetools reports no AR per crowd level,
  so none is given; ``APM`` here is *medium crowd*, not medium area.

Results are a path to a COCO results JSON or a list of entries ``{image_id, category_id, keypoints,
score[, bbox]}``; an empty list is valid (every AP/AR is 0, or -1 without ground truth). Detection
areas follow pycocotools ``loadRes`` (box area when the first entry has a ``bbox``, else keypoint
extent). Annotations are a path, a COCO dataset dict or a pycocotools ``COCO`` object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._engine import EvalError, MatchEngine, available_engines, prepare_detections

__all__ = [
    "COCO_KEYS",
    "CROWDPOSE_KEYS",
    "EvalError",
    "available_engines",
    "evaluate",
    "format_table",
    "load_ground_truth",
    "protocol_for",
]

COCO_KEYS = ("AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL")
CROWDPOSE_KEYS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "APE", "APM", "APH")

# exactly as pycocotools / crowdposetools build them (tenths / 10.0), so OKS is bit-identical
_COCO_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)
_CROWDPOSE_SIGMAS = np.array([0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79]) / 10.0

CROWD_INDEX_THRESHOLDS = (0.2, 0.8)


def protocol_for(layout: str) -> tuple[str, np.ndarray]:
    """``("coco" | "crowdpose", sigmas)`` for a layout name (``ochuman`` = COCO protocol)."""
    if layout in ("coco17", "coco", "ochuman"):
        return "coco", _COCO_SIGMAS
    if layout in ("crowdpose14", "crowdpose"):
        return "crowdpose", _CROWDPOSE_SIGMAS
    from ..plugins import get_registry

    spec = get_registry().get("layouts", layout)
    return "coco", np.asarray(spec.sigmas, dtype=np.float64)


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise EvalError(f"{path}: {what} file not found") from exc
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"{path}: cannot read {what} file ({exc})") from exc


def _check_annotation(a: Any, i: int, source: str, num_keypoints: int, crowdpose: bool) -> None:
    """Raise an :class:`EvalError` naming the annotation and the problem, if there is one."""
    if not isinstance(a, Mapping):
        raise EvalError(f"{source}: annotations[{i}] is not an object")
    where = f"{source}: annotation id {a.get('id', f'#{i}')}"
    for key in ("id", "image_id", "category_id", "keypoints", "num_keypoints", "bbox"):
        if key not in a:
            raise EvalError(f"{where}: missing key {key!r}")
    if not crowdpose and "area" not in a:
        raise EvalError(f"{where}: missing key 'area' (the OKS scale for COCO evaluation)")
    try:
        kp = np.asarray(a["keypoints"], dtype=np.float64)
    except (TypeError, ValueError):
        kp = None
    if kp is None or kp.ndim != 1 or kp.size != 3 * num_keypoints:
        n = "non-numeric" if kp is None else kp.size
        raise EvalError(f"{where}: 'keypoints' has {n} values, expected {3 * num_keypoints}")
    if not np.all(np.isfinite(kp)):
        raise EvalError(f"{where}: 'keypoints' contains NaN or infinity")
    try:
        box = np.asarray(a["bbox"], dtype=np.float64)
    except (TypeError, ValueError):
        box = None
    if box is None or box.shape != (4,) or not np.all(np.isfinite(box)):
        raise EvalError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h]")
    if not crowdpose:
        area = a["area"]
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not np.isfinite(area) or area < 0:
            raise EvalError(f"{where}: 'area' must be a finite number >= 0, got {area!r}")


def load_ground_truth(annotations: Any, num_keypoints: int, *, crowdpose: bool = False) -> tuple[dict[str, Any], str]:
    """A validated COCO keypoints dataset dict and a name for messages.

    Annotation dicts are shallow copies (evaluation writes ``ignore``/``area`` into them).
    """
    if isinstance(annotations, (str, os.PathLike)):
        source = str(annotations)
        data = _read_json(Path(annotations), "annotations")
    elif isinstance(annotations, Mapping):
        source, data = "annotations", annotations
    elif hasattr(annotations, "dataset") and isinstance(annotations.dataset, Mapping):
        source, data = "annotations (COCO object)", annotations.dataset
    else:
        raise EvalError(f"annotations must be a path, a dict or a pycocotools COCO, got {type(annotations).__name__}")
    if not isinstance(data, Mapping):
        raise EvalError(f"{source}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise EvalError(f"{source}: missing or non-list key {key!r}")
    images = []
    for i, img in enumerate(data["images"]):
        if not isinstance(img, Mapping) or not isinstance(img.get("id"), int):
            raise EvalError(f"{source}: images[{i}] needs an integer 'id'")
        if crowdpose:
            ci = img.get("crowdIndex")
            if not isinstance(ci, (int, float)) or not np.isfinite(ci):
                raise EvalError(
                    f"{source}: image id {img['id']} has no numeric 'crowdIndex' (needed for CrowdPose E/M/H)"
                )
        images.append(img)
    anns_in = data["annotations"]
    try:  # fast path: everything well-formed
        n = len(anns_in)
        kp = np.asarray([a["keypoints"] for a in anns_in], dtype=np.float64).reshape(n, -1)
        box = np.asarray([a["bbox"] for a in anns_in], dtype=np.float64).reshape(n, -1)
        for key in ("id", "image_id", "category_id", "num_keypoints"):
            [a[key] for a in anns_in]
        ok = kp.shape[1] == 3 * num_keypoints and box.shape[1] == 4
        ok = ok and bool(np.all(np.isfinite(kp))) and bool(np.all(np.isfinite(box)))
        if not crowdpose:
            areas = np.asarray([a["area"] for a in anns_in], dtype=np.float64).reshape(n)
            ok = ok and bool(np.all(np.isfinite(areas))) and bool(np.all(areas >= 0))
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        for i, a in enumerate(anns_in):
            _check_annotation(a, i, source, num_keypoints, crowdpose)
    anns = [dict(a) for a in anns_in]
    out = dict(data)
    out["images"] = images
    out["annotations"] = anns
    out.setdefault("categories", [{"id": 1, "name": "person"}])
    return out, source


def _load_results(results: Any) -> tuple[list[Mapping[str, Any]], str]:
    if isinstance(results, (str, os.PathLike)):
        data = _read_json(Path(results), "results")
        source = str(results)
    else:
        data, source = results, "results"
    if not isinstance(data, list):
        raise EvalError(f"{source}: expected a JSON array of result objects, got {type(data).__name__}")
    return data, source


def _mean_valid(s: np.ndarray) -> float:
    v = s[s > -1]
    return float(np.mean(v)) if v.size else -1.0


def _summaries(acc: Mapping[str, Any], area: str, iou: float | None, kind: str) -> float:
    a = acc["area_labels"].index(area)
    thr = acc["iou_thrs"]
    if kind == "ap":
        s = acc["precision"]
        if iou is not None:
            s = s[np.where(iou == thr)[0]]
        return _mean_valid(s[:, :, :, a, 0])
    s = acc["recall"]
    if iou is not None:
        s = s[np.where(iou == thr)[0]]
    return _mean_valid(s[:, :, a, 0])


def evaluate(
    results: str | os.PathLike[str] | Sequence[Mapping[str, Any]],
    annotations: Any,
    layout: str = "coco17",
    *,
    engine: str = "auto",
) -> dict[str, float]:
    """Keypoint AP/AR of ``results`` against ``annotations`` (see the module docstring)."""
    protocol, sigmas = protocol_for(layout)
    k = len(sigmas)
    crowd = protocol == "crowdpose"
    gt, _ = load_ground_truth(annotations, k, crowdpose=crowd)
    if crowd:
        for a in gt["annotations"]:
            a["area"] = a["bbox"][3] * a["bbox"][2] * 0.53
    entries, rsource = _load_results(results)
    gt_ids = {int(img["id"]) for img in gt["images"]}
    dts, kps = prepare_detections(entries, k, gt_ids, rsource)
    eng = MatchEngine(gt, dts, kps, sigmas, engine=engine)
    acc = eng.run()
    out: dict[str, float] = {
        "AP": _summaries(acc, "all", None, "ap"),
        "AP50": _summaries(acc, "all", 0.5, "ap"),
        "AP75": _summaries(acc, "all", 0.75, "ap"),
    }
    if not crowd:
        out["APM"] = _summaries(acc, "medium", None, "ap")
        out["APL"] = _summaries(acc, "large", None, "ap")
    out["AR"] = _summaries(acc, "all", None, "ar")
    out["AR50"] = _summaries(acc, "all", 0.5, "ar")
    out["AR75"] = _summaries(acc, "all", 0.75, "ar")
    if not crowd:
        out["ARM"] = _summaries(acc, "medium", None, "ar")
        out["ARL"] = _summaries(acc, "large", None, "ar")
        return {key: out[key] for key in COCO_KEYS}
    first, second = CROWD_INDEX_THRESHOLDS
    subsets: dict[str, list[int]] = {"APE": [], "APM": [], "APH": []}
    for img in gt["images"]:
        ci = img["crowdIndex"]
        subsets["APE" if ci < first else "APM" if ci < second else "APH"].append(int(img["id"]))
    for key, ids in subsets.items():
        if not ids:
            out[key] = -1.0
            continue
        sub = eng.run(ids)
        area_all = sub["area_labels"].index("all")
        out[key] = float(round(float(np.mean(sub["precision"][:, :, :, area_all, :])), 4))
    return {key: out[key] for key in CROWDPOSE_KEYS}


_LABELS = {
    "AP": "Average Precision  (AP) @[ OKS=0.50:0.95 | area=   all ]",
    "AP50": "Average Precision  (AP) @[ OKS=0.50      | area=   all ]",
    "AP75": "Average Precision  (AP) @[ OKS=0.75      | area=   all ]",
    "APM": "Average Precision  (AP) @[ OKS=0.50:0.95 | area=medium ]",
    "APL": "Average Precision  (AP) @[ OKS=0.50:0.95 | area= large ]",
    "AR": "Average Recall     (AR) @[ OKS=0.50:0.95 | area=   all ]",
    "AR50": "Average Recall     (AR) @[ OKS=0.50      | area=   all ]",
    "AR75": "Average Recall     (AR) @[ OKS=0.75      | area=   all ]",
    "ARM": "Average Recall     (AR) @[ OKS=0.50:0.95 | area=medium ]",
    "ARL": "Average Recall     (AR) @[ OKS=0.50:0.95 | area= large ]",
}
_CROWD_LABELS = {
    "APE": "Average Precision  (AP) @[ OKS=0.50:0.95 | crowd=  easy ]",
    "APM": "Average Precision  (AP) @[ OKS=0.50:0.95 | crowd=medium ]",
    "APH": "Average Precision  (AP) @[ OKS=0.50:0.95 | crowd=  hard ]",
}


def format_table(metrics: Mapping[str, float], layout: str = "coco17") -> str:
    """The metrics as a pycocotools-style text table (maxDets=20)."""
    crowd = layout in ("crowdpose14", "crowdpose")
    lines = []
    for key, value in metrics.items():
        label = (_CROWD_LABELS.get(key) if crowd else None) or _LABELS.get(key, key)
        lines.append(f" {label} = {value:0.3f}   {key}")
    return "\n".join(lines)
