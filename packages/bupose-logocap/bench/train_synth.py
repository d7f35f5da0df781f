"""Train LOGO-CAP on synthetic scenes on the CPU and report AP on held-out scenes (issue 11's
acceptance run; not a unit test: it takes minutes).

    python packages/bupose-logocap/bench/train_synth.py OUT [--steps 500] [--train-images 600]

Synthetic COCO-17 scenes from ``bupose data synth --difficulty easy`` (128 px), ``hrnet_w18_small``,
input 128, batch 8, Adam (the head's default) at ``--lr`` with 30 warm-up steps, then ``bupose eval``
on 100 held-out scenes with the official decode (flip, full adaptation). Prints AP, time and the
settings as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "bupose.core", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--train-images", type=int, default=600)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    a = ap.parse_args()
    out: Path = a.out
    train, val = out / "train", out / "val"
    run("data", "synth", "--images", str(a.train_images), "--size", "128", "--difficulty", "easy", "--out", str(train))
    run("data", "synth", "--images", "100", "--size", "128", "--difficulty", "easy", "--seed", "1", "--out", str(val))
    settings = {
        "input_size": 128, "batch_size": a.batch_size, "steps": a.steps, "lr": a.lr, "warmup_steps": 30,
        "workers": 0, "tensorboard": "false", "progress": "false", "eval_every": 0,
    }
    t0 = time.time()
    run("train", "--head", "logocap", "--backbone", "hrnet_w18_small", "--data", str(train), "--out", str(out / "run"),
        "--device", "cpu", *[x for k, v in settings.items() for x in ("--set", f"{k}={v}")])
    train_s = time.time() - t0
    metrics = out / "metrics.json"
    run("eval", "--head", "logocap", "--backbone", "hrnet_w18_small", "--weights", str(out / "run" / "final.safetensors"),
        "--data", str(val), "--input-size", "128", "--output", str(metrics), "--save-results", str(out / "results.json"))
    m = json.loads(metrics.read_text())
    print(json.dumps({"AP": m.get("AP"), "AP50": m.get("AP50"), "train_s": round(train_s, 1), **settings}))


if __name__ == "__main__":
    main()
