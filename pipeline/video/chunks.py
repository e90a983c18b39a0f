"""Turn a video file into the chunks of the design, streaming: ``open_chunks`` and ``ChunkStream``.

A video is decoded once, in order, by a worker thread that assembles each chunk as soon as its
last clip frame has decoded and hands it on (at most two finished chunks wait), so decoding
overlaps with whatever the consumer does with the chunks. Only the frames of chunks still being
assembled are held (at most ``clip_frames`` resized frames and one native key frame per open
chunk), so memory does not grow with the length of the video. Frames no chunk needs are never
converted to RGB; clip frames are converted straight to the clip size (``frames``), and only key
frames at full size. The clip is made on the CPU whatever ``device`` is (then moved there), unless the
caller asks for clips as YUV planes (``planes``): then clips of 8-bit 4:2:0 frames large enough come as
:class:`~.yuv.YUVClip` (one copy of each frame's planes, the key frame written beside them), for the device
to convert with the same definition (:mod:`.yuv`), and only the other clips are converted here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import CorruptVideoError
from .decoders import DECODERS, Decoder, open_decoder
from .probe import VideoInfo, probe
from .sampling import ChunkPlan, needed_frames, plan_chunks
from .frames import Frame
from .views import display_frame, displayed
from .yuv import PlaneBuffers, YUVClip, converts_on_device, stack_planes
from .watchdog import Prefetcher, call_with_timeout

_PREFETCH_CHUNKS = 2  # finished chunks waiting for the consumer: decoding runs ahead, memory stays bounded


@dataclass
class Chunk:
    """One second of video: its key frame at native display size and its clip, resized square."""

    index: int                # position in the (possibly max_chunks-subsampled) plan, 0-based
    second: int               # the second of the video the chunk starts at
    key_frame: torch.Tensor   # uint8 (3, H, W) RGB, display size, on the stream's device, in memory
                              # channels last as decoded (rotated: a permutation of that)
    clip: torch.Tensor | YUVClip  # uint8 (clip_frames, 3, clip_size, clip_size) RGB on the stream's device, or planes


class ChunkStream:
    """The chunks of one video, decoded on demand. Iterate once; use as a context manager to release the file."""

    def __init__(self, info: VideoInfo, plans: Sequence[ChunkPlan], decoder: Decoder, *,
                 clip_size: int, device: torch.device, timeout_s: float, planes: PlaneBuffers | None = None):
        self.info = info
        self._plans = list(plans)
        self._decoder: Decoder | None = decoder
        self._clip_size = clip_size
        self._device = device
        stored = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
        device_clips = planes is not None and info.decoder == "pyav"
        self._planes = planes if device_clips and converts_on_device(info.codec, info.pix_fmt, *stored, clip_size) else None
        self._timeout_s = timeout_s
        self._chunks: Prefetcher | None = None

    @property
    def num_chunks(self) -> int:
        """How many chunks iterating yields."""
        return len(self._plans)

    def __iter__(self) -> Iterator[Chunk]:
        if self._decoder is None:
            raise RuntimeError(f"{self.info.path}: a ChunkStream is iterated once; open the video again")
        decoder, self._decoder = self._decoder, None  # the worker thread owns it from here on
        wanted = needed_frames(self._plans)

        def produce() -> Iterator[Chunk]:
            # One intra-op thread for this worker (the setting is per thread): its tensor ops are
            # small, and parallel regions that wait for cores busy decoding or running the
            # consumer's CNN made assembly much slower.
            torch.set_num_threads(1)
            frames = decoder.frames(wanted)
            try:
                yield from self._assemble(frames)
            finally:
                frames.close()

        self._chunks = Prefetcher(produce, decoder.close, depth=_PREFETCH_CHUNKS, timeout_s=self._timeout_s,
                                  path=Path(self.info.path), what="decoding")
        try:
            yield from self._chunks
        finally:
            self._chunks.close()

    def close(self) -> None:
        """Stop decoding and release the file (a stalled decoder releases it when it returns)."""
        if self._chunks is not None:
            self._chunks.close()
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _assemble(self, frames: Iterator[tuple[int, Frame]]) -> Iterator[Chunk]:
        """Build chunks from frames that arrive in index order, each exactly once."""
        plans = self._plans
        opened = 0                            # plans[:opened] have seen their key frame
        pending: deque[ChunkPlan] = deque()   # opened, not yet complete, in order
        keys: dict[int, torch.Tensor] = {}    # native key frames of pending chunks
        small: dict[int, torch.Tensor | Frame] = {}  # clip views pending chunks may still use (frames, for the device)
        emitted = 0
        rotation = self.info.rotation
        for j, frame in frames:
            if opened < len(plans) and plans[opened].key_frame == j:
                keys[j] = display_frame(frame.rgb(), rotation, self._device)
            while opened < len(plans) and plans[opened].key_frame == j:
                pending.append(plans[opened])
                opened += 1
            small[j] = frame if self._planes else self._clip_frame(frame)
            while pending and pending[0].last <= j:
                plan = pending.popleft()
                key_frame, clip = self._pixels(keys[plan.key_frame], [small[i] for i in plan.frames])
                yield Chunk(index=emitted, second=plan.second, key_frame=key_frame, clip=clip)
                emitted += 1
                lowest = (pending[0].key_frame if pending
                          else plans[opened].key_frame if opened < len(plans) else math.inf)
                for held in (keys, small):
                    for i in [i for i in held if i < lowest]:
                        del held[i]
        if emitted < len(plans):
            raise CorruptVideoError(self.info.path, f"decoding ended after {emitted} of {len(plans)} chunks")

    def _pixels(self, key_frame: torch.Tensor, views: list[torch.Tensor] | list[Frame]
                ) -> tuple[torch.Tensor, torch.Tensor | YUVClip]:
        """A chunk's key frame, as decoded, and its clip: stacked RGB views, or (frames kept for the device) their
        planes, with the key frame beside them, when they all have the planes of the video's first frame and there
        is room for them; else the frames are converted here."""
        if self._planes:
            planes = [frame.planes() for frame in views]
            if all(p is not None and [a.shape for a in p] == [a.shape for a in planes[0]] for p in planes):
                stacked = stack_planes(planes, views[0].colour, self.info.rotation, key_frame, self._planes)
                if stacked is not None:  # else the planes have no room to go (shared memory full)
                    clip, key_frame = stacked
                    return key_frame, clip
            views = [self._clip_frame(frame) for frame in views]
        return key_frame, torch.stack(views)

    def _clip_frame(self, frame: Frame) -> torch.Tensor:
        """A frame's clip view converted here: RGB at the clip size, display-oriented, on the stream's device."""
        size = self._clip_size
        return displayed(torch.from_numpy(frame.resized(size, size)).to(self._device), self.info.rotation)


def open_chunks(path: str | Path, *, decoder: str = "pyav", max_chunks: int = 0, clip_frames: int = 32,
                clip_size: int = 224, timeout_s: float = 120.0, device: str | torch.device = "cpu",
                threads: int = 0, planes: PlaneBuffers | None = None) -> ChunkStream:
    """Open a video and plan its chunks; iterate the returned stream to decode them.

    ``decoder`` is ``pyav`` or ``decord``; decord hands over to PyAV for files it cannot decode
    (``stream.info.decoder`` says which decodes); ``threads`` is its thread count (0: its own choice).
    ``planes``: clips the device can convert come as YUV planes written where it says (module docstring).
    ``max_chunks`` (0 = all) keeps that many chunks spread evenly over the video. ``timeout_s`` bounds how long opening, and then each step of
    decoding, may make no progress before ``DecodeTimeoutError``. Raises ``VideoError``
    subclasses naming the file; ``ValueError`` for invalid arguments.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    for name, value, least in (("clip_frames", clip_frames, 1), ("clip_size", clip_size, 1), ("max_chunks", max_chunks, 0),
                               ("threads", threads, 0)):
        if value < least:
            raise ValueError(f"{name} must be >= {least}, got {value}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    path = Path(path)

    def prepare() -> tuple[VideoInfo, list[ChunkPlan], Decoder]:
        info, index, first = probe(path)
        plans = plan_chunks(index.seconds(), float(index.duration), max_chunks=max_chunks, clip_frames=clip_frames)
        backend = open_decoder(decoder, path, info, index, first, threads)
        return replace(info, decoder=backend.name), plans, backend

    info, plans, backend = call_with_timeout(prepare, timeout_s, path, "opening")
    return ChunkStream(info, plans, backend, clip_size=clip_size, device=torch.device(device), timeout_s=timeout_s,
                       planes=planes)
