"""Train CenterGroup (stage 1, then stage 2) on synthetic scenes on the CPU and report AP on held-out
scenes (issue 12's acceptance run; not a unit test: it takes a long time on a CPU).

    python packages/bupose-centergroup/bench/train_synth.py OUT [--steps1 600] [--steps2 600] [--train-images 600]

Synthetic COCO-17 scenes from ``bupose data synth --difficulty easy`` (128 px), ``hrnet_w18_small``
(the small CPU HRNet preset; its stride-4 branch feeds the head), input 128, batch 8.
Stage 1: the detector alone (``head_kwargs={"stage": 1}``: heatmap loss on both resolutions,
centre = mean of visible joints), Adam at ``--lr1``. Stage 2: end to end from the stage-1 weights
(``init_weights``), the official parameter groups (detector 0.1x lr, frozen detector BN), gradient
clipping 1.0, no rotation (official ``rot_factor=0``), Adam at ``--lr2``. Then ``bupose eval`` on
100 held-out scenes with the official test (flip, input 128). Prints AP, times and settings as one
JSON line.
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


def _settings(d: dict) -> list[str]:
    return [x for k, v in d.items() for x in ("--set", f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps1", type=int, default=600)
    ap.add_argument("--steps2", type=int, default=600)
    ap.add_argument("--train-images", type=int, default=600)
    ap.add_argument("--val-images", type=int, default=100)
    ap.add_argument("--lr1", type=float, default=4e-3)
    ap.add_argument("--lr2", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--backbone", default="hrnet_w18_small")
    a = ap.parse_args()
    out: Path = a.out
    train, val = out / "train", out / "val"
    run("data", "synth", "--images", str(a.train_images), "--size", "128", "--difficulty", "easy", "--out", str(train))
    run("data", "synth", "--images", str(a.val_images), "--size", "128", "--difficulty", "easy", "--seed", "1", "--out", str(val))
    common = {"input_size": 128, "batch_size": a.batch_size, "workers": 0, "tensorboard": "false", "progress": "false",
              "eval_every": 0, "warmup_steps": 30}
    s1 = {**common, "steps": a.steps1, "lr": a.lr1, "head_kwargs": {"stage": 1}}
    t0 = time.time()
    run("train", "--head", "centergroup", "--backbone", a.backbone, "--data", str(train), "--out", str(out / "stage1"),
        "--device", "cpu", *_settings(s1))
    t1 = time.time()
    s2 = {**common, "steps": a.steps2, "lr": a.lr2, "grad_clip": 1.0, "augment": {"max_rotation": 0},
          "init_weights": str(out / "stage1" / "final.safetensors")}
    run("train", "--head", "centergroup", "--backbone", a.backbone, "--data", str(train), "--out", str(out / "stage2"),
        "--device", "cpu", *_settings(s2))
    t2 = time.time()
    metrics = out / "metrics.json"
    run("eval", "--head", "centergroup", "--backbone", a.backbone, "--weights", str(out / "stage2" / "final.safetensors"),
        "--data", str(val), "--input-size", "128", "--output", str(metrics), "--save-results", str(out / "results.json"))
    m = json.loads(metrics.read_text())
    print(json.dumps({"AP": m.get("AP"), "AP50": m.get("AP50"), "stage1_s": round(t1 - t0, 1), "stage2_s": round(t2 - t1, 1),
                      "stage1": s1, "stage2": {k: v for k, v in s2.items() if k != "init_weights"}}))


if __name__ == "__main__":
    main()
