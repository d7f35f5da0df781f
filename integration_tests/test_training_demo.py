"""`bupose demo` end to end at toy size (the real settings are measured by hand: see docs/training.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bupose.core.cli import build_cli
from bupose.core.plugins import get_registry

pytestmark = pytest.mark.skipif(
    "dekr" not in get_registry().names("heads") or "hrnet_w18_small" not in get_registry().names("backbones"),
    reason="needs bupose-dekr and bupose-hrnet",
)


TOY = ["--no-progress", "--set", "image_size=64", "--set", "train_images=8", "--set", "val_images=3",
       "--set", "test_images=2", "--set", "train.input_size=64", "--set", "train.batch_size=4",
       "--set", "train.workers=0"]


def test_demo_writes_summary_overlays_and_contact_sheet(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # a toy size cannot reach the real goal: goal_ap=0 checks the success path end to end
    args = ["demo", "--out", str(out), *TOY, "--set", "train.steps=20", "--set", "goal_ap=0"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    # the number of steps is the recipe's (here overridden), never picked from a timing probe
    assert summary["train_steps"] == summary["planned_steps"] == 20
    assert summary["goal_met"] is True and summary["failure"] is None and not summary["stopped_early"]
    for phase in ("data:", "train:", "eval:", "run:", "done in"):
        assert f"[demo] {phase}" in result.output, phase
    assert 0.0 <= summary["val_AP"] <= 1.0
    assert set(summary["timings_s"]) == {"data_s", "train_s", "eval_s", "run_s", "total_s"}
    assert (out / "summary.md").read_text().startswith("# bupose demo")
    overlays = sorted((out / "test_run" / "overlays").iterdir())
    assert len(overlays) == 2 and all(p.suffix in (".jpg", ".png") for p in overlays)
    assert (out / "test_overlays.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "val_metrics.json").read_text())["AP"] == summary["val_AP"]
    # the demo evaluates and runs with DEKR's official MATCH_HMP test option
    assert summary["settings"]["test_options"] == {"match_hmp": True}
    assert "match_hmp" in (out / "summary.md").read_text()
    bad = CliRunner().invoke(build_cli(), [
        "run", "--head", "dekr", "--backbone", "hrnet_w18_small", "--weights", summary["weights"],
        "--output", str(tmp_path / "bad"), "--option", "no_such_option=1",
        str(out / "data" / "test" / "images")])
    assert bad.exit_code != 0 and "--option no_such_option" in bad.output and "not accepted" in bad.output
    again = CliRunner().invoke(build_cli(), args)
    assert again.exit_code != 0 and "already holds a demo run" in again.output


def test_demo_fails_loudly_below_the_goal_and_when_stopped_early(tmp_path: Path) -> None:
    # the real goal (AP >= 0.5) at toy size, and a time limit hit after the first step
    args = ["demo", "--out", str(tmp_path / "d"), *TOY, "--set", "train.steps=50", "--set", "train.time_limit_s=0.01"]
    result = CliRunner().invoke(build_cli(), args)
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: demo FAILED: training stopped early at step 1 of 50"), line
    assert "load average" in line and "s/step" in line
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["stopped_early"] and summary["train_steps"] == 1 and not summary["goal_met"]
    assert (tmp_path / "d" / "test_overlays.png").exists()  # a failed demo still shows what it got
