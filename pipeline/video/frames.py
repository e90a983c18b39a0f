"""A decoded frame and the views a chunk takes of it: full-size RGB, RGB scaled straight to a size, YUV planes.

Both decoders hand over frames as :class:`Frame` objects and leave the conversion to the chunk
assembly, which asks each frame only for what its chunks use: the full-size RGB of key frames, and
the small square clip view of every clip frame. The clip view is made by one swscale call from the
decoder's own pixels (YUV for PyAV) to RGB at the clip size, with area averaging (``AREA``): the
cheapest antialiased path measured (BENCHMARKS.md, "The CPU feed"), cheaper than converting the whole
frame to RGB and resizing that. Every pixel gets its own chroma and exact rounding
(``FULL_CHR_H_INT``, ``ACCURATE_RND``, ``BITEXACT``), so the result is the plain arithmetic that
:mod:`.yuv` restates in torch: an accelerator computes the same view from a frame's uploaded
:meth:`AVFrame.planes` (8-bit 4:2:0), and the CPU only decodes.

The view is defined as swscale's packed RGB (``rgb24``), but comes channels first, as the models take it.
Where a frame is at least :data:`PLANAR_FROM` times the view's height, swscale's planar RGB (``gbrp``) is
the same numbers (tests/test_video_views.py pins it) at less cost (BENCHMARKS.md, "The CPU feed"), already channels first:
swscale has its own code for packed output whose vertical filter has one or two taps (a frame at most 1.5x
the view's height), which rounds differently, and uses its general filter, the one planar output always
uses, from three taps up.
"""

from __future__ import annotations

from typing import Protocol

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from .yuv import DEVICE_PIX_FMTS

#: swscale's area-averaging filter (antialiased when shrinking, and the cheapest such), with full chroma
#: resolution and exact, SIMD-independent rounding: the RGB every feature sees (feature definitions version 3).
CLIP_FLAGS = Interpolation.AREA | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
#: How many times the view's height a frame must be for its view to come from swscale's planar RGB (docstring).
PLANAR_FROM = 2
_GBR_TO_RGB = (2, 0, 1)  # gbrp's planes are green, blue, red


class Frame(Protocol):
    def rgb(self) -> np.ndarray:
        """RGB uint8 (height, width, 3) at the stored size."""

    def resized(self, width: int, height: int) -> np.ndarray:
        """RGB uint8 (3, height, width), channels first, scaled (aspect not kept) with :data:`CLIP_FLAGS`."""

    def planes(self) -> tuple[np.ndarray, ...] | None:
        """The 8-bit 4:2:0 Y, U, V planes as (rows, columns) views of the decoder's buffers, or None when the
        frame is in another pixel format (its views then come from :meth:`resized`)."""


class AVFrame:
    """A PyAV frame in its decoded pixel format; RGB is computed with the frame's own colour matrix and range."""

    def __init__(self, frame: av.VideoFrame, reformatter: VideoReformatter):
        self._frame = frame
        self._reformatter = reformatter  # one per decoder: swscale's context is reused frame after frame

    def rgb(self) -> np.ndarray:
        return self._frame.to_ndarray(format="rgb24")  # swscale's default, as decord's frames: the backends agree

    def resized(self, width: int, height: int) -> np.ndarray:
        planar = self._frame.height >= PLANAR_FROM * height
        scaled = self._reformatter.reformat(self._frame, width=width, height=height,
                                            format="gbrp" if planar else "rgb24",
                                            interpolation=CLIP_FLAGS, threads=1)  # parallel: across videos
        if planar:
            return np.stack([_plane(scaled.planes[i]) for i in _GBR_TO_RGB])
        return np.ascontiguousarray(scaled.to_ndarray().transpose(2, 0, 1))

    def planes(self) -> tuple[np.ndarray, ...] | None:
        if self._frame.format.name not in DEVICE_PIX_FMTS:
            return None
        return tuple(_plane(p) for p in self._frame.planes)

    @property
    def colour(self) -> tuple[int, bool]:
        """(AVColorSpace number, full range): how the planes read as colour, as swscale reads them."""
        frame = self._frame
        return int(frame.colorspace), frame.format.name == "yuvj420p" or int(frame.color_range) == 2  # 2: JPEG


class RGBFrame:
    """A frame a decoder delivered as RGB already (decord); scaled by the same swscale filter, in RGB."""

    def __init__(self, rgb: np.ndarray, reformatter: VideoReformatter):
        self._rgb = rgb
        self._reformatter = reformatter

    def rgb(self) -> np.ndarray:
        return self._rgb

    def resized(self, width: int, height: int) -> np.ndarray:
        frame = av.VideoFrame.from_ndarray(self._rgb, format="rgb24")
        return AVFrame(frame, self._reformatter).resized(width, height)

    def planes(self) -> None:
        return None


def _plane(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """An 8-bit plane as a (rows, columns) view of the frame's buffer (its rows padded to ``line_size``)."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
