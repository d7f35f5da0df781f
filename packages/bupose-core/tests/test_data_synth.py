"""Synthetic scene generator: determinism, COCO validity, annotation semantics, CLI."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO

from bupose.core.cli import build_cli
from bupose.core.data.synth import generate, render_scene


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", num_images=5, size=96, seed=3, progress=False).parent
    b = generate(tmp_path / "b", num_images=5, size=96, seed=3, progress=False).parent
    c = generate(tmp_path / "c", num_images=5, size=96, seed=4, progress=False).parent
    assert _digest(a) == _digest(b) != _digest(c)


@pytest.mark.parametrize("layout", ["coco17", "crowdpose14"])
def test_valid_coco_and_semantics(tmp_path: Path, layout: str) -> None:
    path = generate(tmp_path, layout=layout, num_images=40, size=256, seed=0, progress=False)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    data = json.loads(path.read_text())
    j = 17 if layout == "coco17" else 14
    assert len(coco.getImgIds()) == 40
    assert len(data["categories"][0]["keypoints"]) == j
    counts, sizes, crowd, occluded, zero_kp = [], [], 0, 0, 0
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        people = [a for a in anns if not a["iscrowd"]]
        counts.append(len(people))
        for a in anns:
            kp = np.asarray(a["keypoints"], dtype=float).reshape(j, 3)
            assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
            assert np.all(kp[kp[:, 2] == 0, :2] == 0)
            lab = kp[kp[:, 2] > 0]
            assert np.all((lab[:, :2] >= 0) & (lab[:, :2] < 256))
            m = coco.annToMask(a)  # segmentation decodes (polygons for people, RLE for crowds)
            assert m.shape == (256, 256) and m.sum() > 0
            if a["iscrowd"]:
                crowd += 1
                assert isinstance(a["segmentation"], dict)
            else:
                sizes.append(a["area"])
                occluded += int((kp[:, 2] == 1).sum())
                zero_kp += a["num_keypoints"] == 0
        if layout == "crowdpose14":
            assert 0.0 <= coco.imgs[img_id]["crowdIndex"] <= 1.0
    assert max(counts) >= 6 and min(counts) <= 1  # 0-8+ people per image
    assert min(sizes) < 32**2 and max(sizes) > 96**2  # tiny to large
    assert crowd >= 1 and occluded > 0


def test_easy_difficulty_is_easier(tmp_path: Path) -> None:
    path = generate(tmp_path, num_images=30, size=128, seed=0, difficulty="easy", progress=False)
    data = json.loads(path.read_text())
    per_image: dict[int, int] = {}
    for a in data["annotations"]:
        assert a["iscrowd"] == 0
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    assert min(per_image.values()) >= 1 and max(per_image.values()) <= 3
    assert np.median([a["num_keypoints"] for a in data["annotations"]]) >= 12


def _xyxy(bbox: list[float]) -> np.ndarray:
    return np.array([bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]])


def test_overlap_difficulty_is_ochuman_style(tmp_path: Path) -> None:
    """2-4 people per image, every person's visible box mostly overlapping another's, heavy occlusion."""
    from bupose.core.data.synth import _box_iou

    path = generate(tmp_path / "o", num_images=30, size=128, seed=0, difficulty="overlap", progress=False)
    easy = generate(tmp_path / "e", num_images=30, size=128, seed=0, difficulty="easy", progress=False)

    def stats(p: Path) -> tuple[list[int], list[float], float]:
        data = json.loads(p.read_text())
        per: dict[int, list[dict]] = {}
        for a in data["annotations"]:
            assert a["iscrowd"] == 0
            per.setdefault(a["image_id"], []).append(a)
        ious, occluded, labelled = [], 0, 0
        for anns in per.values():
            boxes = [_xyxy(a["bbox"]) for a in anns]
            for i, b in enumerate(boxes):
                ious.append(max([_box_iou(b, c) for j, c in enumerate(boxes) if j != i], default=0.0))
            for a in anns:
                v = np.asarray(a["keypoints"]).reshape(17, 3)[:, 2]
                occluded += int((v == 1).sum())
                labelled += int((v > 0).sum())
        return [len(v) for v in per.values()], ious, occluded / labelled

    counts, ious, occ = stats(path)
    _, easy_ious, easy_occ = stats(easy)
    assert min(counts) >= 2 and max(counts) <= 4 and len(counts) == 30
    assert np.mean(np.asarray(ious) >= 0.5) >= 0.6  # OCHuman's rule holds for most people (visible boxes)
    assert np.mean(ious) > 3 * max(np.mean(easy_ious), 0.05)
    assert occ > 0.15 and occ > 3 * easy_occ
    res = CliRunner().invoke(
        build_cli(), ["data", "synth", "--overlap", "--images", "2", "--size", "64", "--out", str(tmp_path / "c")]
    )
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "c" / "annotations.json").read_text())["info"]
    assert info["difficulty"] == "overlap"


def test_left_and_right_limbs_have_distinct_hues() -> None:
    """The learnability cue: the left forearm is drawn warm, the right one cool."""
    import cv2

    img, anns, _ = render_scene(7, "coco17", 256, "easy")
    warm = cool = 0
    for a in anns:
        kp = np.asarray(a["keypoints"]).reshape(17, 3)
        for (e, w), sign in (((7, 9), 1), ((8, 10), -1)):
            if kp[e, 2] == 2 and kp[w, 2] == 2:
                mid = ((kp[e, :2] + kp[w, :2]) / 2).astype(int)
                hue = cv2.cvtColor(img[mid[1] : mid[1] + 1, mid[0] : mid[0] + 1], cv2.COLOR_RGB2HSV)[0, 0, 0]
                if sign > 0:
                    warm += hue <= 30
                else:
                    cool += 90 <= hue <= 140
    assert warm + cool >= 2


def test_cli_writes_dataset(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        build_cli(), ["data", "synth", "--layout", "crowdpose14", "--images", "3", "--out", str(tmp_path), "--seed", "1", "--size", "64"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert [img["file_name"] for img in data["images"]] == [f"{i:012d}.png" for i in (1, 2, 3)]
    assert all((tmp_path / "images" / img["file_name"]).is_file() for img in data["images"])
    res = CliRunner().invoke(build_cli(), ["data", "synth", "--layout", "mpii", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "mpii" in res.output


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layouts"):
        generate(tmp_path, layout="mpii", progress=False)
    with pytest.raises(ValueError, match="difficulty"):
        generate(tmp_path, difficulty="hard", progress=False)
