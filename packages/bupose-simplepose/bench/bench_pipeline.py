"""Whole SimplePose pipeline per image on this machine: single scale vs the official 5-scale search.

Builds the official-size IMHN (129M parameters, random weights: the timing does not depend on them)
and runs ``SimplePosePipeline`` on one synthetic image, printing network / fusion / grouping times
per image for each setting side by side.

    python bench/bench_pipeline.py [--height 240 --width 320] [--boxsize 512] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bupose.core.model import build_model
from bupose.simplepose.pipeline import SimplePosePipeline


def _run(pipe: SimplePosePipeline, bgr: np.ndarray) -> dict[str, float]:
    t0 = time.perf_counter()
    heat, limbs = pipe.network_maps(bgr)
    t1 = time.perf_counter()
    pipe.group_maps(heat, limbs)
    t2 = time.perf_counter()
    return {"network+fusion": t1 - t0, "grouping": t2 - t1, "total": t2 - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--boxsize", type=int, default=512, help="official 512; smaller for a quick smoke run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model("simplepose", "imhn").to(args.device).eval()
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    rows = []
    for name, scales in (("single scale + flip", (1.0,)), ("5 scales + flip (official)", None)):
        pipe = SimplePosePipeline(model, scales=scales, input_size=args.boxsize)
        with torch.inference_mode():
            rows.append((name, _run(pipe, bgr)))
    print(f"image {args.width}x{args.height}, boxsize {args.boxsize}, device {args.device}")
    print(f"{'setting':28s} {'network+fusion':>15s} {'grouping':>10s} {'total':>9s}")
    for name, t in rows:
        print(f"{name:28s} {t['network+fusion']:13.2f} s {t['grouping'] * 1e3:7.1f} ms {t['total']:7.2f} s")
    print(f"5-scale / single-scale: {rows[1][1]['total'] / rows[0][1]['total']:.1f}x")


if __name__ == "__main__":
    main()
