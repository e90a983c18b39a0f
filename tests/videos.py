"""Small, deterministic test videos generated with PyAV, so no test needs a file from outside.

Other test modules import these helpers; keep their signatures stable. The content is smooth
texture that scrolls plus a square that moves, so every frame differs from its neighbours and
lossy codecs reproduce it closely (pixel comparisons stay meaningful after compression).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Fine enough for VFR timestamps given in milliseconds or as multiples of common frame rates.
_TIME_BASE = Fraction(1, 90000)
# The same arguments must give the same bytes (the reliability suite mutates seeded byte offsets of a test video):
# - one encoder thread: x264's output depends on its thread count, which "auto" takes from the CPUs this process
#   may use (a 640x480 clip: 17,459 bytes on 2 CPUs, 16,778 under taskset -c 0); x265 picks its frame threads
#   from the core count the same way;
# - x264 without macroblock-tree rate control: with it, this x264 (core 165) encodes small frames (64x48, 320x240)
#   differently from run to run, evidently from uninitialised memory: the same frames encoded 12 times in one
#   process gave 6,368 to 6,521 bytes, equal only under a constant MALLOC_PERTURB_ (and then different for each
#   value); with mbtree=0 every value gives the same bytes;
# - bit-exact muxing: Matroska and WebM files otherwise get random segment and track UIDs.
_ENCODER_OPTIONS = {"threads": "1"}
_CODEC_OPTIONS = {"libx264": {"x264-params": "mbtree=0"}, "libx265": {"x265-params": "log-level=error:frame-threads=1"}}
_CONTAINER_OPTIONS = {"fflags": "+bitexact"}

# An extraction config sized for these videos: random weights, short sides 64/80, 8-frame clips of 32x32.
TINY_EXTRACT_YAML = """\
extract:
  device: cpu
  weights: random
  batch_size: 4
  levels: {coarse: {short_side: 64}, fine: {short_side: 80}}
  clip: {size: 32, frames: 8}
  shard_videos: 1
"""


def frame_content(k: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 (height, width, 3) image number ``k`` of the test pattern for ``seed``."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.5, 2.5, size=(3, 2))      # waves per image, per channel, along (x, y)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    shift = 0.03 * k                                # the texture scrolls 3 % of the image per frame
    x = (np.arange(width, dtype=np.float32) / width + shift)[None, :]
    y = (np.arange(height, dtype=np.float32) / height + 0.5 * shift)[:, None]
    channels = []
    for c in range(3):  # sin(a + b) from separable parts: fast even for 4K frames
        a, b = 2 * np.pi * freq[c, 0] * x, 2 * np.pi * freq[c, 1] * y + phase[c]
        channels.append(128 + 70 * (np.sin(a) * np.cos(b) + np.cos(a) * np.sin(b)))
    img = np.stack(channels, axis=-1)
    side = max(2, min(width, height) // 4)
    top = (3 * k) % max(1, height - side)
    left = (5 * k) % max(1, width - side)
    img[top:top + side, left:left + side] = (235, 235, 40)
    return np.clip(img.round(), 0, 255).astype(np.uint8)


def make_video(
    path: str | Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 30,
    fps: float = 24,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    pts: Sequence[float] | None = None,
    seed: int = 0,
    gop: int | None = None,
    options: Mapping[str, str] | None = None,
    colour: tuple[int, int] | None = None,
) -> Path:
    """Write a test video to ``path`` (container from the suffix) and return the path.

    ``width``/``height`` are the coded size. ``rotation`` is the clockwise display rotation
    stored as a display matrix, as phones do for portrait video (90: the file is shown rotated
    90 degrees clockwise, so it displays as ``height`` x ``width``). ``pts`` gives each frame's
    presentation time in seconds (variable frame rate; ``frames`` is then ``len(pts)``).
    ``gop`` sets the key frame interval (encoder default when None); ``options`` go to the
    encoder (e.g. ``{"preset": "ultrafast"}`` for large frames) and replace the defaults that make
    the bytes reproducible (``_ENCODER_OPTIONS``, ``_CODEC_OPTIONS``) key by key. ``colour`` tags the
    stream with an (AVColorSpace, AVColorRange) pair, as the decoded frames then report them.
    """
    path = Path(path)
    times = [k / fps for k in range(frames)] if pts is None else list(pts)
    with av.open(str(path), "w", container_options=_CONTAINER_OPTIONS) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = _TIME_BASE
        stream.codec_context.time_base = _TIME_BASE
        stream.options = {**_ENCODER_OPTIONS, **_CODEC_OPTIONS.get(codec, {}), **(options or {})}
        if gop is not None:
            stream.codec_context.gop_size = gop
        if colour is not None:
            stream.codec_context.colorspace, stream.codec_context.color_range = colour
        if rotation % 360:
            stream.set_display_rotation(-rotation % 360)
        for k, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(frame_content(k, width, height, seed), format="rgb24")
            frame.pts = round(t / _TIME_BASE)
            frame.time_base = _TIME_BASE
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def make_audio_only(path: str | Path, *, seconds: float = 1.0) -> Path:
    """Write a file that holds a sine tone and no video stream."""
    path = Path(path)
    rate = 16000
    with av.open(str(path), "w", container_options=_CONTAINER_OPTIONS) as container:
        stream = container.add_stream("aac", rate=rate)
        t = np.arange(int(seconds * rate)) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate = rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
