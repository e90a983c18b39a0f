"""Decoder processes: each decodes one video at a time and streams its chunks back over a pipe.

A decoder library that crashes (segfault) or hangs on a bad file must cost that video only, never the
run: :class:`DecodePool` decodes each video in a worker process, streams its chunks back over a pipe,
and replaces a worker that dies or stays silent too long. Workers import this module, so it stays light
(see :mod:`pipeline.extract.decoding`).

When the device converts clips (``DecodeOptions.planes``, the accelerator recipe), clips come as YUV
planes in shared memory (:mod:`pipeline.extract.plane_ring`) and NSS is left to the device as well: the
decoder processes then only decode and copy planes.

What crosses a pipe is typed: the main process sends :class:`Assignment` (``None`` stops the worker); a worker
sends :class:`WorkerReady` once, :class:`NewPlaneBuffer` when its ring grows, the decoder events of
:mod:`~pipeline.extract.decoding` as they are, except that a chunk travels as a :class:`ChunkHeader` followed by
the raw bytes of its arrays (or with :class:`PlanesInRing` saying where its planes lie).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import NamedTuple

import numpy as np
import torch

from pipeline.errors import UsageError
from pipeline.extract.decoding import (
    ChunkDecoded, DecodedChunk, Decoded, DecodeEvent, DecodeFailed, DecodeOptions, Opened, decode_video, describe,
)
from pipeline.extract.heap import keep_freed_memory
from pipeline.extract.plane_ring import SLOTS, PlaneLayout, PlaneRing, page_lock, planes_at
from pipeline.video import VideoInfo
from pipeline.video.yuv import YUVClip, key_frame_view

#: Seconds a decoder process may stay silent beyond the decoder's own timeout before it is killed.
_KILL_GRACE_S = 10.0


class Assignment(NamedTuple):
    """Main process to worker: decode the video at ``path`` as task ``task``."""

    task: int
    path: str


class WorkerReady(NamedTuple):
    """Worker to main process, once: started and waiting for its first assignment."""


class NewPlaneBuffer(NamedTuple):
    """Worker to main process: later YUV clips of task ``task`` lie in ``buffer`` (the worker's grown ring)."""

    task: int
    buffer: torch.Tensor


class PlanesInRing(NamedTuple):
    """Where a chunk's YUV planes and key frame lie in the worker's ring, and how to convert them."""

    layout: PlaneLayout
    colorspace: int
    full_range: bool
    rotation: int


class ChunkHeader(NamedTuple):
    """Worker to main process: a chunk; unless its clip is :class:`PlanesInRing`, the raw bytes of its key frame
    (channels last) and of its clip (of shape ``clip``) follow."""

    task: int
    key_frame_shape: tuple[int, int, int]
    clip: tuple[int, ...] | PlanesInRing
    nss: np.ndarray | None
    second: int


def feed_plan(workers: int | str, cpus: int, *, cuda: bool, models: bool) -> tuple[int, int]:
    """(decoder processes, decoder threads each) for ``extract.workers`` on a machine with ``cpus`` usable cores.

    ``auto`` is what keeps the models busy. With CUDA the CPU's only job is feeding the GPU: all cores but
    two decode (one for the main process, one for the system). On a CPU, where the CNNs take nearly all
    the time, decoding in the main process measured fastest (BENCHMARKS.md, extraction end to end); with no
    CNN at all (NSS only) decoding is the work, and one single-threaded process per core measured fastest
    (BENCHMARKS.md, "The CPU feed"). A process that cannot start children (a daemonic Dask worker) decodes
    itself. Threads are set so that processes x threads <= cores.
    """
    if workers == "auto":
        if mp.current_process().daemon:
            workers = 0
        elif cuda:
            workers = max(1, cpus - 2)
        else:
            workers = 0 if models else cpus
    return workers, max(1, cpus // max(1, workers))


class DecodePool:
    """Decodes videos in separate processes, one video per task; a crash or hang fails that video only.

    Each worker talks to this process over its own pipe (no shared queue a dying process could corrupt) and
    is sent its next video only when idle, so backpressure is natural: a worker blocks on a full pipe while
    the models catch up. A worker silent for ``timeout_s`` (counted only while this process is waiting on
    it, and only once it has started) is killed; a worker that dies takes only its video down. Either way
    a fresh worker replaces it.
    """

    def __init__(self, workers: int, options: DecodeOptions, timeout_s: float | None = None,
                 decode: Callable[[str, DecodeOptions], Iterator[VideoInfo | DecodedChunk]] = decode_video,
                 device: torch.device = torch.device("cpu")):
        if workers < 1:
            raise UsageError(f"workers must be >= 1 for a decode pool, got {workers}")
        self.options = options
        self.timeout_s = options.timeout_s + _KILL_GRACE_S if timeout_s is None else timeout_s
        self.decode = decode
        self.device = device  # where the planes are copied to: on CUDA their buffers are page-locked
        # A fork server imports this module once and forks each worker from that clean, single-threaded
        # process: workers (and their replacements after a crash) start in milliseconds, not seconds.
        # Spawn where there is no fork server.
        forkserver = "forkserver" in mp.get_all_start_methods()
        self._ctx = mp.get_context("forkserver" if forkserver else "spawn")
        if forkserver:
            self._ctx.set_forkserver_preload([__name__])
        # Started now, so their start-up (a fresh interpreter importing torch and the decoders) overlaps
        # whatever the caller does next, such as building the models.
        self._workers: list[_Worker | None] = [self._start() for _ in range(workers)]

    def events(self, tasks: Iterable[tuple[int, str]]) -> Iterator[DecodeEvent]:
        """Events of every task, interleaved across workers; each task ends with Decoded or DecodeFailed."""
        queue, more = iter(tasks), True  # drawn only when a worker is idle: ``tasks`` may be claimed lazily
        while more or any(w and w.task is not None for w in self._workers):
            for slot, worker in enumerate(self._workers):
                if more and (worker is None or worker.task is None):
                    task = next(queue, None)
                    if task is None:
                        more = False
                        break
                    if worker is None or not worker.process.is_alive():
                        worker = self._workers[slot] = self._start()
                    worker.assign(*task)
            busy = {w.conn: w for w in self._workers if w and w.task is not None}
            began = time.monotonic()
            ready = set(wait(list(busy), timeout=min(1.0, self.timeout_s)))
            waited = time.monotonic() - began
            for conn, worker in busy.items():
                if conn in ready:
                    yield from self._receive(worker)
                elif worker.started:
                    worker.silent_s += waited
                    if worker.silent_s > self.timeout_s:
                        yield self._fail(worker, f"{worker.path}: decoding stalled for more than "
                                                 f"{self.timeout_s:.0f} s; its decoder process was killed")

    def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        for worker in filter(None, self._workers):
            worker.stop()
        self._workers = [None] * len(self._workers)

    def _start(self) -> _Worker:
        ours, theirs = self._ctx.Pipe()
        free = self._ctx.Semaphore(SLOTS) if self.options.planes else None
        process = self._ctx.Process(target=_worker_main, args=(theirs, self.options, self.decode, free), daemon=True)
        process.start()
        theirs.close()  # so a dead worker shows up here as end-of-file
        return _Worker(process, ours, free)

    def _receive(self, worker: _Worker) -> Iterator[DecodeEvent]:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            code = worker.process.exitcode
            how = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
            yield self._fail(worker, f"{worker.path}: its decoder process died ({how}), e.g. a crash in the "
                                     "decoding library")
            return
        worker.silent_s = 0.0
        match message:
            case WorkerReady():
                worker.started = True
            case NewPlaneBuffer(buffer=buffer):
                worker.take_planes(buffer, self.device)
            case ChunkHeader():
                try:
                    yield ChunkDecoded(message.task, receive_chunk(worker.conn, message, worker.planes, worker.free))
                except (EOFError, OSError):  # died mid-chunk: reported as its death when its pipe is read next
                    return
            case Opened():
                yield message
            case Decoded() | DecodeFailed():
                worker.task = None
                yield message

    def _fail(self, worker: _Worker, reason: str) -> DecodeFailed:
        """Kill ``worker`` and report its video failed; the slot gets a fresh worker on the next task."""
        task = worker.task
        worker.stop(force=True)
        self._workers[self._workers.index(worker)] = None
        return DecodeFailed(task, reason)


@dataclass(eq=False)
class _Worker:
    """A decoder process, its pipe, and the video it is on."""

    process: mp.process.BaseProcess
    conn: Connection
    free: object = None  # the semaphore its plane ring's slots come back through (None: no planes)
    planes: torch.Tensor | None = None  # this process's mapping of the worker's shared plane buffer
    unlock: Callable[[], None] | None = None  # undoes the page-locking of ``planes``
    task: int | None = None
    path: str = ""
    started: bool = False
    silent_s: float = 0.0

    def assign(self, task: int, path: str) -> None:
        self.task, self.path, self.silent_s = task, path, 0.0
        self.conn.send(Assignment(task, path))

    def take_planes(self, buffer: torch.Tensor, device: torch.device) -> None:
        """Read later clips from ``buffer``, page-locked for ``device``; the old buffer's slots are all back by now
        (the worker grows its ring only then), and its clips were converted as they came."""
        self.drop_planes()
        self.planes, self.unlock = buffer, page_lock(buffer, device)

    def drop_planes(self) -> None:
        if self.unlock is not None:
            self.unlock()
        self.planes = self.unlock = None

    def stop(self, force: bool = False) -> None:
        self.drop_planes()
        if not force:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _worker_main(conn: Connection, options: DecodeOptions, decode: Callable, free=None) -> None:
    """Decoder process: decode each video it is sent and stream its chunks back (YUV clips through ``ring``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    torch.set_num_threads(1)
    keep_freed_memory()
    path = ""
    ring = PlaneRing(free, options.timeout_s, lambda: path) if options.planes else None
    try:
        conn.send(WorkerReady())
        while (assignment := conn.recv()) is not None:
            task, path = assignment
            try:
                for item in decode(path, options, ring) if ring else decode(path, options):
                    if isinstance(item, DecodedChunk):
                        send_chunk(conn, task, item, ring)
                    else:
                        conn.send(Opened(task, item))
            except (EOFError, BrokenPipeError):
                raise
            except Exception as exc:  # noqa: BLE001 - reported to the main process as this video's failure
                conn.send(DecodeFailed(task, describe(exc, path)))
                continue
            finally:
                if ring:
                    ring.reclaim()
            conn.send(Decoded(task))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the main process is gone: nothing left to do
    finally:
        conn.close()


# A chunk crosses the pipe as a small pickled header (shapes, NSS row) followed by the raw bytes of its arrays:
# no pickled copy of the pixels on either side, only the pipe's own (the cheaper hand-off:
# BENCHMARKS.md, "The CPU feed"). A YUV clip stays in shared memory: the header says where its planes lie.
def send_chunk(conn: Connection, task: int, chunk: DecodedChunk, ring: PlaneRing | None = None) -> None:
    """Send ``chunk`` of ``task`` down ``conn``, its clip in ``ring`` when it is a YUV clip (a decoder's side)."""
    if isinstance(chunk.clip, YUVClip):
        if ring.announced is not ring.buffer:
            conn.send(NewPlaneBuffer(task, ring.buffer))
            ring.announced = ring.buffer
        yuv = chunk.clip
        clip = PlanesInRing(ring.locate(yuv, chunk.key_frame), yuv.colorspace, yuv.full_range, yuv.rotation)
        arrays = ()  # the key frame lies beside the planes
    else:  # the key frame's bytes channels last, as decoded and as the receiver lays them out
        clip, arrays = tuple(chunk.clip.shape), (chunk.key_frame.permute(1, 2, 0), chunk.clip)
    conn.send(ChunkHeader(task, tuple(chunk.key_frame.shape), clip, chunk.nss, chunk.second))
    for array in arrays:
        conn.send_bytes(array.contiguous().view(-1).numpy())


def receive_chunk(conn: Connection, header: ChunkHeader, planes: torch.Tensor | None = None,
                  free: object = None) -> DecodedChunk:
    """The chunk ``header`` announces: its arrays read from ``conn``, or its clip viewed in ``planes`` (the
    sender's ring, whose slot ``free``, a semaphore, gets back when the chunk is released)."""
    clip = header.clip
    if isinstance(clip, PlanesInRing):
        y, u, v, key_frame = planes_at(planes, clip.layout)
        return DecodedChunk(key_frame, YUVClip(y, u, v, clip.colorspace, clip.full_range, clip.rotation), header.nss,
                            header.second, release=free.release)
    key_frame = key_frame_view(_receive_bytes(conn, math.prod(header.key_frame_shape)), header.key_frame_shape)
    return DecodedChunk(key_frame, _receive_bytes(conn, math.prod(clip)).view(clip), header.nss, header.second)


def _receive_bytes(conn: Connection, size: int) -> torch.Tensor:
    memory = torch.empty(size, dtype=torch.uint8)
    conn.recv_bytes_into(memory.numpy())
    return memory
