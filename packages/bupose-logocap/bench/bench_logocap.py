"""LOGO-CAP inference benchmark (CPU), figures printed side by side.

    python packages/bupose-logocap/bench/bench_logocap.py [--repeats 5] [--input-size 256] [--images 8]

1. Decode per image with 30 centres (KEM, KAM network, global adaptation) on a 512x832 network
   input: the batched ``LogoCapDecoder`` against a straightforward per-person, per-joint loop
   (each person's KAM run on its own, each joint's 97x97 window sampled and convolved on its own,
   as a direct reading of the method would do it).
2. The whole pipeline (warp, network on [image, flipped image], decode) per image at batch 1 and
   batch 8 with the same backbone and input size, next to DEKR's pipeline when bupose-dekr is
   installed (looked up through the registry).

Figures depend on the machine's load; the script prints the ratios next to them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bupose.core.algorithms.geometry import multi_scale_size
from bupose.core.model import build_model
from bupose.core.plugins import get_registry
from bupose.core.specs import import_object
from bupose.logocap.decode import COCO_SIGMAS, LogoCapDecoder, clamped_bilinear, kem_grid


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def crafted(people: int = 30, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    meta = multi_scale_size((300, 480), 512)
    w_in, h_in = meta.size_wh
    h, w = h_in // 4, w_in // 4
    ys, xs = np.mgrid[0:h, 0:w]
    hm = rng.normal(0, 0.02, (18, h, w)).astype(np.float32)
    off = rng.normal(0, 0.5, (34, h, w)).astype(np.float32)
    for _ in range(people):
        cx, cy = rng.uniform(8, w - 8), rng.uniform(8, h - 8)
        hm[17] += 0.8 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 8.0)
        for j in range(17):
            jx, jy = cx + rng.normal(0, 6), cy + rng.normal(0, 8)
            hm[j] += 0.7 * np.exp(-((xs - jx) ** 2 + (ys - jy) ** 2) / 8.0)
            near = (np.abs(xs - cx) < 4) & (np.abs(ys - cy) < 4)
            off[2 * j][near] = (xs - jx)[near]
            off[2 * j + 1][near] = (ys - jy)[near]
    emb = rng.normal(0, 1, (64, h, w)).astype(np.float32)
    return {"heatmap": torch.from_numpy(hm), "offset": torch.from_numpy(off), "embedding": torch.from_numpy(emb),
            "meta": meta, "input_hw": (h_in, w_in)}  # type: ignore[dict-item]


def loop_refine(dec: LogoCapDecoder, head: torch.nn.Module, x: dict, init: torch.Tensor) -> torch.Tensor:
    """Per-person, per-joint global adaptation (the same arithmetic, no batching)."""
    hr = F.interpolate(x["heatmap"][None], size=x["input_hw"], mode="bilinear", align_corners=False)[0]
    r = torch.arange(-48, 49, dtype=torch.float32)
    gy, gx = torch.meshgrid(r, r, indexing="ij")
    prior = torch.exp(-(gx * gx + gy * gy) / (2 * 16.0**2))
    out = torch.empty(init.shape[0], 17, 2)
    for n in range(init.shape[0]):
        cand = kem_grid(init[n : n + 1], COCO_SIGMAS)
        kam = head.kam(dec.kam_input(x["embedding"], cand))[0]
        for j in range(17):
            px, py = init[n, j, 0] + gx, init[n, j, 1] + gy
            win = clamped_bilinear(hr[j : j + 1], px, py)[0] * prior
            resp = F.conv2d(win[None, None], torch.flip(kam[j], (0, 1))[None, None], padding=5)[0, 0] / 121
            i = resp.flatten().topk(2).indices
            bx = 0.75 * (i[0] % 97) + 0.25 * (i[1] % 97) - 48
            by = 0.75 * (i[0] // 97) + 0.25 * (i[1] // 97) - 48
            out[n, j] = init[n, j] + torch.stack([bx, by]).float()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--input-size", type=int, default=256)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--backbone", default="hrnet_w18_small")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    layout = get_registry().get("layouts", "coco17")

    model = build_model("logocap", "hrnet_w32").eval()
    head = model.head
    x = crafted()
    dec = LogoCapDecoder(layout)
    kam_fn = lambda t: head.kam(t, clamp=False)  # noqa: E731
    t_batched = timed(lambda: dec.decode(x["heatmap"], x["offset"], x["embedding"], kam_fn, x["meta"]), args.repeats)
    hr = F.interpolate(x["heatmap"][None], size=x["input_hw"], mode="bilinear", align_corners=False)[0]
    top, mask = dec.centers(hr[-1])
    init = dec.initial_poses(x["offset"], top)[mask]
    t_loop = timed(lambda: loop_refine(dec, head, x, init), max(1, args.repeats // 2))
    print(f"decode, {int(mask.sum())} centres, 512x832 input: batched {t_batched * 1e3:.1f} ms, "
          f"per-person loop {t_loop * 1e3:.1f} ms, ratio {t_loop / t_batched:.1f}x")

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (300, 400, 3), dtype=np.uint8) for _ in range(args.images)]
    rows = []
    for name in ("logocap", "dekr"):
        try:
            spec = get_registry().get("heads", name)
        except Exception:  # noqa: BLE001 - dekr is optional here
            print(f"{name}: not installed, skipped")
            continue
        m = build_model(name, args.backbone).eval()
        pipe = import_object(spec.pipeline)(m, input_size=args.input_size)
        t1 = timed(lambda p=pipe: [p.predict_batch([im]) for im in images], max(1, args.repeats // 2)) / len(images)
        t8 = timed(lambda p=pipe: p.predict_batch(images), max(1, args.repeats // 2)) / len(images)
        rows.append((name, t1, t8))
    for name, t1, t8 in rows:
        print(f"pipeline {name} on {args.backbone} @{args.input_size}, CPU, per image: batch 1 {t1 * 1e3:.1f} ms, "
              f"batch {args.images} {t8 * 1e3:.1f} ms (x{t1 / t8:.2f})")
    if len(rows) == 2:
        print(f"logocap / dekr per image (batch 1): {rows[0][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
