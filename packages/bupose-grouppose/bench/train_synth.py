"""Train GroupPose on synthetic scenes on the CPU and report AP on held-out scenes (issue 13's
training acceptance run; not a unit test: DETR-style training needs many steps).

    python packages/bupose-grouppose/bench/train_synth.py OUT [--steps 3000] [--train-images 600]

Synthetic COCO-17 scenes from ``bupose data synth --difficulty easy`` (128 px), backbone
``resnet18`` (trainable BatchNorm: ``freeze_backbone_bn=False``, since a from-scratch ResNet has no
statistics to freeze), a reduced transformer (``--queries``,
``--layers``, hidden 128, FFN 512), input 128 (the DETR augmentation scales its 480..800 / 1333 sizes
by 128/800), AdamW at ``--lr`` (backbone x0.1, the head's rule), grad_clip 0.1, the official set
criterion. Then ``bupose eval`` on 100 held-out scenes. Prints AP, time and the settings as one JSON line.
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
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--train-images", type=int, default=600)
    ap.add_argument("--val-images", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--layers", type=int, default=3)
    a = ap.parse_args()
    out: Path = a.out
    train, val = out / "train", out / "val"
    run("data", "synth", "--images", str(a.train_images), "--size", "128", "--difficulty", "easy", "--out", str(train))
    run("data", "synth", "--images", str(a.val_images), "--size", "128", "--difficulty", "easy", "--seed", "1", "--out", str(val))
    head = {"num_queries": a.queries, "enc_layers": a.layers, "dec_layers": a.layers, "hidden_dim": 128,
            "dim_feedforward": 512, "nheads": 8, "freeze_backbone_bn": False}  # fmt: skip
    settings = {
        "input_size": 128, "batch_size": a.batch_size, "steps": a.steps, "lr": a.lr, "grad_clip": 0.1,
        "warmup_steps": 50, "workers": 0, "tensorboard": "false", "progress": "false", "eval_every": 0,
        "head_kwargs": json.dumps(head), "codec_kwargs": json.dumps({"num_queries": a.queries}),
    }
    t0 = time.time()
    run("train", "--head", "grouppose", "--backbone", "resnet18", "--data", str(train), "--out", str(out / "run"),
        "--device", "cpu", *[x for k, v in settings.items() for x in ("--set", f"{k}={v}")])
    train_s = time.time() - t0
    metrics = out / "metrics.json"
    run("eval", "--head", "grouppose", "--backbone", "resnet18", "--weights", str(out / "run" / "final.safetensors"),
        "--data", str(val), "--output", str(metrics), "--save-results", str(out / "results.json"))
    m = json.loads(metrics.read_text())
    print(json.dumps({"AP": m.get("AP"), "AP50": m.get("AP50"), "train_s": round(train_s, 1), **settings}))


if __name__ == "__main__":
    main()
