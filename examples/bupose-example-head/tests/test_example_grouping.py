"""The example head decodes through a resolved grouper: the default (core's single_person) without
--grouper, a third-party grouper registered by a test plugin with --grouper; options are validated;
`bupose run` reads and recognises the checkpoint once."""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bupose.core import plugins
from bupose.core.cli import build_cli
from bupose.core.model import PoseModel, build_model
from bupose.core.plugins import Registry
from bupose.core.weights import save_safetensors

RANKS_PLUGIN = '''
import numpy as np
from bupose.core import hookimpl, GrouperSpec
from bupose.core.poses import Poses

@hookimpl
def bupose_register_groupers(register):
    register(GrouperSpec(name="ranks", factory="ranks_grouper_plugin:Ranks", summary="person r = r-th best of each joint"))
    register(GrouperSpec(name="needs_tags", factory="ranks_grouper_plugin:Ranks", summary="x", requires=("tags",)))

class Ranks:
    def __init__(self, layout):
        self.layout = layout
    def __call__(self, candidates):
        k = min(len(s) for s in candidates.scores)
        order = [np.argsort(-s, kind="stable") for s in candidates.scores]
        kp = np.array([[[*candidates.xy[j][order[j][r]], candidates.scores[j][order[j][r]]]
                        for j in range(candidates.num_joints)] for r in range(k)]).reshape(k, candidates.num_joints, 3)
        return Poses(kp, kp[:, :, 2].mean(axis=1), self.layout.name)
'''


@pytest.fixture
def with_ranks_grouper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The installed plugins plus a test plugin registering the ``ranks`` grouper, as the registry."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "ranks_grouper_plugin.py").write_text(RANKS_PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    eps = [*md.entry_points(group="bupose"), md.EntryPoint("ranks", "ranks_grouper_plugin", "bupose")]
    reg = Registry().load(eps)
    assert not reg.errors, reg.errors
    monkeypatch.setattr(plugins, "_REGISTRY", reg)
    yield reg
    sys.modules.pop("ranks_grouper_plugin", None)


@pytest.fixture(scope="module")
def model() -> PoseModel:
    torch.manual_seed(0)
    return build_model("example", "example_convnet").eval()


@pytest.fixture
def files(model: PoseModel, tmp_path: Path) -> dict[str, Path]:
    weights = tmp_path / "example.safetensors"
    save_safetensors(weights, model.state_dict(), model.metadata())
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a.png", (48, 64)), ("b.png", (70, 40))):
        cv2.imwrite(str(images / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return {"weights": weights, "images": images}


def _run(files: dict[str, Path], out: Path, *extra: str) -> object:
    return CliRunner().invoke(build_cli(), [
        "run", "--head", "example", "--backbone", "example_convnet", "--weights", str(files["weights"]),
        "--no-overlays", "--output", str(out), *extra, str(files["images"]),
    ])  # fmt: skip


def _argmax_decode(heatmap: torch.Tensor, stride: float) -> tuple[np.ndarray, float]:
    """The example head's former decode, written out: per-joint argmax, a quarter pixel towards the
    higher neighbour, times the stride; person score = mean of the joint maxima."""
    j, h, w = heatmap.shape
    kp = np.zeros((j, 3))
    for k in range(j):
        m = heatmap[k].numpy().astype(np.float64)
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        dx = np.sign(m[y, min(x + 1, w - 1)] - m[y, max(x - 1, 0)])
        dy = np.sign(m[min(y + 1, h - 1), x] - m[max(y - 1, 0), x])
        kp[k] = ((x + 0.25 * dx) * stride, (y + 0.25 * dy) * stride, m[y, x])
    return kp, float(kp[:, 2].mean())


def test_default_grouper_reproduces_the_argmax_decode(model: PoseModel) -> None:
    from bupose_example_head.pipeline import ExamplePipeline

    pipe = ExamplePipeline(model)
    assert pipe.grouper_name == "single_person"
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)
    with torch.inference_mode():
        ours = pipe.predict_batch([img])[0]
        # the former pipeline: letterbox, network, the per-joint argmax, back to image pixels
        scale = 64 / 80
        canvas = np.zeros((64, 64, 3), np.uint8)
        canvas[:40, :64] = cv2.resize(img, (64, 40), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(canvas[None]).permute(0, 3, 1, 2).float().div(255)
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        kp, score = _argmax_decode(model(x)["heatmap"][0], model.head.stride)
    kp[:, :2] /= scale
    assert len(ours) == 1
    np.testing.assert_allclose(ours.keypoints[0], kp, rtol=1e-6, atol=1e-5)
    assert ours.scores[0] == pytest.approx(score, rel=1e-6)


def test_third_party_grouper_is_selected_by_grouper_flag(
    with_ranks_grouper: Registry, files: dict[str, Path], tmp_path: Path
) -> None:
    default = _run(files, tmp_path / "default", "--option", "max_candidates=3")
    assert default.exit_code == 0, default.output
    one = json.loads((tmp_path / "default" / "results.json").read_text())
    assert sorted(r["image_id"] for r in one) == ["a.png", "b.png"], "single_person: one person per image"
    ranked = _run(files, tmp_path / "ranks", "--option", "max_candidates=3", "--grouper", "ranks")
    assert ranked.exit_code == 0, ranked.output
    three = json.loads((tmp_path / "ranks" / "results.json").read_text())
    assert sorted(r["image_id"] for r in three) == ["a.png"] * 3 + ["b.png"] * 3
    # the ranks grouper's best person is the single_person result
    best = {r["image_id"]: r for r in three if r["score"] == max(t["score"] for t in three if t["image_id"] == r["image_id"])}
    for r in one:
        np.testing.assert_allclose(best[r["image_id"]]["keypoints"], r["keypoints"], atol=1e-4)


def test_grouper_errors_are_one_clear_line(with_ranks_grouper: Registry, files: dict[str, Path], tmp_path: Path) -> None:
    res = _run(files, tmp_path / "o1", "--grouper", "needs_tags")
    assert res.exit_code != 0 and "grouper 'needs_tags' needs candidate field(s) tags" in res.output
    assert "groupers that work with it: ranks, single_person" in res.output
    res = _run(files, tmp_path / "o2", "--grouper", "rank")
    assert res.exit_code != 0 and "unknown grouper 'rank'" in res.output and "Did you mean 'ranks'?" in res.output


def test_options_and_short_flags_follow_the_declared_options(files: dict[str, Path], tmp_path: Path) -> None:
    res = _run(files, tmp_path / "o1", "--no-flip")
    assert res.exit_code != 0
    assert "--flip/--no-flip: head 'example' has no 'flip' option" in res.output
    assert "its options: input_size, max_candidates, candidate_threshold" in res.output
    res = _run(files, tmp_path / "o2", "--option", "max_candidates=lots")
    assert res.exit_code != 0 and "--option max_candidates=lots: expected an integer (int)" in res.output
    res = _run(files, tmp_path / "o3", "--option", "max_candidate=2")
    assert res.exit_code != 0 and "did you mean 'max_candidates'?" in res.output
    res = _run(files, tmp_path / "o4", "--input-size", "48", "--option", "candidate_threshold=-100")
    assert res.exit_code == 0, res.output


def test_run_reads_and_recognises_the_checkpoint_once(
    model: PoseModel, files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bupose.core import inference, weights

    calls = {"read": 0, "detect": 0}
    read, detect = inference.read_checkpoint, inference.detect_official

    def counting_read(*a, **k):  # type: ignore[no-untyped-def]
        calls["read"] += 1
        return read(*a, **k)

    def counting_detect(*a, **k):  # type: ignore[no-untyped-def]
        calls["detect"] += 1
        return detect(*a, **k)

    for module in (inference, weights):  # wherever a caller looks the functions up
        monkeypatch.setattr(module, "read_checkpoint", counting_read)
        monkeypatch.setattr(module, "detect_official", counting_detect)
    plain = tmp_path / "plain.pth"  # not a bupose file: the layout comes from format detection
    torch.save(model.state_dict(), plain)
    files = {**files, "weights": plain}
    res = _run(files, tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert calls == {"read": 1, "detect": 1}
