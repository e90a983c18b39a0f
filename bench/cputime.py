"""CPU time of a piece of work, the way the benches compare parts: the least of several runs."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_cpu(run: Callable[[], object], repeats: int, warm_up: bool = False) -> float:
    """The least process CPU seconds (all threads, user + system) ``run`` took over ``repeats`` runs.

    ``warm_up``: call ``run`` once first, untimed (first-call allocations and caches are not what is measured).
    """
    if warm_up:
        run()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best
