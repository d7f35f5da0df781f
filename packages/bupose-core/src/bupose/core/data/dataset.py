"""COCO-format keypoint datasets (COCO, CrowdPose, OCHuman, synthetic, any COCO-format json).

Image files. For an annotation json at ``DIR/name.json`` (or a folder ``DIR`` holding
``annotations.json``) an image's ``file_name`` is resolved against the *image root*: ``image_root``
when given, otherwise ``DIR/images`` if that folder exists, otherwise ``DIR``. The named forms fix
the root: ``coco:ROOT:SPLIT`` -> ``ROOT/annotations/person_keypoints_SPLIT.json`` with images in
``ROOT/SPLIT`` (or ``ROOT/images/SPLIT``); ``crowdpose:ROOT:SPLIT`` ->
``ROOT/json/crowdpose_SPLIT.json`` with images in ``ROOT/images``; ``ochuman:ROOT:SPLIT`` ->
``ROOT/ochuman_coco_format_SPLIT_range_0.00_1.00.json`` (or under ``ROOT/annotations``) with images
in ``ROOT/images``.

Samples (``dataset[i]``) follow the official bottom-up trainers (HigherHRNet/DEKR): annotations
kept are those with ``iscrowd == 0 or num_keypoints > 0``; the ignore mask is 0 on crowd regions and
on people without keypoints (their segmentations decoded with pycocotools), 1 elsewhere
(``mask_policy="none"``: all ones, as the official CrowdPose loaders do).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..layouts import get_layout
from ..specs import LayoutSpec

__all__ = ["DatasetError", "KeypointDataset", "load_dataset", "resolve_spec"]


class DatasetError(ValueError):
    """A dataset file is malformed or an image is missing; the message names file, id and problem."""



def resolve_spec(spec: str | os.PathLike[str]) -> dict[str, Any]:
    """``{annotations, image_root, layout, mask_policy}`` for a dataset spec string or path."""
    s = os.fspath(spec)
    for prefix, layout in (("coco:", "coco17"), ("crowdpose:", "crowdpose14"), ("ochuman:", "coco17")):
        if s.startswith(prefix):
            rest = s[len(prefix) :]
            root_s, sep, split = rest.rpartition(":")
            if not sep or not root_s or not split:
                raise DatasetError(f"dataset spec {s!r}: expected '{prefix}ROOT:SPLIT'")
            root = Path(root_s)
            if prefix == "coco:":
                ann = root / "annotations" / f"person_keypoints_{split}.json"
                img = root / split if (root / split).is_dir() else root / "images" / split
                return {"annotations": ann, "image_root": img, "layout": layout, "mask_policy": "coco"}
            if prefix == "crowdpose:":
                ann = root / "json" / f"crowdpose_{split}.json"
                return {"annotations": ann, "image_root": root / "images", "layout": layout, "mask_policy": "none"}
            name = f"ochuman_coco_format_{split}_range_0.00_1.00.json"
            ann = root / name if (root / name).exists() else root / "annotations" / name
            return {"annotations": ann, "image_root": root / "images", "layout": layout, "mask_policy": "coco"}
    path = Path(s)
    if path.is_dir():
        path = path / "annotations.json"
    return {"annotations": path, "image_root": None, "layout": None, "mask_policy": "coco"}


def _finite_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class KeypointDataset:
    """A COCO-format person-keypoints dataset with lazy image loading.

    ``image_ids`` lists the images in json order (images whose file is missing are dropped when
    ``skip_missing_images``; ``missing_images`` lists them). ``coco`` is a pycocotools ``COCO``.
    Safe to use from DataLoader workers (state is plain data; images are read on demand).
    """

    def __init__(
        self,
        annotations: str | os.PathLike[str],
        *,
        layout: str | LayoutSpec | None = None,
        image_root: str | os.PathLike[str] | None = None,
        skip_missing_images: bool = False,
        mask_policy: str = "coco",
    ) -> None:
        self.path = Path(annotations)
        if mask_policy not in ("coco", "none"):
            raise ValueError(f"mask_policy must be 'coco' or 'none', got {mask_policy!r}")
        self.mask_policy = mask_policy
        data = self._read()
        self.layout = self._infer_layout(data, layout)
        self._validate(data)
        self.dataset = data
        if image_root is None:
            base = self.path.parent
            image_root = base / "images" if (base / "images").is_dir() else base
        self.image_root = Path(image_root)
        self._images: dict[int, dict[str, Any]] = {img["id"]: img for img in data["images"]}
        self._anns: dict[int, list[dict[str, Any]]] = {i: [] for i in self._images}
        for a in data["annotations"]:
            self._anns[a["image_id"]].append(a)
        ids = [img["id"] for img in data["images"]]
        self.missing_images: list[str] = []
        if skip_missing_images:
            present = []
            for i in ids:
                p = self.image_path(i)
                if p.is_file():
                    present.append(i)
                else:
                    self.missing_images.append(str(p))
            if self.missing_images:
                warnings.warn(
                    f"{self.path}: {len(self.missing_images)} image file(s) missing, skipped: "
                    + ", ".join(self.missing_images[:5])
                    + (" ..." if len(self.missing_images) > 5 else ""),
                    stacklevel=2,
                )
            ids = present
        self.image_ids: list[int] = ids
        self._coco: Any = None

    # ----------------------------------------------------------------------------------- loading
    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError as exc:
            raise DatasetError(f"{self.path}: annotation file not found") from exc
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{self.path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{self.path}: cannot read the annotation file ({exc})") from exc
        if not isinstance(data, dict):
            raise DatasetError(f"{self.path}: expected a JSON object with 'images' and 'annotations'")
        for key in ("images", "annotations"):
            if not isinstance(data.get(key), list):
                raise DatasetError(f"{self.path}: missing or non-list key {key!r}")
        return data

    def _infer_layout(self, data: Mapping[str, Any], layout: str | LayoutSpec | None) -> LayoutSpec:
        if layout is not None:
            return get_layout(layout)
        n = None
        cats = data.get("categories")
        if isinstance(cats, list) and cats and isinstance(cats[0], Mapping) and isinstance(cats[0].get("keypoints"), list):
            n = len(cats[0]["keypoints"])
        elif data["annotations"] and isinstance(data["annotations"][0], Mapping):
            kp = data["annotations"][0].get("keypoints")
            n = len(kp) // 3 if isinstance(kp, list) else None
        if n == 17:
            return get_layout("coco17")
        if n == 14:
            return get_layout("crowdpose14")
        raise DatasetError(
            f"{self.path}: cannot infer the keypoint layout ({n} keypoints); pass layout=... explicitly"
        )

    def _validate(self, data: Mapping[str, Any]) -> None:
        f = self.path
        j = self.layout.num_keypoints
        image_ids: set[int] = set()
        for i, img in enumerate(data["images"]):
            if not isinstance(img, Mapping):
                raise DatasetError(f"{f}: images[{i}] is not an object")
            iid = img.get("id")
            if not isinstance(iid, int) or isinstance(iid, bool):
                raise DatasetError(f"{f}: images[{i}]: missing or non-integer 'id'")
            for key in ("file_name", "width", "height"):
                if key not in img:
                    raise DatasetError(f"{f}: image id {iid}: missing key {key!r}")
            if not isinstance(img["file_name"], str) or not img["file_name"]:
                raise DatasetError(f"{f}: image id {iid}: 'file_name' must be a non-empty string")
            for key in ("width", "height"):
                if not isinstance(img[key], int) or img[key] <= 0:
                    raise DatasetError(f"{f}: image id {iid}: {key!r} must be a positive integer, got {img[key]!r}")
            if iid in image_ids:
                raise DatasetError(f"{f}: image id {iid} appears twice")
            image_ids.add(iid)
        ann_ids: set[int] = set()
        for i, a in enumerate(data["annotations"]):
            if not isinstance(a, Mapping):
                raise DatasetError(f"{f}: annotations[{i}] is not an object")
            aid = a.get("id")
            if not isinstance(aid, int) or isinstance(aid, bool):
                raise DatasetError(f"{f}: annotations[{i}]: missing or non-integer 'id'")
            where = f"{f}: annotation id {aid}"
            for key in ("image_id", "keypoints", "num_keypoints", "iscrowd", "bbox"):
                if key not in a:
                    raise DatasetError(f"{where}: missing key {key!r}")
            if aid in ann_ids:
                raise DatasetError(f"{where}: duplicate annotation id")
            ann_ids.add(aid)
            if a["image_id"] not in image_ids:
                raise DatasetError(f"{where}: image_id {a['image_id']!r} is not in 'images'")
            kp = a["keypoints"]
            if not isinstance(kp, list) or len(kp) != 3 * j:
                n = len(kp) if isinstance(kp, list) else type(kp).__name__
                raise DatasetError(
                    f"{where}: 'keypoints' has {n} values, expected {3 * j} ({j} joints of layout {self.layout.name})"
                )
            if not isinstance(a["num_keypoints"], int) or a["num_keypoints"] < 0:
                raise DatasetError(f"{where}: 'num_keypoints' must be an integer >= 0")
            if a["iscrowd"] not in (0, 1, True, False):
                raise DatasetError(f"{where}: 'iscrowd' must be 0 or 1, got {a['iscrowd']!r}")
            box = a["bbox"]
            if not isinstance(box, list) or len(box) != 4 or not all(_finite_number(v) for v in box):
                raise DatasetError(f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h]")
            if box[2] < 0 or box[3] < 0:
                raise DatasetError(f"{where}: 'bbox' has a negative width or height")
            if "area" in a:
                if not _finite_number(a["area"]):
                    raise DatasetError(f"{where}: 'area' must be a finite number, got {a['area']!r}")
                if a["area"] < 0:
                    raise DatasetError(f"{where}: negative 'area' {a['area']}")
        # keypoint values in bulk (lengths are checked above); locate the culprit only on failure
        anns = data["annotations"]
        try:
            arr = np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(len(anns), 3 * j)
            bad_rows = np.nonzero(~np.isfinite(arr).all(axis=1))[0]
            if any(isinstance(v, bool) for v in (anns[0]["keypoints"] if anns else [])):
                raise TypeError
        except (TypeError, ValueError):
            bad_rows = np.asarray([k for k, a in enumerate(anns) if not all(_finite_number(v) for v in a["keypoints"])])
        if len(bad_rows):
            raise DatasetError(
                f"{f}: annotation id {anns[int(bad_rows[0])]['id']}: 'keypoints' contains NaN, infinity or a non-number"
            )

    # ------------------------------------------------------------------------------- accessors
    @property
    def coco(self) -> Any:
        """A pycocotools ``COCO`` over the same (validated) dataset dict."""
        if self._coco is None:
            from pycocotools.coco import COCO

            with contextlib.redirect_stdout(io.StringIO()):
                c = COCO()
                c.dataset = self.dataset
                c.createIndex()
            self._coco = c
        return self._coco

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_info(self, i: int) -> dict[str, Any]:
        """The json ``images`` entry of sample ``i``."""
        return self._images[self.image_ids[i]]

    def image_path(self, image_id: int) -> Path:
        """Where the file of image ``image_id`` (an id, not an index) is expected."""
        return self.image_root / self._images[image_id]["file_name"]

    def annotations(self, i: int) -> list[dict[str, Any]]:
        """All annotation dicts of sample ``i`` (crowd regions included), in json order."""
        return list(self._anns[self.image_ids[i]])

    def load_image(self, i: int) -> np.ndarray:
        """Sample ``i``'s image as RGB uint8 (H, W, 3); EXIF orientation ignored (as cv2 with
        IMREAD_IGNORE_ORIENTATION, like the official loaders)."""
        from ..io import read_image

        iid = self.image_ids[i]
        path = self.image_path(iid)
        try:
            return read_image(path)
        except FileNotFoundError as exc:
            raise DatasetError(f"{self.path}: image id {iid}: image file {path} is missing") from exc
        except ValueError as exc:
            raise DatasetError(f"{self.path}: image id {iid}: image file {path} is not a readable image ({exc})") from exc

    def ignore_mask(self, i: int, height: int | None = None, width: int | None = None) -> np.ndarray:
        """(H, W) float32, 1 = valid, 0 = ignored (crowd regions, people without keypoints)."""
        info = self.image_info(i)
        h = int(height or info["height"])
        w = int(width or info["width"])
        if self.mask_policy == "none":
            return np.ones((h, w), dtype=np.float32)
        from pycocotools import mask as mask_utils

        m = np.zeros((h, w), dtype=np.float64)
        for a in self._anns[self.image_ids[i]]:
            if not (a["iscrowd"] or a["num_keypoints"] == 0):
                continue
            seg = a.get("segmentation")
            if not seg:
                continue
            try:
                rle = mask_utils.frPyObjects(seg, h, w)
                dec = mask_utils.decode(rle)
            except Exception as exc:
                raise DatasetError(f"{self.path}: annotation id {a['id']}: bad 'segmentation' ({exc})") from exc
            m += dec.reshape(h, w, -1).sum(axis=2)
        return (m < 0.5).astype(np.float32)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} images")
        i = i % len(self)
        iid = self.image_ids[i]
        image = self.load_image(i)
        h, w = image.shape[:2]
        kept = [a for a in self._anns[iid] if not a["iscrowd"] or a["num_keypoints"] > 0]
        j = self.layout.num_keypoints
        kps = np.asarray([a["keypoints"] for a in kept], dtype=np.float64).reshape(len(kept), j, 3)
        return {
            "image": image,
            "keypoints": kps,
            "areas": np.asarray([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in kept]),
            "bboxes": np.asarray([a["bbox"] for a in kept], dtype=np.float64).reshape(len(kept), 4),
            "num_keypoints": np.asarray([a["num_keypoints"] for a in kept], dtype=np.int64),
            "iscrowd": np.asarray([int(a["iscrowd"]) for a in kept], dtype=np.int64),
            "ann_ids": np.asarray([a["id"] for a in kept], dtype=np.int64),
            "mask": self.ignore_mask(i, h, w),
            "image_id": int(iid),
            "image_size": (h, w),
            "index": i,
        }


def load_dataset(
    spec: str | os.PathLike[str],
    *,
    layout: str | None = None,
    skip_missing_images: bool = False,
    image_root: str | os.PathLike[str] | None = None,
    mask_policy: str | None = None,
) -> KeypointDataset:
    """Open a dataset from a json path, a folder with ``annotations.json``, or ``coco:ROOT:SPLIT``,
    ``crowdpose:ROOT:SPLIT``, ``ochuman:ROOT:SPLIT`` (see the module docstring)."""
    r = resolve_spec(spec)
    return KeypointDataset(
        r["annotations"],
        layout=layout or r["layout"],
        image_root=image_root if image_root is not None else r["image_root"],
        skip_missing_images=skip_missing_images,
        mask_policy=mask_policy or r["mask_policy"],
    )


def collate_keep(samples: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A DataLoader ``collate_fn`` that keeps samples as a list (variable people per image)."""
    return list(samples)


def _named(prefix: str, default_split: str, layout: str) -> Any:
    def open_dataset(root_or_annotations: str | os.PathLike[str], split: str = default_split, **options: Any) -> KeypointDataset:
        path = Path(root_or_annotations)
        if path.suffix == ".json" or (path.is_dir() and (path / "annotations.json").exists()):
            options.setdefault("layout", layout)
            return load_dataset(path, **options)
        return load_dataset(f"{prefix}:{path}:{split}", **options)

    open_dataset.__doc__ = (
        f"Open a {prefix} dataset: ``ROOT`` + ``split`` (default {default_split!r}) or an annotation json."
    )
    return open_dataset


open_coco = _named("coco", "val2017", "coco17")
open_crowdpose = _named("crowdpose", "test", "crowdpose14")
open_ochuman = _named("ochuman", "val", "coco17")
