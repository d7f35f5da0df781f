"""Grouping time per image: bupose's vectorised SimplePose grouping vs the official-style Python loop.

Scenes: the golden single-scale fixture (4 people, 61 peaks) and a dense synthetic scene (a grid of
people drawn like the fixture, ~1000 peaks). Both implementations run on the same maps in one process;
the script checks that they find the same people (subset records, keypoints, scores) and prints the
times side by side with the ratio.

    python bench/bench_grouping.py [--people 56] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from official_grouping import group_loop  # noqa: E402

from bupose.simplepose.config import LIMBS  # noqa: E402
from bupose.simplepose.grouping import group_people  # noqa: E402

FIXTURE = HERE.parent / "tests" / "data" / "golden" / "simplepose" / "grouping_single_scale.pt"

# a standing person in CMU order, unit height (x to the right, y down), centred at x = 0
_TEMPLATE = np.array([
    (0.00, 0.08), (0.00, 0.20), (-0.12, 0.20), (-0.16, 0.36), (-0.18, 0.50), (0.12, 0.20), (0.16, 0.36),
    (0.18, 0.50), (-0.08, 0.52), (-0.09, 0.73), (-0.10, 0.95), (0.08, 0.52), (0.09, 0.73), (0.10, 0.95),
    (-0.03, 0.06), (0.03, 0.06), (-0.06, 0.07), (0.06, 0.07),
])


def dense_scene(people: int, seed: int = 0, cell: tuple[int, int] = (48, 88)) -> tuple[np.ndarray, np.ndarray]:
    """Keypoint maps (H, W, 20) and limb maps (H, W, 30) of a grid of ``people`` jittered people."""
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(people * cell[1] / cell[0])))
    rows = int(np.ceil(people / cols))
    cw, ch = cell
    h, w = rows * ch, cols * cw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    heat = np.zeros((h, w, 20))
    limbs = np.zeros((h, w, 30))
    for p in range(people):
        r, c = divmod(p, cols)
        size = ch * rng.uniform(0.8, 0.9)
        joints = _TEMPLATE * size + rng.normal(0, 0.6, _TEMPLATE.shape)
        joints[:, 0] += c * cw + cw / 2
        joints[:, 1] += r * ch + (ch - size) / 2
        for k, (x, y) in enumerate(joints):
            g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.6**2))
            heat[:, :, k] = np.maximum(heat[:, :, k], g)
        for k, (a, b) in enumerate(LIMBS):
            pa, pb = joints[a], joints[b]
            d = pb - pa
            length = np.hypot(*d) + 1e-9
            t = np.clip(((xx - pa[0]) * d[0] + (yy - pa[1]) * d[1]) / length**2, 0, 1)
            dist2 = (xx - pa[0] - t * d[0]) ** 2 + (yy - pa[1] - t * d[1]) ** 2
            limbs[:, :, k] = np.maximum(limbs[:, :, k], np.exp(-dist2 / (2 * 1.3**2)))
    noise = rng.normal(0, 0.004, heat.shape)
    return heat + np.abs(noise), limbs


def _time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=56, help="people in the dense scene (18 peaks each)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per implementation (fastest is reported)")
    ap.add_argument("--official-repeat", type=int, default=1, help="runs of the slow loop")
    args = ap.parse_args()
    torch.set_num_threads(1)

    g = torch.load(FIXTURE, weights_only=True)
    scenes = [("fixture (4 people)", g["input/heatmap_avg_hwc"].double().numpy(), g["input/paf_avg_hwc"].double().numpy())]
    heat, limbs = dense_scene(args.people)
    scenes.append((f"dense ({args.people} people)", heat, limbs))

    print(f"{'scene':24s} {'peaks':>6s} {'people':>6s} {'official loop':>14s} {'bupose':>10s} {'ratio':>8s}  same")
    for name, heat, limbs in scenes:
        t_fast, fast = _time(lambda: group_people(heat, limbs), args.repeat)  # noqa: B023
        t_loop, (subset, kps, scores) = _time(lambda: group_loop(heat, limbs), args.official_repeat)  # noqa: B023
        same = (
            np.array_equal(subset, fast.subset)
            and np.array_equal(kps, fast.keypoints[..., :2])
            and np.array_equal(scores, fast.scores)
        )
        print(
            f"{name:24s} {fast.candidate.shape[0]:6d} {len(fast.scores):6d} {t_loop * 1e3:11.1f} ms "
            f"{t_fast * 1e3:7.1f} ms {t_loop / t_fast:7.1f}x  {'yes' if same else 'NO'}"
        )


if __name__ == "__main__":
    main()
