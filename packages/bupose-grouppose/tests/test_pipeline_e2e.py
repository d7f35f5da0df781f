"""End to end: ``bupose run --head grouppose --backbone resnet50 --weights FILE IMAGES --output DIR``
(batch 1, and ``--batch-size 2 --option batch_mode=pad``) with the recipe-built official training
file writes DIR/results.json as the official val pipeline would.

The expectation is assembled from the pieces each golden fixture checks (Pillow DETR resize and
normalisation: ``preprocess.pt``; the padded batch: ``preprocess.pt`` batch; the network:
``forward_r50_coco.pt``; PostProcess and the COCO entries: ``postprocess_coco.pt/json``), called
directly rather than through the pipeline: person-class entries (category 1), scores and keypoints
of the top-50 selection, in order. Images are thin so that the official resize (long side 1333)
stays small on a CPU (about 1300 encoder tokens). Batch-size independence of the default mode is
checked by HeadContract's pipeline test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bupose.core.batch import Batch
from bupose.core.io import read_image
from bupose.core.model import build_model
from bupose.grouppose.convert import from_official
from bupose.grouppose.postprocess import postprocess
from bupose.grouppose.preprocess import pad_batch, resize_image, to_network_input

SIZES = {"a_thin.png": (8, 320), "b_thin.png": (10, 300)}  # (h, w): resized 33x1320 and 44x1320


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import cv2

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for name, (h, w) in SIZES.items():
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) % 64) * 4], -1).astype(np.uint8)
        img = np.clip(img.astype(int) + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / name), img[:, :, ::-1])
    return folder


@pytest.fixture(scope="module")
def reference_model(r50_official_sd):
    model = build_model("grouppose", "resnet50").eval()
    model.load_state_dict(from_official(r50_official_sd), strict=True)
    return model


def _expected(model, folder: Path, pad: bool) -> list[dict]:
    names = sorted(SIZES)
    arrays = [read_image(folder / n) for n in names]
    tensors = [to_network_input(resize_image(a, 800, 1333)) for a in arrays]
    groups = [list(range(len(names)))] if pad else [[i] for i in range(len(names))]
    entries: list[dict] = []
    per_image: dict[int, list[dict]] = {}
    for idx in groups:
        batch = pad_batch([tensors[i] for i in idx]) if pad else Batch(images=tensors[idx[0]][None])
        with torch.no_grad():
            out = model(batch)
        res = postprocess(out["pred_logits"], out["pred_keypoints"], [arrays[i].shape[:2] for i in idx], 50)
        for i, r in zip(idx, res, strict=True):
            per_image[i] = [
                {"image_id": names[i], "category_id": 1, "keypoints": kp, "score": s}
                for s, lab, kp in zip(r.scores.tolist(), r.labels.tolist(), r.keypoints.tolist(), strict=True)
                if lab == 1
            ]
    for i in range(len(names)):
        entries += per_image[i]
    return entries


def _run(args: list[str]) -> list[dict]:
    from bupose.core.cli import build_cli

    res = CliRunner().invoke(build_cli(), args)
    assert res.exit_code == 0, res.output
    out = Path(args[args.index("--output") + 1])
    return json.loads((out / "results.json").read_text())


def _compare(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected) and len(got) > 0
    for g, e in zip(got, expected, strict=True):
        assert g["image_id"] == e["image_id"] and g["category_id"] == 1
        assert abs(g["score"] - e["score"]) < 1e-4
        np.testing.assert_allclose(g["keypoints"], e["keypoints"], rtol=0, atol=1e-2)


def test_batch1_and_padded_batch2(images: Path, r50_training_file: Path, reference_model, tmp_path: Path) -> None:
    base = ["run", "--head", "grouppose", "--backbone", "resnet50", "--weights", str(r50_training_file), str(images)]
    one = _run([*base, "--output", str(tmp_path / "b1")])
    _compare(one, _expected(reference_model, images, pad=False))
    padded = _run([*base, "--output", str(tmp_path / "b2"), "--batch-size", "2", "--option", "batch_mode=pad"])
    _compare(padded, _expected(reference_model, images, pad=True))
    # the padded image's result depends on its batch mate in pad mode, not in the default mode
    pad_a = [e for e in padded if e["image_id"] == "a_thin.png"]
    one_a = [e for e in one if e["image_id"] == "a_thin.png"]
    assert [e["score"] for e in pad_a] != pytest.approx([e["score"] for e in one_a], abs=1e-4)


@pytest.mark.parametrize(("flag", "message"), [
    (["--flip"], "GroupPose has no flip test"),
    (["--scales", "0.5,1"], "GroupPose has no multi-scale test"),
    (["--option", "batch_mode=rows"], "batch_mode"),
])  # fmt: skip
def test_unsupported_test_options_are_refused(flag: list[str], message: str, tmp_path: Path) -> None:
    from bupose.core.cli import build_cli

    res = CliRunner().invoke(build_cli(), ["run", "--head", "grouppose", "--backbone", "resnet50", *flag,
                                           "--output", str(tmp_path), str(tmp_path)])  # fmt: skip
    assert res.exit_code != 0 and message in res.output
