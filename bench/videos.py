"""Generated test videos for the benches: H.264 files written once under a work folder and reused.

A file is written under a ``.part`` name and renamed when complete, so an interrupted run never leaves a
truncated video that a later run would take for a finished one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from videos import frame_content  # noqa: E402  (the test pattern the tests use)


def write_h264(path: Path, frames: Iterable[av.VideoFrame], fps: int, width: int, height: int,
               options: dict[str, str]) -> Path:
    """``path``, written from ``frames`` as yuv420p H.264 with x264 ``options``, unless it exists already."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = options
        for index, frame in enumerate(frames):
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def pattern_video(path: Path, seconds: float, fps: int, width: int, height: int) -> Path:
    """A test video of ``seconds`` of the tests' moving pattern (24 precomputed frames, cycled: fast to write)."""
    cycle = [av.VideoFrame.from_ndarray(frame_content(k, width, height), format="rgb24").reformat(format="yuv420p")
             for k in range(24)]
    frames = (cycle[k % len(cycle)] for k in range(int(seconds * fps)))
    return write_h264(path, frames, fps, width, height, {"preset": "veryfast"})


def reencoded(path: Path, sources: Iterable[Path], fps: int, width: int, height: int) -> Path:
    """``sources`` one after another, scaled (bicubic) to ``width`` x ``height``, as H.264 CRF 23 at ``fps``."""

    def frames() -> Iterable[av.VideoFrame]:
        for source in sources:
            with av.open(str(source)) as container:
                for frame in container.decode(video=0):
                    yield frame.reformat(width=width, height=height, format="yuv420p", interpolation="BICUBIC")

    return write_h264(path, frames(), fps, width, height, {"preset": "medium", "crf": "23"})
