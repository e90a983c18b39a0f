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

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import torch

from pipeline.backbones import Backbones
from pipeline.extract.decoding import DecodedChunk, describe
from pipeline.extract.device_step import HostRows, download, stop_if_device_broken, to_device, upload
from pipeline.extract.plan import VideoJob
from pipeline.feature_kinds import NSS, spatial_kind, temporal_kinds
from pipeline.nss import nss_features_batch
from pipeline.video.yuv import YUVClip, clip_from_yuv

#: Decoded videos that may wait for their last rows (batches spanning videos fill up later) before every
#: partial batch is run: bounds the work a killed run loses and the delay before a video is stored.
MAX_WAITING_VIDEOS = 8


class BatchKey(NamedTuple):
    """What the items of one batch share: the backbone that reads them (as the feature kinds name it), the spatial
    level, the input's shape, and the video when batches stay within one (CPU)."""

    backbone: str  # resnet50 | slowfast | nss
    level: str | None = None
    shape: tuple[int, ...] | None = None
    owner: VideoJob | None = None


@dataclass
class _Item:
    """A tensor a backbone reads (a key frame or a clip; for NSS, both), and the video chunk its rows belong to."""

    video: VideoJob
    index: int
    tensor: torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass
class _Pending:
    """A launched batch: its items, and its rows on their way to the host."""

    items: list[_Item]
    rows: HostRows


class Batcher:
    """Gathers the chunks of the videos in progress into backbone batches and hands each video its rows.

    Batches span videos when the backbones' recipe is batched (accelerators), else hold one video's chunks.
    """

    def __init__(self, backbones: Backbones, batch_size: int):
        self.backbones = backbones
        self.batch_size = batch_size
        self.span = backbones.recipe.batched
        self._queues: dict[BatchKey, list[_Item]] = {}
        self._in_flight: deque[_Pending] = deque()
        self._waiting: dict[VideoJob, None] = {}  # decoded, some rows still to come (insertion-ordered set)
        self._finished: list[VideoJob] = []

    def add(self, video: VideoJob, chunk: DecodedChunk) -> None:
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
        queued = [(BatchKey("resnet50", level, tuple(key_frame.shape), owner), key_frame) for level in video.levels]
        if self.backbones.temporal:
            queued.append((BatchKey("slowfast", shape=tuple(clip.shape), owner=owner), clip))
        if chunk.nss is not None:
            video.rows.setdefault(NSS, {})[index] = chunk.nss
        elif self.backbones.cfg.nss:
            queued.append((BatchKey("nss", owner=owner), (key_frame, clip)))
        for key, tensor in queued:
            if video.error is not None:  # a batch launched for an earlier part of this chunk failed it
                return
            queue = self._queues.setdefault(key, [])
            queue.append(_Item(video, index, tensor))
            if len(queue) >= self.batch_size:
                self._launch(key)

    def decoded(self, video: VideoJob) -> None:
        """No more chunks come for ``video``: it ends once its rows are all back."""
        self._waiting[video] = None
        if not self.span:
            self.flush(video)
        elif len(self._waiting) > MAX_WAITING_VIDEOS:
            self.flush()
        self._settle(video)

    def fail(self, video: VideoJob, error: str) -> None:
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

    def flush(self, video: VideoJob | None = None) -> None:
        """Run the partial batches (of ``video``, or all) and wait for every batch in flight."""
        for key in [k for k in self._queues if video is None or k.owner is video]:
            self._launch(key)
        while self._in_flight:
            self._collect(self._in_flight.popleft())

    def finished(self) -> list[VideoJob]:
        """The videos that ended (all rows back, or failed) since the last call, in the order they ended."""
        videos, self._finished = self._finished, []
        return videos

    def _launch(self, key: BatchKey) -> None:
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

    def _run(self, key: BatchKey, items: list[_Item]) -> _Pending:
        if key.backbone == "nss":  # key frames of any size: uploaded one by one; one synchronisation for the batch
            device = self.backbones.device
            key_frames, clips = zip(*(item.tensor for item in items))
            rows = nss_features_batch([k.to(device) for k in key_frames], [c.to(device) for c in clips])
            return _Pending(items, download({NSS: torch.from_numpy(rows)}))
        batch = upload([item.tensor for item in items], self.backbones.device)
        if key.backbone == "resnet50":
            outputs = {spatial_kind(key.level): self.backbones.spatial_batch(batch, key.level)}
        else:
            outputs = dict(zip(temporal_kinds(), self.backbones.temporal_batch(batch)))
        return _Pending(items, download(outputs))

    def _collect(self, pending: _Pending) -> None:
        try:
            results = pending.rows.wait()
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

    def _settle(self, video: VideoJob) -> None:
        """Report ``video`` when it is decoded, has not failed, and all its rows are back."""
        if video in self._waiting and video.has_all_rows(self.backbones.kinds(video.levels)):
            del self._waiting[video]
            self._finished.append(video)
