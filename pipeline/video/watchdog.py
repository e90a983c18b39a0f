"""Stop waiting for a decoder that stalls.

Decoding runs in a worker thread (PyAV and decord release the GIL inside FFmpeg), and the caller
waits for each result at most ``timeout_s`` seconds: "stalled" means no progress for that long,
so a long video that keeps decoding never times out. A stalled worker cannot be killed; it is
abandoned (a daemon thread) and closes its decoder itself if it ever returns.
The worker also works ahead of the consumer (a bounded number of items), overlapping decoding
with whatever the consumer does with the results.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from ..errors import DecodeTimeoutError

T = TypeVar("T")

_POLL_S = 0.05  # how often a blocked worker checks whether the consumer has gone


def call_with_timeout(fn: Callable[[], T], timeout_s: float, path: Path, what: str) -> T:
    """Return ``fn()``, or raise ``DecodeTimeoutError`` when it has not returned after ``timeout_s`` seconds."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e

    worker = threading.Thread(target=run, name=f"{what} {path.name}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise DecodeTimeoutError(path, f"{what} stalled: no result after {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class Prefetcher(Generic[T]):
    """Iterate ``produce()`` in a worker thread, at most ``depth`` items ahead; each wait is limited to ``timeout_s``.

    ``finalize`` runs in the worker thread when it stops (exhausted, failed or closed), so the
    resource it releases is never touched by two threads at once.
    """

    def __init__(self, produce: Callable[[], Generator[T, None, None]], finalize: Callable[[], None], *,
                 depth: int, timeout_s: float, path: Path, what: str):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._timeout_s = timeout_s
        self._path = path
        self._what = what
        self._done = False
        self._worker = threading.Thread(target=self._run, args=(produce, finalize), name=f"{what} {path.name}", daemon=True)
        self._worker.start()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        try:
            kind, value = self._queue.get(timeout=self._timeout_s)
        except queue.Empty:
            self.close(wait=False)
            raise DecodeTimeoutError(self._path, f"{self._what} stalled: no progress for {self._timeout_s:g} s") from None
        if kind == "item":
            return value
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self, wait: bool = True) -> None:
        """Tell the worker to stop and, with ``wait``, give it ``timeout_s`` to release what it holds.

        Waiting matters: a worker still closing FFmpeg's decoder threads when the interpreter
        exits can abort the process. A worker that does not finish in time is stalled and abandoned.
        """
        self._done = True
        self._stop.set()
        if wait and self._worker is not threading.current_thread():
            self._worker.join(self._timeout_s)

    def _run(self, produce: Callable[[], Generator[T, None, None]], finalize: Callable[[], None]) -> None:
        outcome: tuple[str, object] | None = ("end", None)
        items = None
        try:
            items = produce()
            for item in items:
                if not self._put(("item", item)):
                    outcome = None  # the consumer has gone
                    break
        except BaseException as e:  # handed to the consumer
            outcome = ("error", e)
        try:
            if items is not None:
                items.close()
            finalize()
        except BaseException as e:
            if outcome is not None and outcome[0] == "end":
                outcome = ("error", e)
        if outcome is not None:
            self._put(outcome)  # after finalize: a consumer holding the outcome has nothing left to wait for

    def _put(self, message: tuple[str, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False
