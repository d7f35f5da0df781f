"""The OKS matching engine behind :func:`bupose.core.eval.evaluate`.

Semantics are pycocotools' ``COCOeval(iouType='keypoints')``: the same result preparation as
``COCO.loadRes``, the same OKS, the same greedy matching and accumulation. Two things are done
differently, for speed only:

- OKS is computed for every (detection, ground truth) pair of the whole set at once with numpy
  (grouped by the number of labelled joints, so every sum runs over the same values in the same
  order as pycocotools' per-pair ``np.sum``) and handed to the evaluator through ``computeOks``;
- matching and accumulation run in faster-coco-eval's C++ ``COCOeval_faster`` when it is installed
  (``engine="faster"``), otherwise in pycocotools' ``COCOeval`` (``engine="pycocotools"``).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..algorithms.oks import oks_pairs

__all__ = ["EvalError", "MatchEngine", "available_engines", "prepare_detections"]


class EvalError(ValueError):
    """Evaluation input is malformed: the message names the file/entry and what was expected."""


def available_engines() -> list[str]:
    """Installed matching engines, fastest first."""
    out = []
    try:
        import faster_coco_eval  # noqa: F401

        out.append("faster")
    except ImportError:
        pass
    out.append("pycocotools")
    return out


def _bad_entry(entries: Sequence[Any], num_keypoints: int, gt_image_ids: set[int], source: str) -> EvalError:
    """Locate the first malformed result entry and describe it (slow path, only on failure)."""
    for i, e in enumerate(entries):
        where = f"{source}: result #{i}"
        if not isinstance(e, Mapping):
            return EvalError(f"{where}: expected an object, got {type(e).__name__}")
        for key in ("image_id", "category_id", "keypoints", "score"):
            if key not in e:
                return EvalError(f"{where}: missing key {key!r}")
        where += f" (image_id {e['image_id']!r})"
        try:
            kp = np.asarray(e["keypoints"], dtype=np.float64)
        except (TypeError, ValueError):
            return EvalError(f"{where}: 'keypoints' must be a list of numbers")
        if kp.ndim != 1 or kp.size != 3 * num_keypoints:
            return EvalError(
                f"{where}: 'keypoints' has {kp.size} values, expected {3 * num_keypoints} "
                f"({num_keypoints} joints x 3)"
            )
        if not np.all(np.isfinite(kp)):
            return EvalError(f"{where}: 'keypoints' contains NaN or infinity")
        try:
            score = float(e["score"])
        except (TypeError, ValueError):
            return EvalError(f"{where}: 'score' must be a number, got {e['score']!r}")
        if not math.isfinite(score):
            return EvalError(f"{where}: 'score' is {score}")
        if not isinstance(e["image_id"], (int, np.integer)) or isinstance(e["image_id"], bool):
            return EvalError(f"{where}: 'image_id' must be an integer")
        if int(e["image_id"]) not in gt_image_ids:
            return EvalError(f"{where}: image_id {e['image_id']} is not in the ground truth images")
    return EvalError(f"{source}: results could not be read")


def prepare_detections(
    entries: Sequence[Mapping[str, Any]],
    num_keypoints: int,
    gt_image_ids: set[int],
    source: str = "results",
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Validate COCO keypoint results and complete them exactly as pycocotools ``loadRes`` does.

    Detection ``area`` and ``bbox``: when the *first* entry carries a non-empty ``bbox`` every
    entry's area is its box ``w*h`` (pycocotools' bbox branch); otherwise the area is the extent of
    the keypoints and ``bbox`` is replaced by it. ``id`` is the 1-based position. Inputs are not
    modified (new dicts are returned). Also returns the keypoints as one ``(N, 3K)`` float64 array
    (row ``id - 1``).
    """
    n = len(entries)
    if n == 0:
        return [], np.zeros((0, 3 * num_keypoints))
    try:
        image_ids = np.fromiter((e["image_id"] for e in entries), dtype=np.int64, count=n)
        kps = np.asarray([e["keypoints"] for e in entries], dtype=np.float64)
        scores = np.asarray([float(e["score"]) for e in entries], dtype=np.float64)
        cats = [e["category_id"] for e in entries]
        ok = (
            kps.ndim == 2
            and kps.shape[1] == 3 * num_keypoints
            and bool(np.all(np.isfinite(kps)))
            and bool(np.all(np.isfinite(scores)))
            and all(type(e["image_id"]) is int or isinstance(e["image_id"], np.integer) for e in entries)
            and set(np.unique(image_ids).tolist()) <= gt_image_ids
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise _bad_entry(entries, num_keypoints, gt_image_ids, source)

    first = entries[0]
    use_bbox = "bbox" in first and first["bbox"] != []
    if use_bbox:
        try:
            boxes = np.asarray([e["bbox"] for e in entries], dtype=np.float64)
            if boxes.shape != (n, 4):
                raise ValueError
        except (KeyError, TypeError, ValueError) as exc:
            raise EvalError(
                f"{source}: the first result has a 'bbox', so every result needs a 4-number 'bbox' "
                "(pycocotools takes detection areas from boxes in that case)"
            ) from exc
        areas = boxes[:, 2] * boxes[:, 3]
        bbox_lists = [e["bbox"] for e in entries]
    else:
        x = kps[:, 0::3]
        y = kps[:, 1::3]
        x0, x1 = x.min(axis=1), x.max(axis=1)
        y0, y1 = y.min(axis=1), y.max(axis=1)
        areas = (x1 - x0) * (y1 - y0)
        bbox_lists = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).tolist()
    area_list = areas.tolist()
    score_list = scores.tolist()
    id_list = image_ids.tolist()
    out = []
    for i, e in enumerate(entries):
        out.append(
            {
                "image_id": id_list[i],
                "category_id": cats[i],
                "keypoints": e["keypoints"],
                "score": score_list[i],
                "area": area_list[i],
                "bbox": bbox_lists[i],
                "id": i + 1,
                "iscrowd": 0,
            }
        )
    return out, kps


def oks_table(
    gts: Sequence[Mapping[str, Any]],
    dts: Sequence[Mapping[str, Any]],
    d_kps: np.ndarray,
    sigmas: np.ndarray,
    cat_ids: Sequence[int],
    max_det: int,
) -> dict[tuple[int, int], np.ndarray]:
    """OKS matrices ``(D, G)`` per (image, category), detections in descending score order
    (stable) truncated to ``max_det``, ground truths in annotation order, as pycocotools'
    ``computeOks``. ``d_kps`` holds detection ``i``'s keypoints in row ``id - 1``. Pairs without detections or without ground truth are absent."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    k = sigmas.shape[0]
    if not gts or not dts:
        return {}
    cat_sorted = np.asarray(sorted(set(int(c) for c in cat_ids)), dtype=np.int64)
    ncat = len(cat_sorted)
    if ncat == 0:
        return {}

    g_img = np.asarray([g["image_id"] for g in gts], dtype=np.int64)
    g_cat = np.asarray([g["category_id"] for g in gts], dtype=np.int64)
    img_sorted = np.unique(g_img)

    def group_of(img: np.ndarray, cat: np.ndarray) -> np.ndarray:
        ii = np.searchsorted(img_sorted, img)
        ci = np.searchsorted(cat_sorted, cat)
        valid = (
            (ii < len(img_sorted))
            & (ci < ncat)
            & (img_sorted[np.minimum(ii, len(img_sorted) - 1)] == img)
            & (cat_sorted[np.minimum(ci, ncat - 1)] == cat)
        )
        return np.where(valid, ii * ncat + ci, -1)

    g_grp = group_of(g_img, g_cat)
    keep_g = np.nonzero(g_grp >= 0)[0]
    g_kp = np.asarray([gts[i]["keypoints"] for i in keep_g], dtype=np.float64).reshape(len(keep_g), k, 3)
    g_area = np.asarray([gts[i]["area"] for i in keep_g], dtype=np.float64)
    g_box = np.asarray([gts[i]["bbox"] for i in keep_g], dtype=np.float64).reshape(len(keep_g), 4)
    g_grp = g_grp[keep_g]

    d_rows = np.asarray([d["id"] - 1 for d in dts], dtype=np.int64)
    d_img = np.asarray([d["image_id"] for d in dts], dtype=np.int64)
    d_cat = np.asarray([d["category_id"] for d in dts], dtype=np.int64)
    d_score = np.asarray([d["score"] for d in dts], dtype=np.float64)
    d_grp = group_of(d_img, d_cat)
    keep_d = np.nonzero(d_grp >= 0)[0]
    if len(keep_d) == 0 or len(keep_g) == 0:
        return {}
    # stable: by group, then by descending score, ties in input order (pycocotools mergesort)
    order = keep_d[np.lexsort((-d_score[keep_d], d_grp[keep_d]))]
    d_grp_sorted = d_grp[order]
    ngroups = len(img_sorted) * ncat
    d_count = np.bincount(d_grp_sorted, minlength=ngroups)
    d_start = np.concatenate([[0], np.cumsum(d_count)[:-1]])
    rank = np.arange(len(order)) - d_start[d_grp_sorted]
    sel = rank < max_det
    order = order[sel]
    d_grp_sorted = d_grp_sorted[sel]
    nd = np.bincount(d_grp_sorted, minlength=ngroups)
    nd_start = np.concatenate([[0], np.cumsum(nd)[:-1]])

    g_order = np.argsort(g_grp, kind="stable")
    ng = np.bincount(g_grp, minlength=ngroups)
    ng_start = np.concatenate([[0], np.cumsum(ng)[:-1]])

    groups = np.nonzero((nd > 0) & (ng > 0))[0]
    if len(groups) == 0:
        return {}
    sizes = nd[groups] * ng[groups]
    total = int(sizes.sum())
    pair_group = np.repeat(groups, sizes)
    pair_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    offs = np.arange(total) - np.repeat(pair_start, sizes)
    ngp = ng[pair_group]
    d_local = offs // ngp
    g_local = offs % ngp
    d_idx = d_rows[order[nd_start[pair_group] + d_local]]
    g_idx = g_order[ng_start[pair_group] + g_local]

    # gather per pair (contiguous (P, k) arrays); oks_pairs does the same float64 operations, in
    # the same order, as pycocotools' computeOks, so that every OKS value is bit-identical
    d_x = np.ascontiguousarray(d_kps[:, 0::3])
    d_y = np.ascontiguousarray(d_kps[:, 1::3])
    g_x = np.ascontiguousarray(g_kp[:, :, 0])
    g_y = np.ascontiguousarray(g_kp[:, :, 1])
    g_vis = g_kp[:, :, 2] > 0
    oks = oks_pairs(
        d_x[d_idx], d_y[d_idx], g_x[g_idx], g_y[g_idx], g_vis[g_idx], g_area[g_idx], sigmas, g_box[g_idx]
    )

    table: dict[tuple[int, int], np.ndarray] = {}
    img_list = img_sorted.tolist()
    cat_list = cat_sorted.tolist()
    starts = pair_start.tolist()
    for gi, grp in enumerate(groups.tolist()):
        s = starts[gi]
        dn, gn = int(nd[grp]), int(ng[grp])
        table[(img_list[grp // ncat], cat_list[grp % ncat])] = oks[s : s + dn * gn].reshape(dn, gn)
    return table


@contextlib.contextmanager
def _quiet() -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        yield


class MatchEngine:
    """Runs pycocotools-semantics keypoint matching/accumulation on prepared GT and detections.

    ``gt_dataset`` is a COCO dataset dict (its annotation dicts are used as given: pass copies);
    ``detections`` come from :func:`prepare_detections`.
    """

    def __init__(
        self,
        gt_dataset: Mapping[str, Any],
        detections: list[dict[str, Any]],
        detection_keypoints: np.ndarray,
        sigmas: np.ndarray,
        engine: str = "auto",
    ) -> None:
        engines = available_engines()
        if engine == "auto":
            engine = engines[0]
        if engine not in ("faster", "pycocotools"):
            raise EvalError(f"unknown evaluation engine {engine!r}; expected one of {engines}")
        if engine not in engines:
            raise EvalError(f"evaluation engine {engine!r} is not installed (pip install faster-coco-eval)")
        self.engine = engine
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        dt_dataset = {
            "images": list(gt_dataset["images"]),
            "categories": list(gt_dataset.get("categories", [])),
            "annotations": detections,
        }
        with _quiet():
            if engine == "faster":
                from faster_coco_eval import COCO as _COCO
            else:
                from pycocotools.coco import COCO as _COCO
            self.gt = _COCO()
            self.gt.dataset = dict(gt_dataset)
            self.gt.createIndex()
            self.dt = _COCO()
            self.dt.dataset = dt_dataset
            self.dt.createIndex()
        self.all_image_ids = sorted(self.gt.getImgIds())
        self.cat_ids = sorted(self.gt.getCatIds())
        self.table = oks_table(
            gt_dataset["annotations"], detections, detection_keypoints, self.sigmas, self.cat_ids, 20)

    def _oks(self, img_id: int, cat_id: int) -> Any:
        return self.table.get((img_id, cat_id), [])

    def run(self, image_ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Evaluate + accumulate over ``image_ids`` (default all); returns ``precision`` (T,R,K,A,M),
        ``recall`` (T,K,A,M), ``iou_thrs`` and ``area_labels``."""
        with _quiet():
            if self.engine == "faster":
                from faster_coco_eval import COCOeval_faster

                ev: Any = COCOeval_faster(
                    self.gt, self.dt, "keypoints", kpt_oks_sigmas=list(self.sigmas), print_function=_noop
                )
            else:
                from pycocotools.cocoeval import COCOeval

                ev = COCOeval(self.gt, self.dt, "keypoints")
                ev.params.kpt_oks_sigmas = self.sigmas
            ev.params.imgIds = list(self.all_image_ids if image_ids is None else image_ids)
            ev.params.catIds = list(self.cat_ids)
            ev.computeOks = self._oks
            ev.evaluate()
            ev.accumulate()
        return {
            "precision": np.asarray(ev.eval["precision"], dtype=np.float64),
            "recall": np.asarray(ev.eval["recall"], dtype=np.float64),
            "iou_thrs": np.asarray(ev.params.iouThrs, dtype=np.float64),
            "area_labels": list(ev.params.areaRngLbl),
            "max_dets": list(ev.params.maxDets),
        }


def _noop(*args: Any, **kwargs: Any) -> None:
    return None
