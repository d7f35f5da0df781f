"""Rebuild ``golden/grouppose/forward_r50_coco_backbone.pt`` from shared/golden (run by hand, not by tests).

    python extract_r50_backbone.py /path/to/shared/golden

The full fixture ``grouppose/forward_r50_coco.pt`` (3.3 MB: the whole GroupPose forward) is not copied;
this keeps the one backbone tensor it has, ``intermediate/backbone/last_feature`` (C5), byte-exact, plus
what is needed to rebuild and check its input (the input is ``recipe.golden_input`` zero-padded).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

KEEP = ("intermediate/backbone/last_feature", "meta/image_sizes_hw", "meta/input_seed", "meta/generated_with")


def main(shared_golden: str) -> None:
    src = Path(shared_golden) / "grouppose" / "forward_r50_coco.pt"
    d = torch.load(src, map_location="cpu", weights_only=True)
    out = {k: d[k] for k in KEEP}
    x = d["input/tensors"].double()
    out["input/shape"] = torch.tensor(d["input/tensors"].shape)
    out["input/sum"] = x.sum().item()
    out["input/abs_sum"] = x.abs().sum().item()
    out["meta/source"] = (
        f"grouppose/forward_r50_coco.pt sha256 {hashlib.sha256(src.read_bytes()).hexdigest()}"
    )
    torch.save(out, Path(__file__).parent / "golden" / "grouppose" / "forward_r50_coco_backbone.pt")


if __name__ == "__main__":
    main(sys.argv[1])
