"""CenterGroup inference benchmark (CPU), figures printed side by side.

    python packages/bupose-centergroup/bench/bench_centergroup.py [--repeats 3] [--input-size 512] [--backbone higherhrnet_w32]

1. Per image at the official input size (flip test, 30 centres): the network on [image, mirror]
   (HigherHRNet + deconv stage + embedding CNNs) against everything after it (heatmap averaging and
   projection, node extraction of both branches, the grouping transformer, flip merge, pose scores,
   adjust).
2. The whole pipeline (warp, network, grouping, decode) per image at batch 1 and batch 8 (images of
   one size, so batch 8 is one network call of 16).

Random weights (the work does not depend on the values). Figures depend on the machine's load; the
script prints the ratios next to them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from bupose.centergroup.pipeline import CenterGroupPipeline, prepare_image
from bupose.core.algorithms.image import normalize_images
from bupose.core.model import build_model


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--input-size", type=int, default=512)
    ap.add_argument("--backbone", default="higherhrnet_w32")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = build_model("centergroup", a.backbone).eval()
    pipe = CenterGroupPipeline(model, input_size=a.input_size)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    prep = prepare_image(image, a.input_size)
    x = normalize_images([prep.image], "cpu").contiguous()
    vf = torch.from_numpy(prep.valid_full[None])
    vq = torch.from_numpy(prep.valid_quarter[None])
    with torch.inference_mode():
        maps = pipe.network_maps([x])
        net_s = timed(lambda: pipe.network_maps([x]), a.repeats)
        post_s = timed(lambda: pipe.group_and_decode(maps, vf, vq), a.repeats)
        images = [image] * a.batch
        b1 = timed(lambda: [pipe.predict_batch([im]) for im in images], max(1, a.repeats // 2)) / a.batch
        b8 = timed(lambda: pipe.predict_batch(images), max(1, a.repeats // 2)) / a.batch
    h, w = prep.image.shape[:2]
    print(f"CenterGroup {a.backbone}, input {w}x{h}, flip test, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'part':<48}{'s/image':>10}{'ratio':>10}")
    print(f"{'network on [image, mirror]':<48}{net_s:>10.3f}{1.0:>10.2f}")
    print(f"{'nodes + grouping (2 branches) + merge + decode':<48}{post_s:>10.3f}{post_s / net_s:>10.3f}")
    print(f"{'whole pipeline, batch 1':<48}{b1:>10.3f}{1.0:>10.2f}")
    print(f"{'whole pipeline, batch ' + str(a.batch):<48}{b8:>10.3f}{b8 / b1:>10.3f}")
    print(json.dumps({"network_s": net_s, "post_s": post_s, "batch1_s_per_image": b1, f"batch{a.batch}_s_per_image": b8}))


if __name__ == "__main__":
    main()
