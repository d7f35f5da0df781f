"""bupose-resnet test setup: makes ``_resnet_golden`` importable; float32 without TF32; one thread.

Tests run torch single-threaded: their tensors are small, and on a shared CPU intra-op threads
spinning against other processes made them much slower.
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
