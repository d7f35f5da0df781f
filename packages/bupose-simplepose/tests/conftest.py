"""bupose-simplepose test setup: makes the ``_sp_golden`` helper importable; float32 without TF32;
torch single-threaded (small tensors on a shared machine)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_num_threads(1)
