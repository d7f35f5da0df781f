"""COCO-format dataset loading: synthetic output, spec forms, ignore masks, malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from bupose.core.data import DatasetError, KeypointDataset, load_dataset, resolve_spec
from bupose.core.data.synth import generate

GOLDEN = Path(__file__).parent / "data" / "golden" / "dekr"  # copied from /work/shared/golden/dekr


@pytest.fixture(scope="module")
def synth_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_coco")
    generate(out, layout="coco17", num_images=12, size=128, seed=5, progress=False)
    return out


def _write_png(path: Path, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 127, np.uint8))


def _tiny(tmp_path: Path, mutate=None, images: bool = True) -> Path:
    data = {
        "images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 30}, {"id": 9, "file_name": "b.png", "width": 40, "height": 30}],
        "annotations": [
            {"id": 11, "image_id": 7, "category_id": 1, "keypoints": [5, 6, 2] * 17, "num_keypoints": 17, "area": 100.0,
             "bbox": [1, 1, 20, 20], "iscrowd": 0, "segmentation": [[1, 1, 21, 1, 21, 21, 1, 21]]},
            {"id": 12, "image_id": 9, "category_id": 1, "keypoints": [0, 0, 0] * 17, "num_keypoints": 0, "area": 50.0,
             "bbox": [10, 10, 5, 10], "iscrowd": 0, "segmentation": [[10, 10, 15, 10, 15, 20, 10, 20]]},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }  # fmt: skip
    if mutate:
        mutate(data)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    if images:
        for name in ("a.png", "b.png"):
            _write_png(tmp_path / "images" / name, 30, 40)
    return path


def test_synth_output_loads(synth_coco: Path) -> None:
    ds = load_dataset(synth_coco)
    assert len(ds) == 12 and ds.layout.name == "coco17"
    assert ds.coco.getImgIds() == ds.image_ids
    people = 0
    for i in range(len(ds)):
        s = ds[i]
        h, w = s["image"].shape[:2]
        assert s["image"].dtype == np.uint8 and (h, w) == (128, 128)
        assert s["mask"].shape == (h, w) and s["mask"].dtype == np.float32
        n = len(s["keypoints"])
        assert s["keypoints"].shape == (n, 17, 3) and s["areas"].shape == (n,) and s["iscrowd"].shape == (n,)
        assert np.array_equal(s["num_keypoints"], (s["keypoints"][:, :, 2] > 0).sum(axis=1))
        people += n
        # crowd regions and keypoint-less people are masked out, labelled joints stay valid mostly
        for a in ds.annotations(i):
            if a["iscrowd"]:
                x, y, bw, bh = (int(v) for v in a["bbox"])
                assert s["mask"][y : y + bh, x : x + bw].mean() < 0.5
    assert people > 20


def test_mask_matches_dekr_golden(tmp_path: Path) -> None:
    """Ignore mask = official DEKR get_mask on the golden training-target annotations."""
    import torch

    fx = torch.load(GOLDEN / "targets_coco.pt", weights_only=True)
    anns = json.loads(fx["annotations_json"])
    for k, a in enumerate(anns):
        a.update(id=k + 1, image_id=1, category_id=1)
    h, w = fx["image_hw"]
    (tmp_path / "gt.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "x.png", "width": w, "height": h}], "annotations": anns}))
    _write_png(tmp_path / "images" / "x.png", h, w)
    s = load_dataset(tmp_path / "gt.json")[0]
    assert np.array_equal(s["mask"], fx["mask_image"].numpy().astype(np.float32))
    # kept annotations follow DEKR: iscrowd == 0 or num_keypoints > 0
    assert np.array_equal(s["keypoints"], fx["joints_image"][:, :17].numpy())
    assert len(s["iscrowd"]) == 6 and not s["iscrowd"].any()


def test_spec_forms(tmp_path: Path) -> None:
    r = resolve_spec(f"coco:{tmp_path}:val2017")
    assert r["annotations"] == tmp_path / "annotations" / "person_keypoints_val2017.json"
    assert r["image_root"] == tmp_path / "images" / "val2017" and r["layout"] == "coco17"
    (tmp_path / "val2017").mkdir()
    assert resolve_spec(f"coco:{tmp_path}:val2017")["image_root"] == tmp_path / "val2017"
    r = resolve_spec(f"crowdpose:{tmp_path}:test")
    assert r["annotations"] == tmp_path / "json" / "crowdpose_test.json" and r["mask_policy"] == "none"
    r = resolve_spec(f"ochuman:{tmp_path}:val")
    assert r["annotations"].name == "ochuman_coco_format_val_range_0.00_1.00.json"
    with pytest.raises(DatasetError, match="expected 'coco:ROOT:SPLIT'"):
        resolve_spec("coco:onlyroot")
    assert resolve_spec(tmp_path)["annotations"] == tmp_path / "annotations.json"


def test_coco_layout_on_disk(tmp_path: Path) -> None:
    path = _tiny(tmp_path, images=False)
    (tmp_path / "annotations").mkdir()
    path.rename(tmp_path / "annotations" / "person_keypoints_mini.json")
    _write_png(tmp_path / "mini" / "a.png", 30, 40)
    _write_png(tmp_path / "mini" / "b.png", 30, 40)
    ds = load_dataset(f"coco:{tmp_path}:mini")
    s = ds[1]
    assert s["image_id"] == 9 and s["image"].shape == (30, 40, 3)
    # the keypoint-less non-crowd person is kept (DEKR's rule) and its polygon is masked
    assert s["keypoints"].shape == (1, 17, 3) and s["mask"][12:18, 11:14].max() == 0 and s["mask"][0, 0] == 1
    assert ds.annotations(0)[0]["id"] == 11


def _set(path: str, value):
    def mutate(d):
        obj = d
        keys = path.split(".")
        for k in keys[:-1]:
            obj = obj[int(k)] if k.isdigit() else obj[k]
        last = keys[-1]
        if value is KeyError:
            del obj[last]
        else:
            obj[last] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("annotations.1.keypoints", [1, 2, 2] * 16), r"annotation id 12: 'keypoints' has 48 values, expected 51"),
        (_set("annotations.0.keypoints", [float("nan"), 1, 2] + [5, 6, 2] * 16), r"annotation id 11: 'keypoints' contains NaN"),
        (_set("annotations.0.area", -3.0), r"annotation id 11: negative 'area' -3.0"),
        (_set("annotations.1.bbox", KeyError), r"annotation id 12: missing key 'bbox'"),
        (_set("annotations.0.num_keypoints", KeyError), r"annotation id 11: missing key 'num_keypoints'"),
        (_set("annotations.0.image_id", 99), r"annotation id 11: image_id 99 is not in 'images'"),
        (_set("images.0.file_name", KeyError), r"image id 7: missing key 'file_name'"),
        (_set("annotations", KeyError), r"missing or non-list key 'annotations'"),
    ],
)
def test_malformed_annotations(tmp_path: Path, mutate, message: str) -> None:
    path = _tiny(tmp_path, mutate)
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(path, layout="coco17")
    assert str(path) in str(info.value)


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.json"
    p.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"broken\.json: not valid JSON"):
        load_dataset(p)
    with pytest.raises(DatasetError, match="annotation file not found"):
        load_dataset(tmp_path / "nope.json")


def test_missing_and_unreadable_images(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    (tmp_path / "images" / "b.png").unlink()
    ds = load_dataset(path)
    assert len(ds) == 2
    with pytest.raises(DatasetError, match=r"image id 9: image file .*b\.png is missing"):
        ds[1]
    with pytest.warns(UserWarning, match=r"1 image file\(s\) missing, skipped: .*b\.png"):
        ds = load_dataset(path, skip_missing_images=True)
    assert ds.image_ids == [7] and ds.missing_images[0].endswith("b.png")
    (tmp_path / "images" / "a.png").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"image id 7: image file .*a\.png is not a readable image"):
        ds.load_image(0)


def test_layout_inference_and_mismatch(tmp_path: Path) -> None:
    path = _tiny(tmp_path)
    assert KeypointDataset(path).layout.name == "coco17"
    with pytest.raises(DatasetError, match="expected 42 \\(14 joints of layout crowdpose14\\)"):
        load_dataset(path, layout="crowdpose14")


def test_crowdpose_synth_and_mask_policy(tmp_path: Path) -> None:
    generate(tmp_path, layout="crowdpose14", num_images=4, size=96, seed=1, progress=False)
    ds = load_dataset(tmp_path)
    assert ds.layout.name == "crowdpose14"
    assert ds[0]["keypoints"].shape[1:] == (14, 3)
    assert all(0.0 <= img["crowdIndex"] <= 1.0 for img in ds.dataset["images"])
    ds_none = load_dataset(tmp_path, mask_policy="none")
    assert all(ds_none.ignore_mask(i).min() == 1.0 for i in range(len(ds_none)))
