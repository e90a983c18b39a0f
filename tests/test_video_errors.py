"""Files that are not good videos: each decodes what it can or raises a typed error naming the file; nothing hangs."""

from __future__ import annotations

import os
import re
import threading
import time

import av
import pytest

from pipeline.errors import (
    CorruptVideoError,
    DecodeTimeoutError,
    NoVideoStreamError,
    UnsupportedVideoError,
    VideoError,
    VideoNotFoundError,
)
from pipeline.video import open_chunks
from pipeline.video.decoders import PyAVDecoder
from pipeline.video.probe import MAX_FRAME_GAP_S, probe
from videos import frame_content, make_audio_only, make_video

CLIP = dict(clip_frames=4, clip_size=16)


def decode_all(path, **kwargs):
    with open_chunks(path, **{**CLIP, **kwargs}) as stream:
        return stream.info, list(stream)


def raises_naming(error: type[VideoError], path, match: str, **kwargs):
    """Expect ``error`` whose message names ``path`` and says ``match``."""
    with pytest.raises(error, match=match) as caught:
        decode_all(path, **kwargs)
    assert str(path) in str(caught.value) and caught.value.path == str(path)


def test_missing_file_and_directory(tmp_path):
    raises_naming(VideoNotFoundError, tmp_path / "nope.mp4", "not found")
    raises_naming(VideoNotFoundError, tmp_path, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    raises_naming(NoVideoStreamError, path, "empty")


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("filename,mos\nclip.mp4,3.2\n" * 50)
    raises_naming(NoVideoStreamError, path, "not a video")


def test_audio_only(tmp_path):
    raises_naming(NoVideoStreamError, make_audio_only(tmp_path / "tone.m4a"), "no video stream")


def test_unsupported_codec(tmp_path):
    # a Matroska file whose codec id no FFmpeg knows: same file, codec name patched
    data = make_video(tmp_path / "v.mkv", frames=5).read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    path = tmp_path / "alien.mkv"
    path.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/ZZZ"))
    raises_naming(UnsupportedVideoError, path, "codec")


def test_mp4_cut_before_its_index_is_corrupt(tmp_path):
    data = make_video(tmp_path / "v.mp4", frames=30).read_bytes()  # the index (moov) is written last
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    raises_naming(CorruptVideoError, path, "truncated")


def test_garbage_after_a_video_header_is_corrupt(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(make_video(tmp_path / "v.mp4", frames=3).read_bytes()[:32] + os.urandom(4000))
    raises_naming(CorruptVideoError, path, "damaged")


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_truncated_stream_decodes_what_is_intact(tmp_path, suffix):
    codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    whole = make_video(tmp_path / f"whole{suffix}", frames=72, fps=24, codec=codec)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    for decoder in ("decord", "pyav"):
        info, chunks = decode_all(path, decoder=decoder)
        assert 10 < info.frames < 72
        assert len(chunks) == max(1, int(info.duration)) and chunks[0].second == 0
    _, complete = decode_all(whole)
    assert (chunks[0].key_frame == complete[0].key_frame).all()


def test_mp4_truncated_after_a_front_index_keeps_the_intact_frames(tmp_path):
    whole = tmp_path / "fast.mp4"
    with av.open(str(whole), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(48):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame_content(k, 64, 48), format="rgb24")))
        container.mux(stream.encode())
    path = tmp_path / "cut.mp4"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    info, chunks = decode_all(path, decoder="pyav")
    assert 0 < info.frames < 48 and len(chunks) == 1


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_a_frame_shown_for_hours_is_corrupt(tmp_path, decoder):
    # 8 fps, then the timestamps jump by 10,241.5 s after frame 12: believed, that would be 10,254 chunks
    pts = [k / 8 for k in range(13)] + [10243 + k / 8 for k in range(11)]
    path = make_video(tmp_path / "jump.mp4", pts=pts)
    raises_naming(CorruptVideoError, path, re.escape(
        "frame 12 of 24 is shown for 10,241.5 s (timestamps jump from 1.5 s to 10,243 s; more than 60 s is not "
        "believable): its timestamps are corrupt"), decoder=decoder)


def test_a_frame_shown_for_seconds_is_kept(tmp_path):
    path = make_video(tmp_path / "slideshow.mkv", pts=[0, 0.5, 1, 6, 6.5, 7])  # the frame at 1 s is held for 5 s
    info, chunks = decode_all(path)
    assert info.frames == 6 and 7 < info.duration < 8
    assert [c.second for c in chunks] == list(range(7))
    assert all((c.key_frame == chunks[2].key_frame).all() for c in chunks[2:6])  # seconds 2-6 start at 6 s
    assert not (chunks[1].key_frame == chunks[2].key_frame).all()


def test_the_gap_limit_is_inclusive(tmp_path):
    _, index, _ = probe(make_video(tmp_path / "at.mkv", pts=[0, MAX_FRAME_GAP_S]))
    assert index.seconds() == [0, MAX_FRAME_GAP_S]
    with pytest.raises(CorruptVideoError, match="frame 0 of 2 is shown for 60.5 s"):
        probe(make_video(tmp_path / "over.mkv", pts=[0, MAX_FRAME_GAP_S + 0.5]))


def test_a_stalled_open_times_out(tmp_path):
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)  # opening it blocks until someone writes: a stand-in for a hung network mount
    start = time.monotonic()
    try:
        with pytest.raises(DecodeTimeoutError, match="stalled") as caught:
            open_chunks(fifo, timeout_s=0.5)
        assert str(fifo) in str(caught.value)
        assert time.monotonic() - start < 5
    finally:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release the abandoned worker


def test_a_stalled_decode_times_out(tmp_path, monkeypatch):
    path = make_video(tmp_path / "v.mp4", frames=48)
    release = threading.Event()
    original = PyAVDecoder.frames

    def stalls_after_one_frame(self, wanted):
        items = original(self, wanted)
        yield next(items)
        release.wait(30)

    monkeypatch.setattr(PyAVDecoder, "frames", stalls_after_one_frame)
    try:
        with open_chunks(path, decoder="pyav", timeout_s=0.5, **CLIP) as stream:
            with pytest.raises(DecodeTimeoutError, match="no progress for 0.5 s"):
                list(stream)
    finally:
        release.set()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(decoder="ffmpeg"), "decoder"),
        (dict(clip_frames=0), "clip_frames"),
        (dict(clip_size=0), "clip_size"),
        (dict(max_chunks=-1), "max_chunks"),
        (dict(timeout_s=0), "timeout_s"),
    ],
)
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        open_chunks(tmp_path / "any.mp4", **kwargs)
