"""bupose-centergroup test setup: makes the ``_golden`` helper importable; float32 without TF32.

Tests run torch single-threaded: their tensors are small, and on a shared 2-core machine intra-op
threads spinning against other processes made them ~20x slower.
"""

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
