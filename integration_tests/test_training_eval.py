"""`bupose train` end to end on synthetic scenes, and `bupose eval` (model mode) numbers equal to
`bupose run` + `bupose eval --results` on the same model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.plugins import get_registry

pytestmark = pytest.mark.skipif(
    not {"dekr"} <= set(get_registry().names("heads")) or "hrnet_w18_small" not in get_registry().names("backbones"),
    reason="needs bupose-dekr and bupose-hrnet",
)

SMALL = ["--set", "input_size=64", "--set", "batch_size=2", "--set", "steps=2", "--set", "workers=0",
         "--set", "progress=false", "--set", "tensorboard=false",
         "--set", "head_kwargs.offset_channels_per_joint=4", "--set", "head_kwargs.offset_blocks=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from bupose.core.data.synth import generate

    base = tmp_path_factory.mktemp("train_eval")
    generate(base / "train", "coco17", 4, 64, 11, difficulty="easy", progress=False)
    generate(base / "val", "coco17", 5, 64, 12, difficulty="easy", progress=False)
    runner = CliRunner()
    res = runner.invoke(build_cli(), ["train", "--head", "dekr", "--backbone", "hrnet_w18_small",
                                      "--data", str(base / "train"), "--val-data", str(base / "val"),
                                      "--out", str(base / "run"), *SMALL])
    assert res.exit_code == 0, res.output
    return {"base": base, "run": base / "run", "val": base / "val"}


def _detecting_weights(run: Path, out: Path) -> Path:
    """The trained weights with the centre channel made to fire, so that poses are decoded."""
    from bupose.core.weights import read_checkpoint, save_safetensors

    tensors, meta = read_checkpoint(run / "final.safetensors")
    key = "head.head_heatmap.1.bias"
    assert key in tensors, sorted(tensors)[-10:]
    tensors[key][-1] = 0.5
    w = tensors["head.head_heatmap.1.weight"]
    w[-1] = w[-1] * 300.0
    return save_safetensors(out, tensors, meta)


def test_train_cli_writes_a_usable_run(trained: dict[str, Path]) -> None:
    run = trained["run"]
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records][-1] == "eval"
    assert set(records[-1]["metrics"]) >= {"AP", "AP50", "AR"}
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["head"] == "dekr" and cfg["input_size"] == 64
    from bupose.core.inference import load_model

    est = load_model("dekr", "hrnet_w18_small", run / "final.safetensors")
    assert est.model.config["input_size"] == 64
    assert est.model.config["head_kwargs"] == {"offset_channels_per_joint": 4, "offset_blocks": 1}


def test_eval_model_mode_equals_run_plus_eval_results(trained: dict[str, Path], tmp_path: Path) -> None:
    weights = _detecting_weights(trained["run"], tmp_path / "w.safetensors")
    val = trained["val"]
    runner = CliRunner()
    common = ["--head", "dekr", "--backbone", "hrnet_w18_small", "--weights", str(weights)]
    r1 = runner.invoke(build_cli(), ["eval", *common, "--data", str(val), "--batch-size", "3",
                                     "--save-results", str(tmp_path / "r1.json"), "--output", str(tmp_path / "m1.json")])
    assert r1.exit_code == 0, r1.output
    assert "Average Precision" in r1.output
    r2 = runner.invoke(build_cli(), ["run", *common, "--annotations", str(val / "annotations.json"),
                                     "--output", str(tmp_path / "run"), "--no-overlays", str(val / "images")])
    assert r2.exit_code == 0, r2.output
    r3 = runner.invoke(build_cli(), ["eval", "--results", str(tmp_path / "run" / "results.json"),
                                     "--annotations", str(val / "annotations.json"), "--output", str(tmp_path / "m2.json")])
    assert r3.exit_code == 0, r3.output
    res1 = json.loads((tmp_path / "r1.json").read_text())
    res2 = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(res1) > 0, "the test needs decoded poses to compare"

    def key(e: dict) -> tuple:  # type: ignore[type-arg]
        return (e["image_id"], -e["score"], e["keypoints"][:2])

    res1.sort(key=key)
    res2.sort(key=key)
    assert len(res1) == len(res2)
    for a, b in zip(res1, res2):
        assert a["image_id"] == b["image_id"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)
        assert a["keypoints"] == pytest.approx(b["keypoints"], abs=1e-4)
    m1 = json.loads((tmp_path / "m1.json").read_text())
    m2 = json.loads((tmp_path / "m2.json").read_text())
    assert m1 == pytest.approx(m2, abs=1e-12)


def test_eval_model_mode_errors_are_one_line(trained: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(build_cli(), ["eval", "--head", "dekr", "--backbone", "hrnet_w18_small",
                                    "--weights", str(tmp_path / "none.safetensors"), "--data", str(trained["val"])])
    assert r.exit_code != 0 and "none.safetensors: file not found" in r.output
    r = runner.invoke(build_cli(), ["eval", "--head", "dekr", "--data", str(trained["val"])])
    assert r.exit_code != 0 and "model mode needs --backbone, --weights as well" in r.output


def test_train_nproc_spawns_torchrun(trained: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "bupose.core", "train", "--head", "dekr", "--backbone", "hrnet_w18_small",
           "--data", str(trained["base"] / "train"), "--out", str(out), "--nproc", "2", *SMALL,
           "--set", "steps=1", "--set", "threads=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launching 2 processes" in proc.stderr
    from bupose.core.engine.checkpoint import read_training_checkpoint

    ckpt = read_training_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 1 and (out / "final.safetensors").exists()
