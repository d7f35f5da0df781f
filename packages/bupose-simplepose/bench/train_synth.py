"""Train SimplePose on ``bupose data synth`` scenes on a CPU and report the held-out AP.

A reduced IMHN (``--stacks`` stacks, narrow) with the ``simplepose`` head, trained through bupose's
engine (Adam, warm-up, multistep), evaluated with ``bupose eval`` model mode on held-out synthetic
scenes at single scale + flip. Writes OUT/summary.json with AP, times and settings.

    python bench/train_synth.py OUT [--steps 1200] [--budget 1500] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=128, help="image and training input size")
    ap.add_argument("--train-images", type=int, default=400)
    ap.add_argument("--val-images", type=int, default=50)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--budget", type=float, default=1500.0, help="training time limit in seconds")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--stacks", type=int, default=2)
    ap.add_argument("--width", type=int, default=32, help="IMHN stem width (official 128)")
    args = ap.parse_args()

    from bupose.core.cli.eval import model_mode
    from bupose.core.data.synth import generate
    from bupose.core.engine.build import train
    from bupose.core.engine.config import TrainConfig, apply_overrides

    t0 = time.perf_counter()
    data = args.out / "data"
    generate(data / "train", "coco17", args.train_images, args.size, 1000, difficulty="easy", progress=False)
    generate(data / "val", "coco17", args.val_images, args.size, 1001, difficulty="easy", progress=False)
    scale = args.size / 512
    settings = {
        "head": "simplepose",
        "backbone": "imhn",
        "data": str(data / "train"),
        "out": str(args.out / "train"),
        "input_size": args.size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "time_limit_s": args.budget,
        "optimizer": "adam",
        "lr": args.lr,
        "weight_decay": 0.0,
        "warmup_steps": 30,
        "lr_schedule": "multistep",
        "lr_milestones": [0.8],
        "workers": 1,
        "ckpt_every": 200,
        "log_every": 20,
        "eval_every": 0,
        "tensorboard": False,
        "progress": False,
        "backbone_kwargs": {
            "nstack": args.stacks, "stem_width": args.width, "increase": args.width,
            "feat_channels": 2 * args.width, "se_hidden": 8, "input_format": "imagenet_rgb",
        },
        # official sigmas are for 512 inputs; scaled with the input, at least 2 / 1.5 px
        "codec_kwargs": {"sigma": max(9.0 * scale * 2, 2.0), "limb_sigma": max(7.0 * scale * 2, 1.5)},
        "augment": {"scale_range": [0.8, 1.25], "max_rotation": 15.0, "max_translate": 10.0},
    }
    cfg = TrainConfig()
    apply_overrides(cfg, settings, source="train_synth")
    cfg.validate()
    result = train(cfg)
    t_train = time.perf_counter() - t0
    test_options = {"scales": [1.0], "input_size": args.size, "flip": True}
    metrics = model_mode(
        head="simplepose", backbone="imhn", weights=str(args.out / "train" / "final.safetensors"),
        data=str(data / "val"), batch_size=1, save_results=str(args.out / "val_results.json"),
        output=str(args.out / "val_metrics.json"), progress=False, pipeline_options=test_options,
    )
    summary = {
        "val_AP": metrics["AP"], "metrics": metrics, "steps": result.steps,
        "train_s": round(t_train, 1), "total_s": round(time.perf_counter() - t0, 1),
        "settings": settings, "test_options": test_options,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps({k: summary[k] for k in ("val_AP", "steps", "train_s", "total_s")}))


if __name__ == "__main__":
    main()
