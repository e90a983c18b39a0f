"""Decoding videos into chunks for the models, and the typed events a decoder reports them with.

Whether a video is decoded in this process (:func:`inline_events`) or in a decoder process
(:mod:`pipeline.extract.decode_pool`), what comes out is the same stream of events per task: :class:`Opened`
(its properties), one :class:`ChunkDecoded` per chunk, then :class:`Decoded` or :class:`DecodeFailed`.
Decoder processes import this module, so it stays light: video decoding and the weight-free NSS features, no
models, no store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from pipeline.config import ExtractConfig
from pipeline.errors import VQAError
from pipeline.nss import nss_features
from pipeline.video import VideoInfo, open_chunks
from pipeline.video.yuv import PlaneBuffers, YUVClip, new_planes

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


class Opened(NamedTuple):
    """Task ``task``'s video is open: its decoded properties."""

    task: int
    info: VideoInfo


class ChunkDecoded(NamedTuple):
    """The next chunk of task ``task``'s video."""

    task: int
    chunk: DecodedChunk


class Decoded(NamedTuple):
    """Task ``task``'s video is decoded to its end: no more chunks come."""

    task: int


class DecodeFailed(NamedTuple):
    """Task ``task``'s video could not be decoded; ``reason`` names the file."""

    task: int
    reason: str


DecodeEvent = Opened | ChunkDecoded | Decoded | DecodeFailed


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


def inline_events(tasks: Iterable[tuple[int, str]], options: DecodeOptions) -> Iterator[DecodeEvent]:
    """Decode in this process, one video after another (no protection against decoder crashes)."""
    for task, path in tasks:
        try:
            for item in decode_video(path, options):
                yield ChunkDecoded(task, item) if isinstance(item, DecodedChunk) else Opened(task, item)
        except Exception as exc:  # noqa: BLE001 - a decoding failure fails this video only
            yield DecodeFailed(task, describe(exc, path))
            continue
        yield Decoded(task)
