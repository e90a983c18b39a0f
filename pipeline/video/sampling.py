"""The sampling plan of the design: which frames make up each one-second chunk.

A pure function of frame timestamps, so it is tested without any video and both decoding
backends pick exactly the same frames. Rules (docs/design.md, "Feature definitions"):

- chunk ``i`` starts at the first frame whose timestamp is ``>= i`` seconds, for
  ``i = 0 .. max(1, floor(duration)) - 1``; timestamps count from the first frame;
- its key frame is that first frame, its clip the ``clip_frames`` consecutive frames from
  there, the last frame of the video repeated past the end;
- a second that no frame starts at or after (possible only when the last frame is shown for
  more than a second) has no chunk;
- ``max_chunks > 0`` keeps that many chunks, evenly spread: of ``n`` chunks, number
  ``(2k + 1) * n // (2 * max_chunks)`` for ``k = 0 .. max_chunks - 1`` (the centres of equal
  parts, so neither the first nor the last second is favoured).

Timestamps should be exact (seconds computed from integer pts with rational arithmetic, as the
decoders do), so no tolerance is applied: a frame at 0.9999 s belongs to second 0.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkPlan:
    """One chunk: the second it starts at and the frame indices of its clip."""

    second: int
    frames: tuple[int, ...]  # clip frame indices, frames[0] is the key frame

    @property
    def key_frame(self) -> int:
        """Index of the key frame."""
        return self.frames[0]

    @property
    def last(self) -> int:
        """Index of the last frame the clip needs (later frames are not waited for)."""
        return self.frames[-1]


def key_frame_at(seconds: Sequence[float], second: float) -> int:
    """Index of the key frame of the chunk starting at ``second``: the first frame at or after it (``seconds``: each
    frame's time from the first frame, ascending); ``len(seconds)`` when no frame is that late."""
    return bisect_left(seconds, second)


def plan_chunks(
    timestamps: Sequence[float], duration: float, *, max_chunks: int = 0, clip_frames: int = 32
) -> list[ChunkPlan]:
    """Return the chunks of a video, in order, from its frame timestamps (seconds, presentation order).

    ``duration`` is the length of the video in seconds: from the first frame's start to the last
    frame's end. Raises ``ValueError`` for empty, non-finite or decreasing timestamps, a negative
    duration, ``clip_frames < 1`` or ``max_chunks < 0``.
    """
    _check(timestamps, duration, max_chunks, clip_frames)
    origin = timestamps[0]
    relative = [t - origin for t in timestamps]
    last = len(relative) - 1
    plans = []
    for second in range(max(1, math.floor(duration))):
        start = key_frame_at(relative, second)
        if start > last:
            break  # no frame at or after this second, nor after any later one
        plans.append(ChunkPlan(second, tuple(min(start + k, last) for k in range(clip_frames))))
    if 0 < max_chunks < len(plans):
        n = len(plans)
        plans = [plans[(2 * k + 1) * n // (2 * max_chunks)] for k in range(max_chunks)]
    return plans


def needed_frames(plans: Sequence[ChunkPlan]) -> list[int]:
    """Return the sorted indices of every frame some chunk uses (the only frames to convert)."""
    return sorted({i for plan in plans for i in plan.frames})


def _check(timestamps: Sequence[float], duration: float, max_chunks: int, clip_frames: int) -> None:
    if len(timestamps) == 0:
        raise ValueError("no frame timestamps: a video needs at least one frame")
    if not all(math.isfinite(t) for t in timestamps):
        raise ValueError("frame timestamps must be finite")
    if any(b < a for a, b in zip(timestamps, timestamps[1:])):
        raise ValueError("frame timestamps must be in presentation (non-decreasing) order")
    if not (math.isfinite(duration) and duration >= 0):
        raise ValueError(f"duration must be a finite number >= 0, got {duration!r}")
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
    if max_chunks < 0:
        raise ValueError(f"max_chunks must be >= 0 (0 = all), got {max_chunks}")
