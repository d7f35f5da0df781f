from __future__ import annotations

import json
import os
import subprocess
import sys


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bupose.core", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_list_heads_with_no_plugins_says_how_to_install() -> None:
    proc = run_cli("list", "heads", BUPOSE_LOAD_PLUGINS="")
    assert proc.returncode == 0, proc.stderr
    assert "(no heads installed)" in proc.stdout
    assert f"{sys.executable} -m pip install bupose-" in proc.stdout
    assert "bupose-dekr" in proc.stdout


def test_list_layouts_shows_provenance() -> None:
    proc = run_cli("list", "layouts")
    assert proc.returncode == 0
    assert "coco17" in proc.stdout and "crowdpose14" in proc.stdout
    assert "<- bupose-core" in proc.stdout


def test_list_rejects_unknown_kind() -> None:
    proc = run_cli("list", "gadgets")
    assert proc.returncode == 2
    assert "gadgets" in proc.stderr


def test_info_reports_versions_and_ops() -> None:
    proc = run_cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    import torch

    assert info["torch"] == torch.__version__
    assert info["bupose"]["bupose-core"]
    assert set(info["ops"]) >= {"deform_conv2d", "ms_deform_attn"}
    for op in info["ops"].values():
        assert op["in_use"]["cpu"] is not None  # the reference implementation is always there
    text = run_cli("info")
    assert "deform_conv2d: cpu ->" in text.stdout


def test_forced_reference_ops_shown_in_info() -> None:
    proc = run_cli("info", "--json", BUPOSE_OPS="reference")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["ops_forced"] == "reference"
    assert info["ops"]["deform_conv2d"]["in_use"]["cpu"] == "reference"


def test_errors_are_one_line_without_debug() -> None:
    proc = run_cli("convert", "/nonexistent/file.pth", "/tmp/out.safetensors")
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_pipeline_options_parse_json_values_and_reject_bad_items() -> None:
    import click
    import pytest

    from bupose.core.cli.run import parse_options

    opts = parse_options(["match_hmp=true", "nms_thre=0.1", "max_num_people=5", "mode=fast", "x=null"])
    assert opts == {"match_hmp": True, "nms_thre": 0.1, "max_num_people": 5, "mode": "fast", "x": None}
    for bad in ("match_hmp", "=1", "a b=1"):
        with pytest.raises(click.BadParameter, match="expected KEY=VALUE"):
            parse_options([bad])
