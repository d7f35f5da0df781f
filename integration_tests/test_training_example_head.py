"""The third-party template trains: ``bupose data synth`` -> ``bupose train --head example --backbone
example_convnet`` (core's default augmentation, the example codec, its head's train_defaults) ->
evaluation with its pipeline -> ``bupose run`` on the trained weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.plugins import get_registry

pytestmark = pytest.mark.skipif(
    "example" not in get_registry().names("heads"), reason="needs the example plugin (bupose-example-head)"
)

TINY = ["--set", "input_size=64", "--set", "batch_size=2", "--set", "steps=3", "--set", "workers=0",
        "--set", "log_every=1", "--set", "progress=false", "--set", "tensorboard=false",
        "--set", "max_val_images=2", "--set", "eval_batch_size=2"]


def test_example_head_trains_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner()
    for split, seed, n in (("train", 1, 4), ("val", 2, 2)):
        res = runner.invoke(build_cli(), ["data", "synth", "--out", str(tmp_path / split), "--images", str(n),
                                          "--size", "64", "--seed", str(seed), "--difficulty", "easy"])
        assert res.exit_code == 0, res.output
    run = tmp_path / "run"
    res = runner.invoke(build_cli(), ["train", "--head", "example", "--backbone", "example_convnet",
                                      "--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val"),
                                      "--out", str(run), *TINY])
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(set(r["losses"]) == {"heatmap_loss", "loss"} for r in train)
    # the head's train_defaults: Adam 1e-3, cosine schedule
    assert train[0]["lr"] < 1e-3 and train[-1]["lr"] < train[0]["lr"]
    assert records[-1]["type"] == "eval" and "AP" in records[-1]["metrics"]
    assert (run / "final.safetensors").is_file()

    from bupose.core.inference import load_model

    est = load_model("example", "example_convnet", run / "final.safetensors")
    assert est.model.head_name == "example" and est.model.config["input_size"] == 64
    res = runner.invoke(build_cli(), ["run", "--head", "example", "--backbone", "example_convnet",
                                      "--weights", str(run / "final.safetensors"), "--output", str(tmp_path / "pred"),
                                      "--no-overlays", str(tmp_path / "val" / "images")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "pred" / "results.json").read_text()) is not None
