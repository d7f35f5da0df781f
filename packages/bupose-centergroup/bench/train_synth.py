"""Train CenterGroup (stage 1, then stage 2) on synthetic scenes on the CPU and report AP on held-out
scenes (issue 12's acceptance run; not a unit test: it takes tens of minutes on a CPU).

    python packages/bupose-centergroup/bench/train_synth.py OUT [--steps1 600] [--steps2 300] ...
    nox -s centergroup_synth -- OUT [options]

Synthetic COCO-17 scenes from ``bupose data synth --difficulty easy`` (128 px; 600 training scenes,
100 held-out ones with another seed), ``hrnet_w18_small`` (the small CPU HRNet preset; its stride-4
branch feeds the head), input 128, batch 8, one torch thread, batches made in the training process.

Stage 1: the detector with centres alone (``head_kwargs={"stage": 1}``, heatmap loss on both
resolutions) with the DEKR demo's CPU recipe (Adam 4e-3, 30 linear warm-up steps, x0.1 after 80 %
of the steps, mild augmentation: scale 0.8-1.25, rotation 15, translation 10 px) instead of the
official Adam 1.5e-3 for 300 epochs (far too slow for a few hundred steps).
Stage 2: end to end from the stage-1 weights (``init_weights``) with the official parameter groups
(detector at 0.1x the learning rate, frozen detector batch norm), gradient clipping 1.0, no
rotation (official ``rot_factor=0``), Adam at ``--lr2`` with the same warm-up and x0.1 after 80 %
(official: 1e-4 for the grouping model, x0.1 at epochs 20 and 40 of >= 100). The model is the
official one (transformer width 128, 3 layers, 4 heads, top-30 candidates); no setting narrows it.

Then ``bupose eval`` on the held-out scenes with the official test (flip, single scale, input 128).
Prints AP, wall and CPU times, load averages and the settings as one JSON line and writes them to
OUT/summary.json. Measured with these defaults: AP 0.709 (AP50 0.976) on the 100 held-out scenes,
18.6 min in all (stage 1 5.6 min, stage 2 12.5 min, eval 26 s) on a 2-core machine at load ~3;
see ``bench/train_synth_result.json`` and the package README.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bupose.core.engine.config import CPU_RECIPE

AUGMENT = CPU_RECIPE["augment"]


def run(*args: str) -> None:
    """``bupose ARGS`` in a fresh process (raises on a non-zero exit)."""
    subprocess.run([sys.executable, "-m", "bupose.core", *args], check=True)


def children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def settings_for(a: argparse.Namespace, stage: int) -> dict[str, Any]:
    """The TrainConfig settings of stage ``stage`` (1 or 2)."""
    common: dict[str, Any] = {
        **copy.deepcopy(CPU_RECIPE),  # the demo's CPU recipe: Adam, 30 warm-up, x0.1 at 80 %, mild affine
        "input_size": a.size,
        "batch_size": a.batch_size,
        "threads": a.threads,
        "progress": False,
        "time_limit_s": a.time_limit_s,
    }
    if stage == 1:
        return {**common, "steps": a.steps1, "lr": a.lr1, "head_kwargs": {"stage": 1}, "augment": dict(AUGMENT)}
    return {**common, "steps": a.steps2, "lr": a.lr2, "grad_clip": 1.0, "augment": {**AUGMENT, "max_rotation": 0.0}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps1", type=int, default=600)
    ap.add_argument("--steps2", type=int, default=300)
    ap.add_argument("--train-images", type=int, default=600)
    ap.add_argument("--val-images", type=int, default=100)
    ap.add_argument("--size", type=int, default=128, help="image and network input size")
    ap.add_argument("--lr1", type=float, default=4e-3)
    ap.add_argument("--lr2", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: the engine's choice)")
    ap.add_argument("--backbone", default="hrnet_w18_small")
    ap.add_argument("--time-limit-s", type=float, default=3600.0, help="stop each stage after this long")
    a = ap.parse_args()
    out: Path = a.out
    if (out / "stage2" / "final.safetensors").exists():
        raise SystemExit(f"{out} already holds a run; choose another OUT or delete it")
    if a.threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
    train, val = out / "train", out / "val"
    t0 = time.time()
    run("data", "synth", "--images", str(a.train_images), "--size", str(a.size), "--difficulty", "easy", "--out", str(train))
    run("data", "synth", "--images", str(a.val_images), "--size", str(a.size), "--difficulty", "easy", "--seed", "1",
        "--out", str(val))
    data_s = time.time() - t0
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, Any] = {"data_s": round(data_s, 1)}
    loads: dict[str, list[float]] = {}
    s1, s2 = settings_for(a, 1), settings_for(a, 2)
    for stage, settings in ((1, s1), (2, s2)):
        config = out / f"stage{stage}_config.json"
        extra = {} if stage == 1 else {"init_weights": str(out / "stage1" / "final.safetensors")}
        config.write_text(json.dumps({**settings, **extra}, indent=1))
        t, c = time.time(), children_cpu_s()
        run("train", "--head", "centergroup", "--backbone", a.backbone, "--data", str(train), "--out", str(out / f"stage{stage}"),
            "--device", "cpu", "--config", str(config))
        times[f"stage{stage}_s"] = round(time.time() - t, 1)
        times[f"stage{stage}_cpu_s"] = round(children_cpu_s() - c, 1)
        steps = json.loads((out / f"stage{stage}" / "summary.json").read_text()).get("steps")
        times[f"stage{stage}_steps_done"] = steps
        times[f"stage{stage}_s_per_step"] = round(times[f"stage{stage}_s"] / max(int(steps or 1), 1), 2)
        loads[f"after_stage{stage}"] = [round(v, 2) for v in os.getloadavg()]
    metrics = out / "metrics.json"
    t, c = time.time(), children_cpu_s()
    run("eval", "--head", "centergroup", "--backbone", a.backbone, "--weights", str(out / "stage2" / "final.safetensors"),
        "--data", str(val), "--input-size", str(a.size), "--output", str(metrics), "--save-results", str(out / "results.json"))
    times["eval_s"] = round(time.time() - t, 1)
    times["eval_cpu_s"] = round(children_cpu_s() - c, 1)
    loads["after_eval"] = [round(v, 2) for v in os.getloadavg()]
    m = json.loads(metrics.read_text())
    summary = {
        "AP": m.get("AP"), "AP50": m.get("AP50"), "AP75": m.get("AP75"), "AR": m.get("AR"),
        **times, "total_s": round(time.time() - t0, 1), "load_avg": loads, "cpu_count": os.cpu_count(),
        "train_images": a.train_images, "val_images": a.val_images, "backbone": a.backbone,
        "test": "flip, single scale, official decode", "stage1": s1, "stage2": s2,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
