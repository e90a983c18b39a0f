"""Decoding videos into chunks for the models, in this process or in separate worker processes.

A decoder library that crashes (segfault) or hangs on a bad file must cost that video only, never the
run: :class:`DecodePool` decodes each video in a worker process, streams its chunks back over a pipe,
and replaces a worker that dies or stays silent too long. This module is what those workers import,
so it stays light: video decoding and the weight-free NSS features, no models, no store.

When the device converts clips (``DecodeOptions.planes``, the accelerator recipe), clips come as YUV
planes in shared memory (:mod:`pipeline.plane_ring`) and NSS is left to the device as well: the
decoder processes then only decode and copy planes.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

import numpy as np
import torch

from pipeline.config import ExtractConfig
from pipeline.errors import UsageError, VQAError
from pipeline.nss import nss_features
from pipeline.plane_ring import SLOTS, PlaneRing, page_lock, planes_at
from pipeline.video import VideoInfo, open_chunks
from pipeline.video.yuv import PlaneBuffers, YUVClip, key_frame_view, new_planes

#: Seconds a decoder process may stay silent beyond the decoder's own timeout before it is killed.
_KILL_GRACE_S = 10.0
_READY = "ready"

Event = tuple[int, str, object]  # (task id, "info" | "chunk" | "done" | "failed", payload)
_NO_KEY_FRAME, _NO_CLIP = torch.empty(3, 0, 0, dtype=torch.uint8), torch.empty(0, 3, 0, 0, dtype=torch.uint8)


@dataclass(frozen=True)
class DecodeOptions:
    """How videos are decoded; everything a decoder process needs (picklable)."""

    decoder: str
    max_chunks: int
    clip_frames: int
    clip_size: int
    timeout_s: float
    nss: bool
    device: str = "cpu"
    threads: int = 0  # the decoder's threads (0: its own choice)
    planes: bool = False  # clips the device can convert come as YUV planes, and NSS is left to the device
    pixels: bool = True  # chunks carry their pixels; without a model to read them, only NSS rows need to cross

    @classmethod
    def from_config(cls, cfg: ExtractConfig, device: str = "cpu", threads: int = 0,
                    planes: bool = False) -> DecodeOptions:
        pixels = bool(cfg.levels or cfg.temporal) or (cfg.nss and planes)
        return cls(cfg.decoder, cfg.max_chunks, cfg.clip.frames, cfg.clip.size, cfg.decode_timeout_s, cfg.nss, device,
                   threads, planes, pixels)


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


@dataclass
class DecodedChunk:
    """One chunk ready for the models: uint8 key frame (3, H, W), uint8 clip (T, 3, S, S) or its YUV planes, NSS row
    or None (then the device computes it), and the second of the video it starts at (the store records it:
    per-second scores name that second). ``release`` frees the shared memory the planes and the key frame lie in,
    once read."""

    key_frame: torch.Tensor
    clip: torch.Tensor | YUVClip
    nss: np.ndarray | None
    second: int
    release: Callable[[], None] | None = None

    @classmethod
    def without_pixels(cls, nss: np.ndarray, second: int) -> DecodedChunk:
        """A chunk carrying only its NSS row, as a decoder process sends it when no model reads the pixels."""
        return cls(_NO_KEY_FRAME, _NO_CLIP, nss, second)


def decode_video(path: str, options: DecodeOptions,
                 buffers: PlaneBuffers = new_planes) -> Iterator[VideoInfo | DecodedChunk]:
    """Yield the video's :class:`VideoInfo`, then each chunk in order (with NSS when ``options.nss``, unless
    ``options.planes`` leaves it to the device; YUV clips are written into ``buffers``; no pixels unless
    ``options.pixels``)."""
    with open_chunks(path, decoder=options.decoder, max_chunks=options.max_chunks, clip_frames=options.clip_frames,
                     clip_size=options.clip_size, timeout_s=options.timeout_s, device=options.device,
                     threads=options.threads, planes=buffers if options.planes else None) as stream:
        yield stream.info
        for chunk in stream:
            nss = nss_features(chunk.key_frame, chunk.clip) if options.nss and not options.planes else None
            if options.pixels:
                yield DecodedChunk(chunk.key_frame, chunk.clip, nss, chunk.second)
            else:  # NSS only, computed here: the 10 MB of pixels a 1080p chunk holds would cross the pipe for nothing
                yield DecodedChunk.without_pixels(nss, chunk.second)


def describe(exc: BaseException, path: str) -> str:
    """A one-line reason naming the file: typed errors already do; others get their type and the path."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, VQAError) else f"{path}: {type(exc).__name__}: {text}"


def inline_events(tasks: Iterable[tuple[int, str]], options: DecodeOptions) -> Iterator[Event]:
    """Decode in this process, one video after another (no protection against decoder crashes)."""
    for task, path in tasks:
        try:
            for item in decode_video(path, options):
                yield (task, "chunk", item) if isinstance(item, DecodedChunk) else (task, "info", item)
        except Exception as exc:  # noqa: BLE001 - a decoding failure fails this video only
            yield task, "failed", describe(exc, path)
            continue
        yield task, "done", None


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

    def events(self, tasks: Iterable[tuple[int, str]]) -> Iterator[Event]:
        """Events of every task, interleaved across workers; each task ends with "done" or "failed"."""
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

    def _receive(self, worker: _Worker) -> Iterator[Event]:
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
        if message == _READY:
            worker.started = True
            return
        task, kind, payload = message
        if kind == "planes":  # the worker's new shared buffer: later YUV clips lie in it
            worker.take_planes(payload, self.device)
            return
        if kind == "chunk":
            try:
                payload = _receive_chunk(worker, payload)
            except (EOFError, OSError):  # died mid-chunk: reported as its death when its pipe is read next
                return
        if kind in ("done", "failed"):
            worker.task = None
        yield task, kind, payload

    def _fail(self, worker: _Worker, reason: str) -> Event:
        """Kill ``worker`` and report its video failed; the slot gets a fresh worker on the next task."""
        task = worker.task
        worker.stop(force=True)
        self._workers[self._workers.index(worker)] = None
        return task, "failed", reason


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
        self.conn.send((task, path))

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
    path = ""
    ring = PlaneRing(free, options.timeout_s, lambda: path) if options.planes else None
    try:
        conn.send(_READY)
        while (message := conn.recv()) is not None:
            task, path = message
            try:
                for item in decode(path, options, ring) if ring else decode(path, options):
                    if isinstance(item, DecodedChunk):
                        _send_chunk(conn, task, item, ring)
                    else:
                        conn.send((task, "info", item))
            except (EOFError, BrokenPipeError):
                raise
            except Exception as exc:  # noqa: BLE001 - reported to the main process as this video's failure
                conn.send((task, "failed", describe(exc, path)))
                continue
            finally:
                if ring:
                    ring.reclaim()
            conn.send((task, "done", None))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the main process is gone: nothing left to do
    finally:
        conn.close()


# A chunk crosses the pipe as a small pickled header (shapes, NSS row) followed by the raw bytes of its arrays:
# no pickled copy of the 10 MB of pixels on either side, only the pipe's own (half the hand-off's CPU time:
# BENCHMARKS.md, "The CPU feed"). A YUV clip stays in shared memory: the header says where its planes lie.
def _send_chunk(conn: Connection, task: int, chunk: DecodedChunk, ring: PlaneRing | None = None) -> None:
    if isinstance(chunk.clip, YUVClip):
        if ring.announced is not ring.buffer:
            conn.send((task, "planes", ring.buffer))
            ring.announced = ring.buffer
        yuv = chunk.clip
        clip = (ring.locate(yuv, chunk.key_frame), yuv.colorspace, yuv.full_range, yuv.rotation)
        arrays = ()  # the key frame lies beside the planes
    else:  # the key frame's bytes channels last, as decoded and as the receiver lays them out
        clip, arrays = tuple(chunk.clip.shape), (chunk.key_frame.permute(1, 2, 0), chunk.clip)
    conn.send((task, "chunk", (tuple(chunk.key_frame.shape), clip, chunk.nss, chunk.second)))
    for array in arrays:
        conn.send_bytes(array.contiguous().view(-1).numpy())


def _receive_chunk(worker: _Worker, header: tuple) -> DecodedChunk:
    key_shape, clip, nss, second = header
    if isinstance(clip[0], tuple):  # (layout of planes and key frame, colour space, full range, rotation): in shared memory
        layout, colorspace, full_range, rotation = clip
        y, u, v, key_frame = planes_at(worker.planes, layout)
        return DecodedChunk(key_frame, YUVClip(y, u, v, colorspace, full_range, rotation), nss, second,
                            release=worker.free.release)
    key_frame = key_frame_view(_receive_bytes(worker.conn, math.prod(key_shape)), key_shape)
    return DecodedChunk(key_frame, _receive_bytes(worker.conn, math.prod(clip)).view(clip), nss, second)


def _receive_bytes(conn: Connection, size: int) -> torch.Tensor:
    memory = torch.empty(size, dtype=torch.uint8)
    conn.recv_bytes_into(memory.numpy())
    return memory
