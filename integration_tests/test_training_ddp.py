"""2-process CPU DDP (torchrun, gloo) gives the same weights as 1 process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bupose.core.engine.checkpoint import read_training_checkpoint
from bupose.core.weights import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ROOT / "packages" / "bupose-core" / "tests" / "test_engine_helpers.py"
ARGS = ["--set", "steps=6", "--set", "batch_size=8", "--set", "workers=0", "--set", "log_every=1",
        "--set", "ckpt_every=3", "--set", "threads=1", "--dropout", "0.0"]


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(out / "final.safetensors")[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ddp")
    single = subprocess.run([sys.executable, str(HELPERS), "--out", str(base / "one"), *ARGS],
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    two = _torchrun(2, str(HELPERS), "--out", str(base / "two"), *ARGS)
    assert two.returncode == 0, two.stderr[-3000:]
    return {"one": base / "one", "two": base / "two"}


def test_two_processes_equal_one_process(runs: dict[str, Path]) -> None:
    a, b = _weights(runs["one"]), _weights(runs["two"])
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    # and training did move the weights
    init = read_training_checkpoint(runs["one"] / "checkpoints" / "last.pt")
    assert init["step"] == 6


def test_ddp_logs_global_losses_and_writes_once(runs: dict[str, Path]) -> None:
    one = [json.loads(x) for x in (runs["one"] / "log.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (runs["two"] / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in two] == list(range(1, 7)), "rank 0 alone writes the log"
    for r1, r2 in zip(one, two):
        assert r2["losses"]["loss"] == pytest.approx(r1["losses"]["loss"], rel=1e-4)
    ckpt = read_training_checkpoint(runs["two"] / "checkpoints" / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"]), "each rank has its own RNG state"


def test_ddp_resume_continues_exactly(runs: dict[str, Path], tmp_path: Path) -> None:
    """Stop a 2-process run after its first step (a tiny time limit), resume it under torchrun:
    the final weights equal those of the uninterrupted 2-process run."""
    out = tmp_path / "resumed"
    first = _torchrun(2, str(HELPERS), "--out", str(out), *ARGS, "--set", "time_limit_s=1e-9")
    assert first.returncode == 0, first.stderr[-3000:]
    assert read_training_checkpoint(out / "checkpoints" / "last.pt")["step"] == 1
    (out / "final.safetensors").unlink()
    second = _torchrun(2, str(HELPERS), "--out", str(out), *ARGS, "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    a, b = _weights(runs["two"]), _weights(out)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-6, atol=1e-7)
