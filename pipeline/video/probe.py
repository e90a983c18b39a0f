"""Open a video file with PyAV, classify what is wrong with it, and index its frames without decoding them.

Both backends decode from the same index, so they plan the same frames. Indexing reads every
packet of the video stream (cheap: no decoding) and decodes only the first frame, which proves the
codec works and carries the rotation (display matrix) of the stream.

Truncated and damaged files: the index holds the packets the demuxer reads completely and intact;
a damaged tail (a short last packet, a read error) is cut off, a packet the demuxer flags as
corrupt is left out (and never decoded), and the video is what remains, provided at least one
frame decodes. An MP4 whose index (``moov``) was at the cut-off end cannot be opened at all:
``CorruptVideoError``. Packets without timestamps (raw ``.h264`` streams) are timed by their
order at the stream's nominal frame rate. Timestamps that hold one frame for longer than
:data:`MAX_FRAME_GAP_S` are corrupt (``CorruptVideoError``): every second of a video is a chunk, so
believing them would plan hours of chunks that repeat one frame.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from statistics import median_low

import av
import av.container
import av.error
import numpy as np

from ..errors import (
    CorruptVideoError,
    NoVideoStreamError,
    UnsupportedVideoError,
    VideoNotFoundError,
)

log = logging.getLogger(__name__)

#: The longest time, in seconds, one frame may be shown before the next: a longer gap between consecutive
#: timestamps is damage, not content. Variable frame rate video holds a frame for seconds (slideshows, screen
#: recordings that write a frame only when the screen changes, a phone pausing its camera), so a minute leaves a
#: wide margin; damaged timestamps can jump by hours (a mutated 3 s test clip claimed a 10,241 s gap, which
#: planned 10,254 one-second chunks of one frame). A damaged gap under the limit costs at most a minute of chunks.
MAX_FRAME_GAP_S = 60

# Opening a file decodes frames to complete the streams' parameters (about a chunk's worth of decoding for every
# video). The probe takes what it needs from its own first decoded frame, so its opening
# skips that decoding; the decoder opens the file as FFmpeg does by default (its reorder delay measured).
_PROBE_WITHOUT_DECODING = {"skip_frame": "all"}

# First bytes of the containers a camera, phone or encoder writes: a file that starts like one
# of these but does not open is damaged, anything else is not a video file at all.
_CONTAINER_SIGNATURES = (
    (4, b"ftyp"),             # MP4, MOV, 3GP
    (4, b"moov"), (4, b"mdat"), (4, b"wide"), (4, b"free"),  # QuickTime without ftyp
    (0, b"\x1a\x45\xdf\xa3"),  # Matroska, WebM
    (0, b"RIFF"),             # AVI
    (0, b"FLV"),
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"OggS"),
    (0, b"\x30\x26\xb2\x75"),  # ASF, WMV
)


@dataclass(frozen=True)
class VideoInfo:
    """A video file as it is displayed.

    ``width``/``height`` are after rotation; ``rotation`` is the clockwise rotation (0, 90, 180,
    270) applied to the stored frames for display, the convention of the ``rotate`` tag phones
    write. ``duration`` runs from the first frame's start to the last frame's end and
    ``fps = frames / duration``. ``decoder`` is the backend that actually decodes: ``decord``
    or ``pyav``.
    """

    path: str
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    rotation: int
    pix_fmt: str
    codec: str
    decoder: str


@dataclass(frozen=True)
class FrameIndex:
    """The frames of the video stream in presentation order, from demuxing alone."""

    stream: int                 # index of the video stream in the container
    pts: tuple[int, ...]        # sorted presentation timestamps, in time_base units
    time_base: Fraction
    keyframes: tuple[int, ...]  # sorted frame indices of key frames (where decoding can start)
    duration: Fraction          # seconds, first frame start to last frame end
    timed: bool                 # False: the packets had no timestamps; frames are known by order only

    def seconds(self) -> list[float]:
        """Presentation time of every frame in seconds from the first frame, exact up to float rounding."""
        first = self.pts[0]
        return [float((p - first) * self.time_base) for p in self.pts]

    def locate(self, pts: int, lo: int) -> int | None:
        """Return the index of the first frame at or after ``lo`` with timestamp ``pts``, or None."""
        i = bisect_left(self.pts, pts, lo)
        return i if i < len(self.pts) and self.pts[i] == pts else None

    def keyframe_before(self, index: int) -> int:
        """Return the last key frame at or before frame ``index`` (0 when none is known)."""
        i = bisect_left(self.keyframes, index + 1) - 1
        return self.keyframes[i] if i >= 0 else 0


def open_input(path: Path, options: dict[str, str] | None = None) -> av.container.InputContainer:
    """Open ``path`` with PyAV, turning every failure into a ``VideoError`` naming the file.

    ``options`` are FFmpeg's, for the probing of the streams that opening does (not for later decoding).
    """
    if not path.exists():
        raise VideoNotFoundError(path, "file not found")
    if path.is_dir():
        raise VideoNotFoundError(path, "is a directory, not a video file")
    if path.is_file() and path.stat().st_size == 0:
        raise NoVideoStreamError(path, "empty file (0 bytes)")
    try:
        return av.open(str(path), options=options, metadata_errors="replace")
    except PermissionError as e:
        raise VideoNotFoundError(path, f"cannot be read: {e.strerror or e}") from e
    except av.error.InvalidDataError as e:
        if _looks_like_container(path):
            raise CorruptVideoError(path, "damaged or truncated container: it cannot be opened") from e
        raise NoVideoStreamError(path, "not a video file (no known container format)") from e
    except (av.error.FFmpegError, OSError) as e:
        raise CorruptVideoError(path, f"cannot be opened: {e}") from e


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """Return the video stream to decode: the first that is not a cover picture."""
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise NoVideoStreamError(path, f"no video stream (streams: {kinds})")
    stream = streams[0]
    if stream.codec_context is None:
        raise UnsupportedVideoError(path, "the video codec is unknown to this FFmpeg build (no decoder)")
    return stream


def probe(path: str | Path) -> tuple[VideoInfo, FrameIndex, np.ndarray]:
    """Return what the file is (``decoder`` set to ``pyav``), its frame index and its first frame (RGB, stored orientation).

    Raises a ``VideoError`` subclass naming the file when it cannot be decoded.
    """
    path = Path(path)
    with open_input(path, _PROBE_WITHOUT_DECODING) as container:
        stream = video_stream(container, path)
        index, first = _scan(container, stream, path)
    rotation = round(-first.rotation / 90) * 90 % 360
    width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
    info = VideoInfo(
        path=str(path),
        width=width,
        height=height,
        fps=float(len(index.pts) / index.duration) if index.duration else _nominal_rate(stream),
        frames=len(index.pts),
        duration=float(index.duration),
        rotation=rotation,
        pix_fmt=first.format.name,
        codec=stream.codec_context.name,
        decoder="pyav",
    )
    return info, index, first.to_ndarray(format="rgb24")


def _scan(container, stream, path: Path) -> tuple[FrameIndex, av.VideoFrame]:
    """Read every packet of ``stream`` (decoding only up to the first frame) and index the frames."""
    pts: list[int | None] = []
    keys: list[bool] = []
    durations: list[int] = []
    first = None
    damaged = False
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the empty packet that ends demuxing
            if packet.is_corrupt:
                damaged = True  # a short read where the file ends, or a damaged packet: never decoded
                continue
            pts.append(packet.pts if packet.pts is not None else packet.dts)
            keys.append(packet.is_keyframe)
            durations.append(packet.duration or 0)
            if first is None:
                first = _decode_first(stream, packet, path)
    except av.error.FFmpegError as e:
        damaged = True
        log.debug("%s: read error after %d packets: %s", path, len(pts), e)
    if first is None and pts:
        first = _flush_first(stream, path)
    if first is None:
        raise CorruptVideoError(path, "the video stream holds no decodable frame")
    if damaged:
        log.warning("%s: truncated or damaged; using the %d intact frames", path, len(pts))
    return _index(stream, pts, keys, durations, path), first


def _decode_first(stream, packet, path: Path) -> av.VideoFrame | None:
    try:
        frames = stream.decode(packet)
    except av.error.DecoderNotFoundError as e:
        raise UnsupportedVideoError(path, f"no decoder for codec {stream.codec_context.name!r}") from e
    except av.error.FFmpegError as e:
        log.debug("%s: first packet does not decode: %s", path, e)
        return None
    return frames[0] if frames else None


def _flush_first(stream, path: Path) -> av.VideoFrame | None:
    try:
        frames = stream.decode(None)
    except av.error.FFmpegError as e:
        raise CorruptVideoError(path, f"the video stream does not decode: {e}") from e
    return frames[0] if frames else None


def _index(stream, pts: list[int | None], keys: list[bool], durations: list[int], path: Path) -> FrameIndex:
    """Sort the packets into presentation order and measure the duration."""
    timed = all(p is not None for p in pts)
    if timed:
        time_base = stream.time_base
        order = sorted(range(len(pts)), key=lambda i: pts[i])
        sorted_pts = tuple(pts[i] for i in order)
        _check_gaps(sorted_pts, time_base, path)
        last_duration = Fraction(durations[order[-1]]) or _typical_step(sorted_pts)
    else:
        rate = _nominal_rate(stream)
        if not rate:
            raise CorruptVideoError(path, "packets carry no timestamps and the stream has no frame rate")
        time_base = 1 / Fraction(rate).limit_denominator(1001)
        order = list(range(len(pts)))
        sorted_pts = tuple(order)
        last_duration = Fraction(1)
    position = {packet: rank for rank, packet in enumerate(order)}
    keyframes = tuple(sorted(position[i] for i, key in enumerate(keys) if key))
    duration = (sorted_pts[-1] - sorted_pts[0] + last_duration) * time_base
    return FrameIndex(stream.index, sorted_pts, time_base, keyframes, duration, timed)


def _check_gaps(pts: tuple[int, ...], time_base: Fraction, path: Path) -> None:
    """Refuse timestamps that show a frame for longer than :data:`MAX_FRAME_GAP_S` (``pts`` sorted)."""
    if len(pts) < 2:
        return
    frame = max(range(len(pts) - 1), key=lambda i: pts[i + 1] - pts[i])
    if (pts[frame + 1] - pts[frame]) * time_base > MAX_FRAME_GAP_S:
        start = float((pts[frame] - pts[0]) * time_base)
        end = float((pts[frame + 1] - pts[0]) * time_base)
        raise CorruptVideoError(
            path, f"frame {frame} of {len(pts)} is shown for {_seconds(end - start)} s (timestamps jump from "
                  f"{_seconds(start)} s to {_seconds(end)} s; more than {MAX_FRAME_GAP_S} s is not believable): "
                  "its timestamps are corrupt")


def _seconds(value: float) -> str:
    """``value`` for a message: thousands separated, at most one decimal (``1.5``, ``10,243``)."""
    return f"{value:,.1f}".removesuffix(".0")


def _typical_step(pts: tuple[int, ...]) -> Fraction:
    """The median interval between frames: how long the last frame lasts when the container does not say."""
    steps = [b - a for a, b in zip(pts, pts[1:]) if b > a]
    return Fraction(median_low(steps)) if steps else Fraction(0)


def _nominal_rate(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate and math.isfinite(float(rate)) else 0.0


def _looks_like_container(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return any(head[at:at + len(magic)] == magic for at, magic in _CONTAINER_SIGNATURES)

