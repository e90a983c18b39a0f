"""A decoded frame and the two views a chunk takes of it: full-size RGB, and RGB scaled straight to a size.

Both decoders hand over frames as :class:`Frame` objects and leave the conversion to the chunk
assembly, which asks each frame only for what its chunks use: the full-size RGB of key frames, and
the small square clip view of every clip frame. The clip view is made by one swscale call from the
decoder's own pixels (YUV for PyAV) to RGB at the clip size, with area averaging (``AREA``): the
cheapest antialiased path measured (BENCHMARKS.md, "The CPU feed"), cheaper than converting the whole
frame to RGB and resizing that. Resizing this way on every device and with any ``--workers`` value
is what keeps the clips identical whatever runs the models.
"""

from __future__ import annotations

from typing import Protocol

import av
import numpy as np
from av.video.reformatter import VideoReformatter

#: swscale's area-averaging filter: antialiased when shrinking (bilinear when enlarging), and the cheapest such.
INTERPOLATION = "AREA"


class Frame(Protocol):
    def rgb(self) -> np.ndarray:
        """RGB uint8 (height, width, 3) at the stored size."""

    def resized(self, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3), scaled (aspect not kept) with :data:`INTERPOLATION`."""


class AVFrame:
    """A PyAV frame in its decoded pixel format; RGB is computed with the frame's own colour matrix and range."""

    def __init__(self, frame: av.VideoFrame, reformatter: VideoReformatter):
        self._frame = frame
        self._reformatter = reformatter  # one per decoder: swscale's context is reused frame after frame

    def rgb(self) -> np.ndarray:
        return self._frame.to_ndarray(format="rgb24")

    def resized(self, width: int, height: int) -> np.ndarray:
        scaled = self._reformatter.reformat(self._frame, width=width, height=height, format="rgb24",
                                            interpolation=INTERPOLATION, threads=1)  # parallel: across videos
        return scaled.to_ndarray()


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
