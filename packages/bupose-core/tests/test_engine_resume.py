"""Kill -9 tests: a killed run resumes to the same weights; no checkpoint is ever half-written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from bupose.core.engine.checkpoint import read_training_checkpoint
from bupose.core.weights import read_checkpoint

HELPERS = Path(__file__).parent / "test_engine_helpers.py"
ARGS = ["--dropout", "0.2", "--set", "steps=24", "--set", "batch_size=4", "--set", "workers=0",
        "--set", "ckpt_every=1", "--set", "log_every=1", "--set", "ema_decay=0.5"]


def _run(out: Path, *extra: str) -> None:
    subprocess.run([sys.executable, str(HELPERS), "--out", str(out), *ARGS, *extra], check=True, timeout=300)


def _logged_step(out: Path) -> int:
    try:
        lines = (out / "log.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [json.loads(x)["step"] for x in lines if x.endswith("}")]
    return max(steps, default=0)


def test_kill9_at_random_step_then_resume_gives_the_same_weights(tmp_path: Path) -> None:
    _run(tmp_path / "full")
    kill_at = random.Random(os.getpid()).randint(3, 20)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(HELPERS), "--out", str(out), *ARGS])
    try:
        deadline = time.monotonic() + 240
        while _logged_step(out) < kill_at and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    visible = sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith("."))
    assert visible == ["last.pt"]
    at = read_training_checkpoint(out / "checkpoints" / "last.pt")["step"]
    assert kill_at - 1 <= at < 24, f"killed after step {kill_at}, checkpoint at {at}"
    assert not (out / "final.safetensors").exists()
    _run(out, "--resume")
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    a, _ = read_checkpoint(tmp_path / "full" / "final.safetensors")
    b, _ = read_checkpoint(out / "final.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


WRITER = textwrap.dedent(
    """
    import sys, torch
    from bupose.core.engine.checkpoint import write_training_checkpoint
    path = sys.argv[1]
    for i in range(1000):
        w = torch.full((8_000_000,), float(i))
        print(f"writing {i}", flush=True)
        write_training_checkpoint(path, {"step": i, "model": {"w": w}})
        print(f"done {i}", flush=True)
    """
)


def test_killed_during_save_leaves_only_complete_files(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "last.pt"
    caught_mid_write = 0
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        target = f"writing {1 + round_}"
        for line in proc.stdout:
            if line.strip() == target:
                break
        # kill as soon as the temporary file of this write exists: mid-write
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            p.name.endswith(".tmp") for p in path.parent.iterdir()
        ):
            time.sleep(0.0005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        names = [p.name for p in path.parent.iterdir()]
        hidden = [n for n in names if n.startswith(".") and n.endswith(".tmp")]
        caught_mid_write += bool(hidden)
        assert [n for n in names if not n.startswith(".")] == ["last.pt"]
        state = read_training_checkpoint(path)
        w = state["model"]["w"]
        assert w.numel() == 8_000_000 and bool((w == state["step"]).all()), "checkpoint is inconsistent"
        assert state["step"] in (round_, round_ + 1)
        for n in hidden:
            (path.parent / n).unlink()
    assert caught_mid_write >= 1, "no kill landed during a write; the test did not exercise atomicity"
