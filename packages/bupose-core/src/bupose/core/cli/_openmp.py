"""The OpenMP wait policy of the commands that train (docs/training.md, "Threads")."""

from __future__ import annotations

import os
import sys

__all__ = ["prefer_passive_openmp"]


def prefer_passive_openmp() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process and its children unless the user set a
    policy or torch (whose OpenMP runtime reads it once, when it loads) is already imported.

    Passive OpenMP threads sleep instead of spinning while they wait, so threads that outnumber
    the free CPUs do not steal them from the thread doing the work. Returns whether it was set.
    """
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
