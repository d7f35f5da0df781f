"""``bupose bench backbone``: one table, every mode's ratio to fp32, per batch size; clear errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bupose.core.benchmark import bench_backbone, format_table, time_call
from bupose.core.cli import build_cli


def test_time_call_is_the_median_after_warmup() -> None:
    calls: list[int] = []
    t = time_call(lambda: calls.append(1), warmup=2, iters=3)
    assert len(calls) == 5 and t >= 0


def test_table_has_every_mode_and_batch_with_ratios() -> None:
    results = {("fp32", 1): 0.010, ("channels_last", 1): 0.005, ("fp32", 4): 0.040, ("channels_last", 4): 0.080}
    table = format_table(results, "title")
    lines = table.splitlines()
    assert lines[0] == "title" and "batch 1 ms" in lines[1] and "batch 4 ms" in lines[1]
    row = next(line for line in lines if line.startswith("channels_last"))
    assert "5.0" in row and "2.00x" in row and "0.50x" in row


def test_cli_benchmarks_a_registered_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []

    def fake(name: str, **kw: object) -> dict:
        calls.append((name, kw))
        return {("fp32", 1): 0.02, ("channels_last", 1): 0.01}

    monkeypatch.setattr("bupose.core.benchmark.bench_backbone", fake)
    res = CliRunner().invoke(build_cli(), ["bench", "backbone", "anything", "--size", "32", "--modes", "fp32,channels_last",
                                           "--kwargs", '{"width": 4}'])
    assert res.exit_code == 0, res.output
    assert calls[0][0] == "anything" and calls[0][1]["kwargs"] == {"width": 4} and calls[0][1]["size"] == 32
    assert "2.00x" in res.output and "load avg" in res.output


def test_bad_settings_are_one_line() -> None:
    res = CliRunner().invoke(build_cli(), ["bench", "backbone", "x", "--batches", "a,b"])
    assert res.exit_code != 0 and "--batches" in res.output
    with pytest.raises(ValueError, match="unknown modes"):
        bench_backbone("x", modes=["fp8"])


def test_bench_device_follows_the_run_rule() -> None:
    """--device defaults to auto (the CPU here) and a CUDA request without CUDA is one line."""
    import torch

    res = CliRunner().invoke(build_cli(), ["bench", "backbone", "no_such", "--device", "cuda"])
    if torch.cuda.is_available():
        pytest.skip("the machine has CUDA")
    assert res.exit_code != 0 and "CUDA is not available" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(build_cli(), ["bench", "--help"])
    assert "[default: auto]" in res.output
