"""How many torch intra-op threads a CPU training process uses when the config leaves it open.

Oversubscribed OpenMP threads thrash: on a 2-core machine loaded by other jobs, a training step of
the demo's model took ~10x longer with 2 threads than with 1 (docs/training.md, "Threads").
"""

from __future__ import annotations

import os

__all__ = ["auto_threads", "choose_threads"]

_CHOSEN: dict[int, tuple[int, int, float, int]] = {}


def choose_threads(cpus: int, local_processes: int, load: float) -> int:
    """Threads per process: ``cpus`` shared among ``local_processes``, lowered to the CPUs the load
    average ``load`` leaves idle (rounded; at least 1 per process)."""
    share = max(1, cpus // max(1, local_processes))
    idle = int(cpus - load + 0.5)
    return max(1, min(share, idle // max(1, local_processes)))


def auto_threads(local_processes: int = 1) -> tuple[int, int, float, int]:
    """``(threads, share, load, cpus)`` for this process: ``choose_threads`` with the CPUs it may run
    on (``os.sched_getaffinity``) and the 1-minute load average, decided once per process and
    number of local processes (so the runs of one process all use the same count)."""
    if local_processes not in _CHOSEN:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        share = max(1, cpus // max(1, local_processes))
        _CHOSEN[local_processes] = (choose_threads(cpus, local_processes, load), share, load, cpus)
    return _CHOSEN[local_processes]
