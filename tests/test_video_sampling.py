"""The sampling plan: a pure function of frame timestamps (no video needed)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.video.sampling import needed_frames, plan_chunks


def cfr(frames: int, fps: float) -> tuple[list[float], float]:
    return [k / fps for k in range(frames)], frames / fps


def test_constant_rate_chunks_start_every_fps_frames():
    pts, duration = cfr(75, 25)  # 3 s
    plans = plan_chunks(pts, duration, clip_frames=32)
    assert [p.second for p in plans] == [0, 1, 2]
    assert [p.key_frame for p in plans] == [0, 25, 50]
    assert plans[0].frames == tuple(range(32))
    assert plans[1].frames == tuple(range(25, 57))


def test_clip_repeats_the_last_frame_past_the_end():
    pts, duration = cfr(75, 25)
    last = plan_chunks(pts, duration, clip_frames=32)[-1]
    assert last.frames == tuple(range(50, 75)) + (74,) * 7
    assert last.last == 74


def test_partial_last_second_is_not_a_chunk():
    pts, duration = cfr(59, 24)  # 2.46 s -> seconds 0 and 1
    assert [p.second for p in plan_chunks(pts, duration)] == [0, 1]


def test_frame_exactly_on_the_second_starts_it():
    # 29.97 fps: frame 30 is at 1.001 s, frame 29 at 0.968 s
    pts = [k * 1001 / 30000 for k in range(90)]
    plans = plan_chunks(pts, 90 * 1001 / 30000)
    assert [p.key_frame for p in plans] == [0, 30, 60]
    # a frame exactly at 1.0 belongs to second 1
    assert plan_chunks([0.0, 0.5, 1.0, 1.5], 2.0)[1].key_frame == 2


def test_variable_frame_rate_uses_timestamps_not_indices():
    pts = [0.0, 0.1, 0.15, 0.5, 0.52, 1.0, 1.3, 2.05, 2.6, 3.2]
    plans = plan_chunks(pts, 3.4, clip_frames=4)
    assert [(p.second, p.key_frame) for p in plans] == [(0, 0), (1, 5), (2, 7)]
    assert plans[1].frames == (5, 6, 7, 8)
    assert plans[2].frames == (7, 8, 9, 9)


def test_timestamps_count_from_the_first_frame():
    shifted = [10.0 + k / 10 for k in range(25)]
    assert [p.key_frame for p in plan_chunks(shifted, 2.5)] == [0, 10]


def test_shorter_than_a_second_is_one_chunk():
    pts, duration = cfr(10, 24)
    plans = plan_chunks(pts, duration, clip_frames=32)
    assert len(plans) == 1
    assert plans[0].frames == tuple(range(10)) + (9,) * 22


def test_single_frame_repeats_it():
    plans = plan_chunks([0.0], 0.0, clip_frames=8)
    assert len(plans) == 1
    assert plans[0].second == 0 and plans[0].frames == (0,) * 8


def test_seconds_without_a_frame_have_no_chunk():
    # a slideshow: three frames each shown for 2 s; second 5 has no frame at or after it
    plans = plan_chunks([0.0, 2.0, 4.0], 6.0, clip_frames=2)
    assert [(p.second, p.key_frame) for p in plans] == [(0, 0), (1, 1), (2, 1), (3, 2), (4, 2)]


def test_max_chunks_spreads_evenly_and_keeps_order():
    pts, duration = cfr(100 * 10, 10)  # 100 s at 10 fps
    plans = plan_chunks(pts, duration, max_chunks=4, clip_frames=2)
    assert [p.second for p in plans] == [12, 37, 62, 87]
    assert [p.key_frame for p in plans] == [120, 370, 620, 870]


def test_max_chunks_zero_or_larger_than_the_video_keeps_all():
    pts, duration = cfr(50, 10)
    assert len(plan_chunks(pts, duration, max_chunks=0)) == 5
    assert len(plan_chunks(pts, duration, max_chunks=9)) == 5
    assert [p.second for p in plan_chunks(pts, duration, max_chunks=5)] == [0, 1, 2, 3, 4]


def test_needed_frames_is_the_union_of_clips():
    pts, duration = cfr(60 * 3, 60)  # 60 fps: frames 32..59 of each second are not needed
    plans = plan_chunks(pts, duration, clip_frames=32)
    assert needed_frames(plans) == [*range(0, 32), *range(60, 92), *range(120, 152)]


@pytest.mark.parametrize(
    "pts, duration, kwargs, message",
    [
        ([], 1.0, {}, "at least one frame"),
        ([0.0, 0.5, 0.2], 1.0, {}, "non-decreasing"),
        ([0.0, math.nan], 1.0, {}, "finite"),
        ([0.0], -1.0, {}, "duration"),
        ([0.0], 1.0, {"clip_frames": 0}, "clip_frames"),
        ([0.0], 1.0, {"max_chunks": -1}, "max_chunks"),
    ],
)
def test_invalid_input_is_refused(pts, duration, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_chunks(pts, duration, **kwargs)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.integers(min_value=0, max_value=2000), min_size=0, max_size=200),
    tail=st.integers(min_value=0, max_value=3000),
    max_chunks=st.integers(min_value=0, max_value=8),
    clip_frames=st.integers(min_value=1, max_value=40),
)
def test_plan_follows_the_definition(steps, tail, max_chunks, clip_frames):
    """Against a literal reading of docs/design.md, for arbitrary (VFR) timestamps in milliseconds."""
    ms = [0]
    for step in steps:
        ms.append(ms[-1] + step)
    pts = [t / 1000 for t in ms]
    duration = (ms[-1] + tail) / 1000
    plans = plan_chunks(pts, duration, max_chunks=max_chunks, clip_frames=clip_frames)

    everything = plan_chunks(pts, duration, clip_frames=clip_frames)
    seconds = [i for i in range(max(1, math.floor(duration))) if any(t >= i for t in pts)]
    assert [p.second for p in everything] == seconds
    for plan in everything:
        key = next(k for k, t in enumerate(pts) if t >= plan.second)
        assert plan.frames == tuple(min(key + k, len(pts) - 1) for k in range(clip_frames))

    expected = len(everything) if max_chunks == 0 else min(max_chunks, len(everything))
    assert len(plans) == expected
    assert [p.second for p in plans] == sorted({p.second for p in plans})  # distinct, in order
    assert set(plans) <= set(everything)
    assert plan_chunks(pts, duration, max_chunks=max_chunks, clip_frames=clip_frames) == plans  # deterministic
