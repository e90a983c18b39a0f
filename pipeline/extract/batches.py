"""Backbone batches for the videos in progress: chunks gathered into batches, run, and handed back as rows.

On an accelerator a batch is what keeps the device busy, so batches span videos: clips always (they all
have the clip's shape), key frames grouped by level and size. A host batch is stacked into pinned memory
and copied without blocking; its results come back through pinned memory with one synchronisation per
batch, and that synchronisation waits only after the next batch has been launched, so the device computes
one batch while the host prepares the next. On a CPU the backbones run one item per call anyway
(:func:`pipeline.backbones.device.forward_batch`), so there batches stay within one video and a video's
rows are complete as soon as it is decoded, as before.

Where the recipe converts clips on the device, a chunk's clip arrives as YUV planes, its key frame beside
them: both are uploaded (on CUDA through a stream of its own, so the copy does not wait for the models), the
clip converted (:func:`pipeline.video.yuv.clip_from_yuv`) as it arrives, and their shared memory released at once;
the NSS row of such a chunk is computed on the device too, in batches like the backbones' rows.

A video's rows never depend on its batch neighbours beyond the recipe's precision: bit for bit on the
CPU; within bf16 rounding on an accelerator, where cuDNN may choose other kernels for other batch sizes.
A batch that fails runs again one video at a time, so a bad video still fails alone. An error that
leaves the device unusable (a sticky CUDA error) stops the run with :class:`~pipeline.errors.DeviceError`
instead of failing every video after it.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.backbones.device import is_sticky_device_error
from pipeline.decode_pool import DecodedChunk, Event, describe
from pipeline.errors import CorruptVideoError, DeviceError
from pipeline.nss import nss_features_batch
from pipeline.store import ShardWriter, VideoRecord, checked_rows
from pipeline.video import VideoInfo
from pipeline.video.yuv import YUVClip, clip_from_yuv

if TYPE_CHECKING:
    from pipeline.extract import Backbones

#: Decoded videos that may wait for their last rows (batches spanning videos fill up later) before every
#: partial batch is run: bounds the work a killed run loses and the delay before a video is stored.
MAX_WAITING_VIDEOS = 8


@dataclass(eq=False)
class Video:
    """One video being extracted: what it is, its rows as the batches deliver them, and how it ended."""

    key: str
    path: str
    levels: tuple[str, ...]
    size: int
    mtime: float
    info: VideoInfo | None = None
    error: str | None = None
    rows: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    seconds: list[int] = field(default_factory=list)  # the second each chunk starts at, in chunk order

    @property
    def chunks(self) -> int:
        """Chunks received so far (each brought its start second)."""
        return len(self.seconds)

    def has_all_rows(self, kinds: Iterable[str]) -> bool:
        return all(len(self.rows.get(kind, ())) == self.chunks for kind in kinds)

    def result(self) -> tuple[VideoRecord, dict[str, np.ndarray], list[int]]:
        """The video's record, rows and chunk start seconds, rows checked as the store requires (StoreError:
        this video fails)."""
        info = self.info
        if info is None or not self.chunks:
            raise CorruptVideoError(self.path, "no chunks could be decoded")
        record = VideoRecord(key=self.key, fps=info.fps, frames=info.frames, width=info.width, height=info.height,
                             duration=info.duration, decoder=info.decoder, size=self.size, mtime=self.mtime)
        rows = {kind: np.stack([rows[i] for i in range(self.chunks)]) for kind, rows in self.rows.items()}
        self.rows = {}  # the arrays go to the writer, not kept here
        return record, checked_rows(rows, self.path), self.seconds


def assemble(events: Iterable[Event], videos: list[Video], backbones: Backbones, batch_size: int,
             writer: ShardWriter) -> Iterator[tuple[str, str | None]]:
    """Turn decode events into stored videos; yield ``(key, error or None)`` as each video ends.

    A failure of one video (decoding, models, unusable rows) is yielded and the run goes on. A store that
    cannot be written, or a device that broke, raises: going on would only lose more work.
    """
    batcher = Batcher(backbones, batch_size)
    for task, kind, payload in events:
        video = videos[task]
        try:
            if video.error is None:  # else it already failed: the rest of its events mean nothing
                _handle(batcher, video, kind, payload)
        finally:
            if kind == "chunk" and payload.release:  # its planes are read (converted) or not wanted
                payload.release()
        yield from _store(batcher.finished(), writer)
    batcher.flush()
    yield from _store(batcher.finished(), writer)


def _handle(batcher: Batcher, video: Video, kind: str, payload: object) -> None:
    """One decode event of a video still in the run; a failure fails that video, a broken device stops the run."""
    try:
        if kind == "info":
            video.info = payload
        elif kind == "chunk":
            batcher.add(video, payload)
        elif kind == "done":
            batcher.decoded(video)
        else:
            stop_if_device_broken(payload, video.path)  # decoding on the device (workers 0) hit it
            batcher.fail(video, str(payload))
    except DeviceError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of one video must not stop the run
        stop_if_device_broken(exc, video.path)
        batcher.fail(video, describe(exc, video.path))


def stop_if_device_broken(error: BaseException | str, path: str) -> None:
    """Raise DeviceError when ``error`` says the device is unusable: every later video would fail the same way."""
    if is_sticky_device_error(error):
        text = str(error).removeprefix(f"{path}: ").strip()
        raise DeviceError(
            f"the device failed while extracting {path} ({' '.join(text.split()[:40])}); after such an error "
            "every later CUDA call fails, so the run stops here. The videos stored so far are kept: rerun the "
            "same command (after checking the GPU, e.g. with nvidia-smi) to extract the rest"
        ) from error if isinstance(error, BaseException) else None


def _store(videos: list[Video], writer: ShardWriter) -> Iterator[tuple[str, str | None]]:
    for video in videos:
        if video.error is None:
            try:
                record, rows, seconds = video.result()
            except Exception as exc:  # noqa: BLE001 - unusable rows fail this video only
                video.error = describe(exc, video.path)
            else:
                writer.add(record, rows, seconds)
        yield video.key, video.error


@dataclass
class _Item:
    """A tensor a backbone reads (a key frame or a clip; for NSS, both), and the video chunk its rows belong to."""

    video: Video
    index: int
    tensor: torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass
class _Pending:
    """A launched batch: its items, and its results on their way to the host (one synchronisation away)."""

    items: list[_Item]
    host: dict[str, torch.Tensor]
    done: torch.cuda.Event | None

    def wait(self) -> dict[str, np.ndarray]:
        if self.done is not None:
            self.done.synchronize()
        return {kind: rows.numpy() for kind, rows in self.host.items()}


class Batcher:
    """Gathers the chunks of the videos in progress into backbone batches and hands each video its rows.

    Batches span videos when the backbones' recipe is batched (accelerators), else hold one video's chunks.
    """

    def __init__(self, backbones: Backbones, batch_size: int):
        self.backbones = backbones
        self.batch_size = batch_size
        self.span = backbones.recipe.batched
        self._queues: dict[tuple, list[_Item]] = {}
        self._in_flight: deque[_Pending] = deque()
        self._waiting: dict[Video, None] = {}  # decoded, some rows still to come (insertion-ordered set)
        self._finished: list[Video] = []

    def add(self, video: Video, chunk: DecodedChunk) -> None:
        """Queue a chunk's key frame (once per level), clip, and NSS when it has none yet; run the batches this fills.

        A clip given as YUV planes is converted on the device, and its key frame copied there, before this returns,
        so their shared memory may be released then.
        """
        index = video.chunks
        video.seconds.append(chunk.second)
        key_frame, clip = chunk.key_frame, chunk.clip
        if isinstance(clip, YUVClip):
            clip, key_frame = to_device(clip, key_frame, self.backbones.device)
            clip = clip_from_yuv(clip, self.backbones.cfg.clip.size)
        owner = None if self.span else video
        queued = [(("spatial", level, tuple(key_frame.shape), owner), key_frame) for level in video.levels]
        if self.backbones.temporal:
            queued.append((("temporal", None, tuple(clip.shape), owner), clip))
        if chunk.nss is not None:
            video.rows.setdefault("nss", {})[index] = chunk.nss
        elif self.backbones.cfg.nss:
            queued.append((("nss", None, None, owner), (key_frame, clip)))
        for key, tensor in queued:
            if video.error is not None:  # a batch launched for an earlier part of this chunk failed it
                return
            queue = self._queues.setdefault(key, [])
            queue.append(_Item(video, index, tensor))
            if len(queue) >= self.batch_size:
                self._launch(key)

    def decoded(self, video: Video) -> None:
        """No more chunks come for ``video``: it ends once its rows are all back."""
        self._waiting[video] = None
        if not self.span:
            self.flush(video)
        elif len(self._waiting) > MAX_WAITING_VIDEOS:
            self.flush()
        self._settle(video)

    def fail(self, video: Video, error: str) -> None:
        """``video`` failed: drop its queued chunks and report it (once: later failures of it are ignored)."""
        if video.error is not None:
            return
        video.error, video.rows = error, {}
        for key in list(self._queues):
            self._queues[key] = [item for item in self._queues[key] if item.video is not video]
            if not self._queues[key]:
                del self._queues[key]
        self._waiting.pop(video, None)
        self._finished.append(video)

    def flush(self, video: Video | None = None) -> None:
        """Run the partial batches (of ``video``, or all) and wait for every batch in flight."""
        for key in [k for k in self._queues if video is None or k[3] is video]:
            self._launch(key)
        while self._in_flight:
            self._collect(self._in_flight.popleft())

    def finished(self) -> list[Video]:
        """The videos that ended (all rows back, or failed) since the last call, in the order they ended."""
        videos, self._finished = self._finished, []
        return videos

    def _launch(self, key: tuple) -> None:
        """Start the batch of ``key``; then collect the previous batch, which the device has had time to finish."""
        items = self._queues.pop(key, None)
        if not items:  # emptied meanwhile: its videos failed
            return
        try:
            self._in_flight.append(self._run(key, items))
        except Exception as exc:  # noqa: BLE001 - isolated below, one video at a time
            stop_if_device_broken(exc, items[0].video.path)
            videos = list(dict.fromkeys(item.video for item in items))
            if len(videos) == 1:
                self.fail(videos[0], describe(exc, videos[0].path))
            else:
                for video in videos:
                    self._queues[key] = [item for item in items if item.video is video]
                    self._launch(key)
        while len(self._in_flight) > 1:
            self._collect(self._in_flight.popleft())

    def _run(self, key: tuple, items: list[_Item]) -> _Pending:
        part, level = key[:2]
        if part == "nss":  # key frames of any size: uploaded one by one; one synchronisation for the batch
            device = self.backbones.device
            key_frames, clips = zip(*(item.tensor for item in items))
            rows = nss_features_batch([k.to(device) for k in key_frames], [c.to(device) for c in clips])
            return download(items, {"nss": torch.from_numpy(rows)})
        batch = upload([item.tensor for item in items], self.backbones.device)
        if part == "spatial":
            outputs = {f"spatial_{level}": self.backbones.spatial_batch(batch, level)}
        else:
            outputs = dict(zip(("temporal_slow", "temporal_fast"), self.backbones.temporal_batch(batch)))
        return download(items, outputs)

    def _collect(self, pending: _Pending) -> None:
        try:
            results = pending.wait()
        except Exception as exc:  # noqa: BLE001 - device errors surface here, at the synchronisation
            stop_if_device_broken(exc, pending.items[0].video.path)
            for video in dict.fromkeys(item.video for item in pending.items):
                self.fail(video, describe(exc, video.path))
            return
        for kind, rows in results.items():
            for item, row in zip(pending.items, rows):
                if item.video.error is None:
                    item.video.rows.setdefault(kind, {})[item.index] = row
        for video in dict.fromkeys(item.video for item in pending.items):
            self._settle(video)

    def _settle(self, video: Video) -> None:
        """Report ``video`` when it is decoded, has not failed, and all its rows are back."""
        if video in self._waiting and video.has_all_rows(self.backbones.kinds(video.levels)):
            del self._waiting[video]
            self._finished.append(video)


def to_device(clip: YUVClip, key_frame: torch.Tensor, device: torch.device) -> tuple[YUVClip, torch.Tensor]:
    """A clip's planes and its key frame on ``device``, copied by the time this returns (the shared memory they lie
    in may then be reused).

    On CUDA the copies run on a stream of their own, so they wait for no batch of the models, and the stream the
    models run on waits for them; from a decoder's ring, page-locked by :class:`~pipeline.decode_pool.DecodePool`,
    they are direct copies. The host then sleeps until they are done (a blocking event: CUDA's default wait
    spins, burning a core the decoders could use). Elsewhere the planes are read where they are (they are
    converted at once) and the key frame, which waits for its batches, is copied.
    """
    if device.type != "cuda":
        return clip, key_frame.clone()
    compute = torch.cuda.current_stream(device)
    copies = _copy_stream(device)
    copied = torch.cuda.Event(blocking=True)
    with torch.cuda.stream(copies):
        moved = clip.to(device, non_blocking=True)  # from pageable memory: returns once staged
        key_frame = key_frame.to(device, non_blocking=True)
        copied.record(copies)
    compute.wait_event(copied)
    copied.synchronize()
    for tensor in (*moved.planes, key_frame):
        tensor.record_stream(compute)
    return moved, key_frame


@functools.cache
def _copy_stream(device: torch.device) -> torch.cuda.Stream:
    """The one stream plane copies to ``device`` run on."""
    return torch.cuda.Stream(device)


def upload(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Stack host tensors of one shape into a batch on ``device``: through pinned memory, without blocking, on CUDA.

    The batch keeps the tensors' memory layout (key frames: channels last, as decoded), so stacking copies rows
    of bytes instead of transposing every pixel.
    """
    if tensors[0].device.type != "cpu":
        return torch.stack(tensors).to(device)
    pinned = device.type == "cuda"
    first = tensors[0]
    order = sorted(range(first.dim()), key=lambda dim: -first.stride(dim))  # outermost dimension first
    batch = torch.empty((len(tensors), *(first.shape[dim] for dim in order)), dtype=first.dtype, pin_memory=pinned)
    batch = batch.permute(0, *(1 + order.index(dim) for dim in range(first.dim())))
    torch.stack(tensors, out=batch)
    return batch.to(device, non_blocking=True) if pinned else batch


def download(items: list[_Item], outputs: dict[str, torch.Tensor]) -> _Pending:
    """Start copying a batch's float32 outputs to the host; on CUDA into pinned memory, with an event to wait on."""
    first = next(iter(outputs.values()))
    if first.device.type != "cuda":
        return _Pending(items, {kind: rows.to("cpu", torch.float32, copy=True) for kind, rows in outputs.items()}, None)
    host = {}
    for kind, rows in outputs.items():
        host[kind] = torch.empty(rows.shape, dtype=torch.float32, pin_memory=True)
        host[kind].copy_(rows, non_blocking=True)
    done = torch.cuda.Event(blocking=True)  # waited on by sleeping, not spinning (see to_device)
    done.record()
    return _Pending(items, host, done)
