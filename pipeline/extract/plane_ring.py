"""Shared memory for the YUV clips a decoder process hands to the main process, which converts them on the device.

A 1080p clip's planes are about 100 MB; through the pipe they would cost the CPU what converting them
saves (BENCHMARKS.md, "The CPU feed"). So each decoder process writes its clips, each with its chunk's key
frame, into a ring of :data:`SLOTS` slots of shared memory and sends only where each lies. The main process converts a
clip (on the device: upload, then :func:`pipeline.video.yuv.clip_from_yuv`) and releases its slot
through a process-shared semaphore, which the decoder waits on before it reuses the slot. The ring grows
(a new buffer, sent once over the pipe) when a larger video comes, after every slot of the old one is back.

The decoding thread takes slots (:meth:`PlaneRing.__call__` is the chunk assembly's
:data:`~pipeline.video.yuv.PlaneBuffers`); the process's main thread sends the chunks (:meth:`PlaneRing.locate`)
and, after each video, hands back the slots of clips that were never sent (:meth:`PlaneRing.reclaim`).

On CUDA the main process page-locks each buffer it is sent (:func:`page_lock`), so the device copies planes
straight out of shared memory; from pageable memory CUDA would first copy them into a staging buffer of its
own, which costs the host as much again (BENCHMARKS.md, "upload staging").

Shared memory lives in ``/dev/shm``, which containers often keep small (Docker: 64 MB). Writing past its
end would kill the decoder process (SIGBUS), so a buffer that would not fit is not made: that video's clips
are converted by swscale in the decoder instead (the same definition), with one warning saying how to
make room.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
from collections.abc import Callable

import torch
import torch.multiprocessing  # noqa: F401 - registers the reductions that send a shared tensor as a file descriptor

from pipeline.errors import DecodeTimeoutError
from pipeline.video.yuv import YUVClip, key_frame_view

#: Clips a decoder process may have written that the main process has not released: one being converted
#: while the next is written.
SLOTS = 2

PlaneLayout = tuple[tuple[int, tuple[int, ...]], ...]  # (offset in the buffer, shape) of Y, U, V and the key frame
SHARED_MEMORY = "/dev/shm"

log = logging.getLogger(__name__)


def shared_memory_free(root: str = SHARED_MEMORY) -> int:
    """Bytes free in the shared-memory file system (0 where there is none)."""
    try:
        stat = os.statvfs(root)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


class PlaneRing:
    """The decoder process's side: slots of one shared buffer, taken in turn, each free again once released."""

    def __init__(self, free, timeout_s: float, path: Callable[[], str],
                 room: Callable[[], int] = shared_memory_free):
        self._free = free  # a multiprocessing semaphore of SLOTS, released by the main process
        self._timeout_s = timeout_s
        self._path = path  # the video being decoded, for the timeout's message
        self._room = room
        self._no_room_for = math.inf  # the smallest slot size that did not fit
        self._lock = threading.Lock()
        self.buffer: torch.Tensor | None = None
        self.announced: torch.Tensor | None = None  # the buffer the main process has been sent
        self._slot_bytes = 0
        self._next = 0
        self._taken = 0
        self._sent = 0

    def __call__(self, frames: int, luma: tuple[int, int], chroma: tuple[int, int],
                 key: tuple[int, int, int]) -> tuple[torch.Tensor, ...] | None:
        """Y, U and V of a clip and its key frame in the next free slot (waiting for one), or None when shared
        memory has no room."""
        shapes = ((frames, *luma), (frames, *chroma), (frames, *chroma), key)
        sizes = [math.prod(shape) for shape in shapes]
        need = sum(sizes)
        if need >= self._no_room_for or need > self._slot_bytes and not self._grow(need):
            return None
        self._take()
        start = self._next * self._slot_bytes
        self._next = (self._next + 1) % SLOTS
        with self._lock:
            self._taken += 1
        return planes_at(self.buffer, tuple(zip(itertools.accumulate(sizes[:-1], initial=start), shapes)))

    def _grow(self, need: int) -> bool:
        """A buffer of SLOTS slots of ``need`` bytes, once every slot of the old one is back; False if it cannot fit."""
        for _ in range(SLOTS):
            self._take()
        try:
            if SLOTS * need > self._room():  # the old buffer is not counted: the main process still maps it
                self._warn(SLOTS * need)
                self._no_room_for = need
                return False
            self.buffer = None  # unmapped here before the new one is made
            self.buffer = torch.empty(SLOTS * need, dtype=torch.uint8).share_memory_()
            self._slot_bytes, self._next = need, 0
            return True
        finally:
            for _ in range(SLOTS):
                self._free.release()

    def _warn(self, size: int) -> None:
        if self._no_room_for == math.inf:  # once per decoder process
            log.warning("%s: %.0f MB of shared memory (%s) are needed to hand clips to the device and %.0f MB are "
                        "free; clips of videos this large are converted on the CPU instead (slower on a GPU node). "
                        "Make room, e.g. docker run --shm-size=%dg", self._path(), size / 2**20, SHARED_MEMORY,
                        self._room() / 2**20, max(1, math.ceil(4 * size / 2**30)))

    def locate(self, clip: YUVClip, key_frame: torch.Tensor) -> PlaneLayout:
        """Where a clip's planes and its key frame lie in :attr:`buffer` (the main thread sends this, and the buffer
        first if new)."""
        with self._lock:
            self._sent += 1
        base = self.buffer.data_ptr()
        return tuple((view.data_ptr() - base, tuple(view.shape)) for view in (*clip.planes, key_frame))

    def reclaim(self) -> None:
        """Free the slots of clips taken but never sent (a video that failed or stopped): call between videos."""
        with self._lock:
            unsent, self._taken, self._sent = self._taken - self._sent, 0, 0
        for _ in range(unsent):
            self._free.release()

    def _take(self) -> None:
        if not self._free.acquire(timeout=self._timeout_s):
            raise DecodeTimeoutError(self._path(), f"the main process took no clip for {self._timeout_s:.0f} s")


def page_lock(buffer: torch.Tensor, device: torch.device) -> Callable[[], None]:
    """Page-lock ``buffer`` (this process's mapping of a decoder's ring) for copies to ``device``; return what
    undoes it, to call before the buffer is dropped.

    Only on CUDA; elsewhere, and where the driver refuses (one warning), the buffer stays pageable and copies
    from it are staged as before. Registered as PyTorch registers shared memory for checkpoint staging
    (``cudaHostRegisterPortable``).
    """
    if device.type != "cuda" or not buffer.numel():
        return _nothing
    cudart = torch.cuda.cudart()
    address = buffer.data_ptr()
    error = int(cudart.cudaHostRegister(address, buffer.numel() * buffer.element_size(), _HOST_REGISTER_PORTABLE))
    if error:
        global _lock_refused
        if not _lock_refused:
            log.warning("page-locking %.0f MB of a decoder's shared memory failed (cudaError %d); its clips are "
                        "copied to the GPU through pageable memory instead (more CPU time per chunk)",
                        buffer.numel() / 2**20, error)
            _lock_refused = True
        return _nothing

    def unlock() -> None:
        error = int(cudart.cudaHostUnregister(address))
        if error:
            log.debug("unregistering a decoder's shared memory failed (cudaError %d)", error)
    return unlock


def _nothing() -> None:
    pass


_HOST_REGISTER_PORTABLE = 1
_lock_refused = False  # warned once per process


def planes_at(buffer: torch.Tensor, layout: PlaneLayout) -> tuple[torch.Tensor, ...]:
    """Views of Y, U, V and the key frame (channels last: :func:`~pipeline.video.yuv.key_frame_view`) in a ring's
    ``buffer`` (either process's mapping of it) where ``layout`` says."""
    *planes, (key_offset, key_shape) = layout
    y, u, v = (buffer[offset : offset + math.prod(shape)].view(shape) for offset, shape in planes)
    return y, u, v, key_frame_view(buffer[key_offset : key_offset + math.prod(key_shape)], key_shape)
