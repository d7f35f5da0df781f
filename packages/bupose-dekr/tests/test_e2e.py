"""End to end: official-format checkpoints built from manifest_w32_coco.tsv + recipe (plain and
"headscaled", shared/golden/dekr/README.md), given to ``bupose run``; results compared with the
official test pipeline's outputs (shared/golden/dekr/e2e/, copied byte for byte)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bupose.core.cli import build_cli

sys.path.insert(0, str(Path(__file__).parent))
from _dekr_golden import E2E, build_state_dict

IMAGES = ("000000000011.png", "000000000012.png")
IMAGE_IDS = {"000000000011.png": 11, "000000000012.png": 12}

pytest.importorskip("bupose.hrnet", reason="the end-to-end test needs bupose-hrnet (test extra)")


@pytest.fixture(scope="module", autouse=True)
def _no_tf32() -> Any:
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints saved as the official files are (plain dicts, no prefix) + the input images."""
    tmp = tmp_path_factory.mktemp("dekr_e2e")
    sd = build_state_dict("manifest_w32_coco.tsv")
    plain = tmp / "pose_dekr_hrnetw32_coco.pth"
    torch.save(sd, plain)
    scaled = dict(sd)
    k = torch.tensor(1e-3, dtype=torch.float32)
    scaled["head_heatmap.1.weight"] = sd["head_heatmap.1.weight"] * k
    for j in range(17):
        scaled[f"offset_final_layer.{j}.weight"] = sd[f"offset_final_layer.{j}.weight"] * k
    bias = sd["head_heatmap.1.bias"].clone()
    bias[17] = bias[17] + torch.tensor(1.5, dtype=torch.float32)
    scaled["head_heatmap.1.bias"] = bias
    headscaled = tmp / "headscaled" / "pose_dekr_hrnetw32_coco.pth"
    headscaled.parent.mkdir()
    torch.save(scaled, headscaled)
    rescore = tmp / "final_rescore_coco_kpt.pth"
    torch.save(build_state_dict("manifest_rescore_coco.tsv"), rescore)
    images = tmp / "images"
    images.mkdir()
    for name in IMAGES:
        shutil.copyfile(E2E / name, images / name)
    return {"plain": plain, "headscaled": headscaled, "rescore": rescore, "images": images}


def _run(args: list[str]) -> Any:
    result = CliRunner().invoke(build_cli(), args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _by_image(entries: list[dict[str, Any]], key: Any) -> list[dict[str, Any]]:
    return [e for e in entries if e["image_id"] == key]


def _compare(ours: list[dict[str, Any]], ref: list[dict[str, Any]], rescored: bool) -> None:
    for name, iid in IMAGE_IDS.items():
        a, b = _by_image(ours, name), _by_image(ref, iid)
        assert len(a) == len(b), f"{name}: {len(a)} poses, official {len(b)}"
        if not b:
            continue
        ka = np.array([e["keypoints"] for e in a]).reshape(len(a), 17, 3)
        kb = np.array([e["keypoints"] for e in b]).reshape(len(b), 17, 3)
        # same order (keypoints would not match otherwise), keypoints within 1e-2 px
        np.testing.assert_allclose(ka[..., :2], kb[..., :2], rtol=0, atol=1e-2)
        np.testing.assert_allclose(ka[..., 2], kb[..., 2], rtol=0, atol=1e-5)
        sa = np.array([e["score"] for e in a])
        sb = np.array([e["score"] for e in b])
        if rescored:
            np.testing.assert_allclose(sa, sb, rtol=0, atol=1e-5)
        else:
            np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=0)
        np.testing.assert_allclose(np.array([e["bbox"] for e in a]), np.array([e["bbox"] for e in b]), atol=2e-2)
        assert all(e["category_id"] == 1 for e in a)


def test_headscaled_matches_official(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(
        [
            "run", "--head", "dekr", "--backbone", "hrnet_w32", "--weights", str(files["headscaled"]),
            "--flip", "--batch-size", "2", *(str(files["images"] / n) for n in IMAGES), "--output", str(out),
        ]
    )  # fmt: skip
    ours = json.loads((out / "results.json").read_text())
    ref = json.loads((E2E / "e2e_w32_coco_headscaled_flip_norescore.json").read_text())
    assert len(ours) == len(ref) == 57
    _compare(ours, ref, rescored=False)
    for name in IMAGES:
        assert (out / "overlays" / f"{Path(name).stem}.jpg").is_file()


def test_headscaled_rescored_matches_official(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(
        [
            "run", "--head", "dekr", "--backbone", "hrnet_w32", "--weights", str(files["headscaled"]),
            "--rescore-weights", str(files["rescore"]), "--flip", "--no-overlays",
            str(files["images"]), "--output", str(out),
        ]
    )  # fmt: skip
    ours = json.loads((out / "results.json").read_text())
    ref = json.loads((E2E / "e2e_w32_coco_headscaled_flip_rescore.json").read_text())
    _compare(ours, ref, rescored=True)
    assert not (out / "overlays").exists()


def test_plain_recipe_checkpoint_detects_no_one(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _run(
        [
            "run", "--head", "dekr", "--backbone", "hrnet_w32", "--weights", str(files["plain"]),
            "--flip", "--no-overlays", *(str(files["images"] / n) for n in IMAGES), "--output", str(out),
        ]
    )  # fmt: skip
    assert json.loads((out / "results.json").read_text()) == []
    assert json.loads((E2E / "e2e_w32_coco_flip_norescore.json").read_text()) == []
    assert "2 image(s), 0 pose(s)" in res.output
