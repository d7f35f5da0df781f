"""Writes tests/data/golden/grouppose/forward_r50_coco_outputs.pt: the outputs, reference points and
selection of shared/golden/grouppose/forward_r50_coco.pt (its inputs are rebuilt from the recipe by
the test; their checksums are kept), with the source's sha256.

    python packages/bupose-grouppose/tests/data/extract_forward.py /work/shared/golden/grouppose/forward_r50_coco.pt
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

KEEP = ("output/", "intermediate/decoder/", "intermediate/encoder/topk", "meta/")


def main(src: str) -> None:
    data = torch.load(src, weights_only=True)
    out = {k: v for k, v in data.items() if k.startswith(KEEP)}
    out["input/tensors_sum"] = data["input/tensors"].double().sum()
    out["input/mask"] = data["input/mask"]
    out["meta/source_sha256"] = hashlib.sha256(Path(src).read_bytes()).hexdigest()
    dst = Path(__file__).parent / "golden" / "grouppose" / "forward_r50_coco_outputs.pt"
    torch.save(out, dst)
    print(f"{dst}: {len(out)} entries")


if __name__ == "__main__":
    main(sys.argv[1])
