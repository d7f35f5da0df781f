"""What bfloat16 (``--amp`` on CPU) does to DEKR's poses, on the golden end-to-end case.

    python packages/bupose-dekr/bench/bench_amp_accuracy.py [--threads 1]

Builds the "headscaled" W32 COCO checkpoint of ``tests/test_e2e.py`` (manifest + recipe; it finds
57 people on the two golden images), runs the flip-test pipeline in float32 and under bfloat16
autocast (forced with ``BUPOSE_AMP_EMULATED_BF16=1`` where the CPU has no native bf16, so it is
slow there but computes what a native-bf16 CPU computes, up to its kernels' summation order), and
prints per image: people found, whether the order is the same, and the largest keypoint and
score differences between the matched people (each bf16 pose matched to the nearest fp32 one).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
IMAGES = ("000000000011.png", "000000000012.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["BUPOSE_AMP_EMULATED_BF16"] = "1"
    sys.path.insert(0, str(TESTS))
    from _golden import E2E, build_state_dict, load

    from bupose.core.inference import load_model
    from bupose.core.io import read_image

    fw = load("forward_w32_coco.pt")
    const = {k[len("const/") :]: v for k, v in fw.items() if k.startswith("const/")}
    sd = build_state_dict("manifest_w32_coco.tsv", const)
    k = torch.tensor(1e-3, dtype=torch.float32)
    sd["head_heatmap.1.weight"] = sd["head_heatmap.1.weight"] * k
    for j in range(17):
        sd[f"offset_final_layer.{j}.weight"] = sd[f"offset_final_layer.{j}.weight"] * k
    bias = sd["head_heatmap.1.bias"].clone()
    bias[17] = bias[17] + torch.tensor(1.5, dtype=torch.float32)
    sd["head_heatmap.1.bias"] = bias
    images = [read_image(E2E / n) for n in IMAGES]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pose_dekr_hrnetw32_coco.pth"
        torch.save(sd, path)
        results = {}
        for amp in (False, True):
            est = load_model("dekr", "hrnet_w32", path, flip=True, amp=amp)
            t = time.process_time()
            results[amp] = est.predict(images)
            print(f"{'bf16' if amp else 'fp32'}: {time.process_time() - t:.1f} s CPU for {len(images)} images", flush=True)
    print(f"{'image':<20}{'fp32':>6}{'bf16':>6}{'same order':>12}{'max px':>10}{'median px':>11}{'max score':>11}")
    for name, a, b in zip(IMAGES, results[False], results[True]):
        ka, kb = a.keypoints[..., :2], b.keypoints[..., :2]
        order = len(a) == len(b) and bool(np.all(np.argsort(-a.scores) == np.argsort(-b.scores)))
        px, ds = [], []
        for i in range(len(b)):
            if len(a) == 0:
                break
            d = np.linalg.norm(ka - kb[i][None], axis=-1).mean(axis=1)
            m = int(np.argmin(d))
            px.append(float(np.linalg.norm(ka[m] - kb[i], axis=-1).max()))
            ds.append(abs(float(a.scores[m]) - float(b.scores[i])))
        print(
            f"{name:<20}{len(a):>6}{len(b):>6}{order!s:>12}{(max(px) if px else 0):>10.3f}"
            f"{(float(np.median(px)) if px else 0):>11.3f}{(max(ds) if ds else 0):>11.2e}"
        )


if __name__ == "__main__":
    main()
