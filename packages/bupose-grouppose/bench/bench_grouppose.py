"""GroupPose benchmarks, side by side in one run (smoke-run only on a shared machine):

1. encoder + decoder forward with each available ``ms_deform_attn`` implementation (the reference in
   core; ``cpp`` / ``cuda`` from bupose-cuda-ops when built), ratio to the reference;
2. the whole pipeline per image at batch 1, 2 and 8 (``batch_mode=pad``) on CPU;
3. peak memory (max RSS of this process; CUDA peak allocated when on a GPU).

    python packages/bupose-grouppose/bench/bench_grouppose.py [--backbone resnet50] [--size 800]
        [--iters 3] [--threads 1] [--batches 1,2,8] [--device cpu]

Random weights (timings do not depend on the values); images are random RGB of about --size x 4/3 --size,
resized by the pipeline to short side --size (800 = the official val size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import torch


def _median(fn, iters: int) -> float:
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    from bupose.core.batch import Batch
    from bupose.core.model import build_model
    from bupose.core.ops import clear_op_cache, op_choices
    from bupose.grouppose.pipeline import GroupPosePipeline

    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batches", default="1,2,8")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    model = build_model("grouppose", a.backbone).eval().to(dev)
    h, w = a.size, a.size * 4 // 3
    rows: dict[str, object] = {"backbone": a.backbone, "input_hw": [h, w], "threads": torch.get_num_threads(), "device": a.device}

    x = torch.randn(1, 3, h, w, device=dev)
    with torch.inference_mode():
        feats = model.backbone(x)
    impls = [c.spec.implementation for c in op_choices("ms_deform_attn") if c.available and dev.type in c.spec.devices]
    transformer: dict[str, float] = {}
    for impl in impls:
        os.environ["BUPOSE_OPS"] = impl
        clear_op_cache()
        with torch.inference_mode():
            transformer[impl] = _median(lambda: model.head.run(feats, Batch(images=x)), a.iters)
    os.environ.pop("BUPOSE_OPS", None)
    clear_op_cache()
    ref = transformer.get("reference")
    rows["transformer_s"] = {k: round(v, 4) for k, v in transformer.items()}
    rows["transformer_speedup_vs_reference"] = {k: round(ref / v, 2) for k, v in transformer.items()} if ref else {}

    pipe = GroupPosePipeline(model, batch_mode="pad", input_size=a.size)  # short side --size
    rng = np.random.default_rng(0)
    per_image: dict[str, float] = {}
    for bs in (int(b) for b in a.batches.split(",")):
        imgs = [rng.integers(0, 255, (h - 8 * i, w - 16 * i, 3), dtype=np.uint8) for i in range(bs)]
        with torch.inference_mode():
            per_image[str(bs)] = _median(lambda imgs=imgs: pipe.predict_batch(imgs), a.iters) / bs
    rows["pipeline_s_per_image"] = {k: round(v, 4) for k, v in per_image.items()}
    rows["pipeline_ratio_vs_batch1"] = {k: round(per_image["1"] / v, 2) for k, v in per_image.items()} if "1" in per_image else {}
    rows["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if dev.type == "cuda":
        rows["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
