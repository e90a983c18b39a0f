"""The two decoding backends: PyAV (the default, and the fallback for what decord cannot do) and decord.

A backend turns the sorted indices of the frames a plan needs into ``(index, frame)`` pairs, in
order, each frame a :class:`~.frames.Frame` in stored orientation (rotation is applied later, with
the other views) that converts itself to RGB at the size asked for. Both decode from the same
``FrameIndex``, so they deliver the same frames; frames that no chunk needs are decoded (codecs need
them as references) but never converted, and PyAV seeks over whole runs of them when a key frame
lies in between. ``threads`` is the decoder's thread count (0: the library's choice).

decord 0.6 is not used (PyAV is, and ``VideoInfo.decoder`` says so) when the stream is rotated
(decord ignores the display matrix and fails on such files), when its pixel format is not 8-bit
YUV (decord's old swscale converts 10-bit input differently from current FFmpeg), when decord
cannot open the file, when it counts or times the frames differently from the index, or when its
first frame differs from PyAV's (decord 0.6 fails on some small frame sizes).

A frame the decoder does not deliver although the index lists it (a damaged packet) is replaced
by the last frame before it, as a player would show it; a warning says how many.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import av
import av.error
import decord
import numpy as np
from av.video.reformatter import VideoReformatter

from ..errors import CorruptVideoError
from .frames import AVFrame, Frame, RGBFrame
from .probe import FrameIndex, VideoInfo, open_input

log = logging.getLogger(__name__)

DECODERS = ("decord", "pyav")
_DECORD_PIX_FMTS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"})
_TIMESTAMP_TOLERANCE = 2e-3  # seconds; decord reports float32 times
_PIXEL_TOLERANCE = 2         # grey levels: rounding differences between swscale versions
_DECORD_REOPEN_BYTES = 512 << 20  # RGB frames decoded before decord's reader is renewed (see DecordDecoder)


class Decoder(Protocol):
    name: str

    def frames(self, wanted: Sequence[int]) -> Iterator[tuple[int, Frame]]:
        """Yield ``(index, frame)`` for every index in ``wanted`` (sorted, unique), in order."""

    def close(self) -> None:
        """Release the file and decoder state."""


def open_decoder(kind: str, path: Path, info: VideoInfo, index: FrameIndex, first: np.ndarray,
                 threads: int = 0) -> Decoder:
    """Return a decoder of ``kind`` (``decord`` or ``pyav``), or PyAV where decord cannot decode this video.

    ``first`` is the first frame as PyAV decodes it; decord must reproduce it to be used.
    """
    if kind not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {kind!r}")
    if kind == "decord":
        reason = _decord_unsuitable(info)
        if reason is None:
            try:
                return DecordDecoder(path, index, first, threads)
            except _DecordUnusable as e:
                reason = str(e)
        log.info("%s: decoding with PyAV instead of decord: %s", path, reason)
    return PyAVDecoder(path, index, threads)


class _DecordUnusable(Exception):
    """decord cannot decode this file as the index describes it; PyAV takes over."""


def _decord_unsuitable(info: VideoInfo) -> str | None:
    if info.rotation:
        return f"rotated {info.rotation} degrees (decord ignores rotation)"
    if info.pix_fmt not in _DECORD_PIX_FMTS:
        return f"pixel format {info.pix_fmt} (decord converts only 8-bit YUV like FFmpeg does)"
    return None


class DecordDecoder:
    """Frames through decord, read one at a time, with the reader reopened now and then.

    ``seek_accurate`` skips within a GOP by decoding without conversion and seeks to the key
    frame before a farther target, so sparse plans are cheap here too. decord 0.6 holds on to
    memory as it decodes (about half an RGB frame per frame read on a loaded machine, freed only
    with the reader; ``get_batch`` is worse), so after ``_DECORD_REOPEN_BYTES`` of frames the
    reader is reopened at the next key frame, where decoding restarts without repeating work.
    """

    name = "decord"

    def __init__(self, path: Path, index: FrameIndex, first: np.ndarray, threads: int = 0):
        self._path = path
        self._threads = threads
        self._reformatter = VideoReformatter()
        self._keyframes = frozenset(index.keyframes)
        self._reopen_after = max(1, _DECORD_REOPEN_BYTES // first.nbytes)
        self._reader = self._open()
        count = len(self._reader)
        if count != len(index.pts):
            raise _DecordUnusable(f"decord counts {count} frames, the index {len(index.pts)}")
        times = self._reader.get_frame_timestamp(np.arange(count))[:, 0].astype(np.float64)
        if np.abs((times - times[0]) - np.asarray(index.seconds())).max() > _TIMESTAMP_TOLERANCE:
            raise _DecordUnusable("decord times the frames differently from the index")
        try:
            mine = self._reader.next().asnumpy()
        except decord.DECORDError as e:  # e.g. decord 0.6 miscomputes buffer sizes of some small frames
            raise _DecordUnusable(f"decord cannot decode the first frame ({_first_line(e)})") from e
        if mine.shape != first.shape or np.abs(mine.astype(np.int16) - first).max() > _PIXEL_TOLERANCE:
            raise _DecordUnusable("decord decodes the first frame differently from FFmpeg")
        self._position = 1  # the frame next() returns
        self._read = 1      # frames decoded since the reader was opened

    def frames(self, wanted: Sequence[int]) -> Iterator[tuple[int, Frame]]:
        for j in wanted:
            try:
                if self._read >= self._reopen_after and j in self._keyframes:
                    self._reader = None  # free the old reader's memory before the new one decodes
                    self._reader, self._position, self._read = self._open(), 0, 0
                if j != self._position:
                    self._reader.seek_accurate(j)
                rgb = self._reader.next().asnumpy()
            except (decord.DECORDError, _DecordUnusable) as e:
                raise CorruptVideoError(self._path, f"decord failed on frame {j} ({_first_line(e)}); decoder=pyav may read it") from e
            except StopIteration:
                raise CorruptVideoError(self._path, f"decord ran out of frames at frame {j}") from None
            self._read += j - min(j, self._position) + 1
            self._position = j + 1
            yield j, RGBFrame(rgb, self._reformatter)

    def close(self) -> None:
        self._reader = None

    def _open(self) -> decord.VideoReader:
        try:
            return decord.VideoReader(str(self._path), ctx=decord.cpu(0), num_threads=self._threads)
        except decord.DECORDError as e:
            raise _DecordUnusable(f"decord cannot open it ({_first_line(e)})") from e


class PyAVDecoder:
    """Frames through PyAV with frame threading, seeking to a key frame to skip frames no chunk needs."""

    name = "pyav"

    def __init__(self, path: Path, index: FrameIndex, threads: int = 0):
        self._path = path
        self._index = index
        self._threads = threads
        self._reformatter = VideoReformatter()
        self._container = None

    def frames(self, wanted: Sequence[int]) -> Iterator[tuple[int, Frame]]:
        index = self._index
        can_seek = index.timed
        decoded = self._restart()
        position = 0          # index of the next frame the decoder can deliver
        previous = None       # last frame delivered, stands in for frames the decoder skips
        after_seek = False
        missing = 0
        w = 0
        while w < len(wanted):
            target = wanted[w]
            key = index.keyframe_before(target) if can_seek else 0
            if key > position:
                decoded.close()
                decoded = self._seek(key)
                position, after_seek = key, True
            item = next(decoded, None)
            if item is None:  # the decoder ran out before the index did
                if previous is None:
                    raise CorruptVideoError(self._path, f"no frame decodes from frame {position} on")
                missing += len(wanted) - w
                for j in wanted[w:]:
                    yield j, self._view(previous)
                break
            j, frame = item
            if after_seek and j > target:  # the seek overshot: decode from the start, without seeking
                log.debug("%s: seek to frame %d landed at %d; decoding sequentially", self._path, key, j)
                can_seek, after_seek, position, previous = False, False, 0, None
                decoded.close()
                decoded = self._restart()
                continue
            after_seek = False
            while w < len(wanted) and wanted[w] < j:
                missing += 1
                yield wanted[w], self._view(previous if previous is not None else frame)
                w += 1
            if w < len(wanted) and wanted[w] == j:
                yield j, self._view(frame)
                w += 1
            previous, position = frame, j + 1
        decoded.close()
        if missing:
            log.warning("%s: %d needed frame(s) did not decode; the previous frame stands in", self._path, missing)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _view(self, frame: av.VideoFrame) -> AVFrame:
        return AVFrame(frame, self._reformatter)

    def _restart(self) -> Iterator[tuple[int, av.VideoFrame]]:
        self.close()
        self._container = open_input(self._path)
        stream = self._container.streams[self._index.stream]
        stream.thread_type = "AUTO"
        stream.thread_count = self._threads
        return self._decode(stream, position=0)

    def _seek(self, key: int) -> Iterator[tuple[int, av.VideoFrame]]:
        stream = self._container.streams[self._index.stream]
        self._container.seek(self._index.pts[key], stream=stream, backward=True)
        return self._decode(stream, position=key)

    def _decode(self, stream, position: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """Yield ``(index, frame)`` for decoded frames that the index lists, from ``position`` on."""
        index = self._index
        for packet in self._demux(stream):
            if packet.is_corrupt:
                continue  # left out of the index; decoding it could also lose frames in flight
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as e:
                log.debug("%s: a packet does not decode: %s", self._path, e)
                continue
            except av.error.FFmpegError as e:
                raise CorruptVideoError(self._path, f"decoding failed after frame {position}: {e}") from e
            for frame in frames:
                j = position if not index.timed or frame.pts is None else index.locate(frame.pts, position)
                if j is None or j >= len(index.pts):
                    continue  # a frame the index does not list (e.g. from the damaged tail)
                yield j, frame
                position = j + 1

    def _demux(self, stream) -> Iterator[av.Packet]:
        try:
            yield from self._container.demux(stream)
        except av.error.FFmpegError as e:
            raise CorruptVideoError(self._path, f"read error while decoding: {e}") from e


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__
