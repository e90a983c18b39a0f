"""Time a piece of work the way the benches compare parts: the least of several runs, in CPU and wall seconds.

On a machine shared with other work the least time is the closest estimate of an idle one, and CPU seconds
(this process, all threads, user + system) move much less with the load than wall seconds do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Times:
    """Wall-clock and process CPU seconds of a run."""

    wall: float
    cpu: float


def timed(run: Callable[[], T]) -> tuple[T, Times]:
    """``run``'s result and the seconds it took."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, Times(time.perf_counter() - wall, time.process_time() - cpu)


def best_times(run: Callable[[], object], repeats: int, warm_up: bool = False) -> Times:
    """The least wall and the least CPU seconds ``run`` took over ``repeats`` runs (each least on its own).

    ``warm_up``: call ``run`` once first, untimed (first-call allocations and caches are not what is measured).
    """
    if warm_up:
        run()
    runs = [timed(run)[1] for _ in range(repeats)]
    return Times(min(t.wall for t in runs), min(t.cpu for t in runs))


def best_cpu(run: Callable[[], object], repeats: int, warm_up: bool = False) -> float:
    """The least process CPU seconds ``run`` took over ``repeats`` runs."""
    return best_times(run, repeats, warm_up).cpu
