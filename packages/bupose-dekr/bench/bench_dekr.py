"""DEKR inference benchmark (CPU): decode alone and the whole run pipeline, side by side.

    python packages/bupose-dekr/bench/bench_dekr.py [--repeats 20] [--input-size 256] [--images 8]

1. Decode alone, 30 people, flip test, 512x832 network input (maps 128x208, COCO): the vectorised
   ``DEKRDecoder`` against a straightforward full-map decode with per-pose Python loops
   (``naive_decode.py``, like the official test loop).
2. The whole pipeline (warp, network on plain + flipped input, decode) on CPU with
   ``hrnet_w18_small`` at a modest input size, batch 1 vs batch 8 (per-image latency).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from naive_decode import naive_decode

from bupose.dekr.decode import DEKRDecoder, ScaleOutput
from bupose.dekr.preprocess import multi_scale_size


def crafted_outputs(people: int = 30, seed: int = 0) -> list[ScaleOutput]:
    """Network outputs of a 300x480 image at INPUT_SIZE 512 (input 512x832) with ``people`` centres."""
    rng = np.random.default_rng(seed)
    meta = multi_scale_size((300, 480), 512)
    w_in, h_in = meta.size_wh
    h, w = h_in // 4, w_in // 4
    ys, xs = np.mgrid[0:h, 0:w]

    def maps() -> tuple[torch.Tensor, torch.Tensor]:
        hm = rng.normal(0, 0.02, (18, h, w)).astype(np.float32)
        off = rng.normal(0, 0.5, (34, h, w)).astype(np.float32)
        for _ in range(people):
            cx, cy = rng.uniform(8, w - 8), rng.uniform(8, h - 8)
            hm[17] += 0.8 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 2.0**2))
            joints = np.stack([cx + rng.normal(0, 6, 17), cy + rng.normal(0, 8, 17)], 1)
            for j, (jx, jy) in enumerate(joints):
                hm[j] += 0.7 * np.exp(-((xs - jx) ** 2 + (ys - jy) ** 2) / (2 * 2.0**2))
                near = (np.abs(xs - cx) < 4) & (np.abs(ys - cy) < 4)
                off[2 * j][near] = (xs - jx)[near]
                off[2 * j + 1][near] = (ys - jy)[near]
        return torch.from_numpy(hm), torch.from_numpy(off)

    hm, off = maps()
    hmf, offf = maps()
    return [ScaleOutput(1.0, hm, off, hmf, offf, meta)]


def demo_pipeline(backbone: str, input_size: int, n_images: int) -> tuple[Any, list[np.ndarray]]:
    """A flip-test DEKRPipeline on a seeded fresh model whose centre bias makes every image yield
    people (so decode does work), and ``n_images`` random 300x400 RGB images."""
    from bupose.core.model import build_model
    from bupose.dekr.pipeline import DEKRPipeline

    torch.manual_seed(0)
    model = build_model("dekr", backbone).eval()
    with torch.no_grad():
        model.head.head_heatmap[1].bias[-1] = 0.5
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(n_images)]
    return DEKRPipeline(model, flip=True, input_size=input_size), images


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in tqdm(range(repeats), desc=getattr(fn, "__name__", "run"), leave=False):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--pipeline-repeats", type=int, default=3)
    ap.add_argument("--input-size", type=int, default=256)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--backbone", default="hrnet_w18_small")
    ap.add_argument("--skip-pipeline", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    dec = DEKRDecoder("coco17")
    outs = crafted_outputs()
    poses = dec.decode(outs)
    ref, _ = naive_decode(dec, outs)
    print(f"decode: {len(poses)} people kept (naive: {len(ref)})")

    def vectorised() -> None:
        dec.decode(outs)

    def naive() -> None:
        naive_decode(dec, outs)

    threads = torch.get_num_threads()
    print("\n== decode alone (30 people, flip, 512x832 input, median ms/image) ==")
    for n in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(n)
        fast = statistics.median(timed(vectorised, args.repeats)) * 1e3
        slow = statistics.median(timed(naive, max(3, args.repeats // 4))) * 1e3
        print(f"{'vectorised DEKRDecoder':<28}{fast:>10.2f} ms   ({n} thread(s))")
        print(f"{'full maps + Python loops':<28}{slow:>10.2f} ms   ratio {slow / fast:6.1f}x")
    torch.set_num_threads(threads)

    if args.skip_pipeline:
        return
    pipe, images = demo_pipeline(args.backbone, args.input_size, args.images)
    rows = []
    for bs in (1, args.images):

        def run(bs: int = bs) -> None:
            for i in range(0, len(images), bs):
                pipe.predict_batch(images[i : i + bs])

        run.__name__ = f"pipeline bs={bs}"
        t = statistics.median(timed(run, args.pipeline_repeats)) / len(images) * 1e3
        rows.append((bs, t))
    print(f"\n== whole pipeline, {args.backbone} @ {args.input_size}, flip, CPU (median ms/image) ==")
    base = rows[0][1]
    for bs, t in rows:
        print(f"batch {bs:<4}{t:>10.1f} ms/image   speed-up vs batch 1 {base / t:5.2f}x")


if __name__ == "__main__":
    main()
