"""Thumbnails of key frames: the first frame at or after a second, as the design defines a chunk's key frame.

Frames come from the same probe and PyAV decoder as extraction (rotation applied, any pixel format to 8-bit
RGB), so a thumbnail shows exactly the frame the model scored. Each is a small JPEG data URI.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.report.html import data_uri
from pipeline.video.decoders import PyAVDecoder
from pipeline.video.probe import probe
from pipeline.video.sampling import key_frame_at

THUMBNAIL_HEIGHT = 96  # pixels; twice that would cost about three times the bytes per image
_QUALITY = 80


def key_frames(path: str | Path, seconds: Sequence[int], height: int = THUMBNAIL_HEIGHT) -> list[str]:
    """JPEG data URIs of the key frames of the chunks starting at ``seconds``, in that order.

    Raises a ``pipeline.errors.VideoError`` naming the file when it cannot be decoded.
    """
    info, index, _ = probe(path)
    times = index.seconds()
    frame_of = {s: min(key_frame_at(times, s), len(times) - 1) for s in seconds}
    decoder = PyAVDecoder(Path(path), index)
    try:
        frames = {i: frame.rgb() for i, frame in decoder.frames(sorted(set(frame_of.values())))}
    finally:
        decoder.close()
    return [_jpeg(np.rot90(frames[frame_of[s]], k=-(info.rotation // 90)), height) for s in seconds]


def _jpeg(rgb: np.ndarray, height: int) -> str:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb))
    width = max(1, round(image.width * height / image.height))
    image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_QUALITY, optimize=True)
    return data_uri(buffer.getvalue(), "image/jpeg")
