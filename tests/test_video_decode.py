"""Decoding real (generated) files into chunks: backends agree, the right frames are picked, views are right."""

from __future__ import annotations

from pathlib import Path

import av
from av.video.reformatter import Interpolation
import numpy as np
import pytest
import torch

from pipeline.video import open_chunks
from pipeline.video import decoders
from pipeline.video.decoders import DecordDecoder, PyAVDecoder
from videos import frame_content, make_video

CLIP = dict(clip_frames=8, clip_size=32)  # small clips keep the tests fast


def reference_frames(path: Path) -> list[av.VideoFrame]:
    """Every frame, decoded the plain way (whole video into a list): what the chunks must match."""
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def expected_clip(frames: list[av.VideoFrame], indices: tuple[int, ...], size: int, decoder: str) -> torch.Tensor:
    """The clip by its definition: swscale (area, full chroma, exact rounding) to the clip size, from YUV (PyAV) or
    from decord's RGB."""
    def scaled(frame: av.VideoFrame) -> np.ndarray:
        if decoder == "decord":
            frame = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
        flags = Interpolation.AREA | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
        return frame.reformat(width=size, height=size, format="rgb24", interpolation=flags).to_ndarray()

    return torch.from_numpy(np.stack([scaled(frames[i]) for i in indices])).permute(0, 3, 1, 2)


def chunks_of(path: Path, **kwargs):
    with open_chunks(path, **{**CLIP, **kwargs}) as stream:
        return stream.info, stream.num_chunks, list(stream)


def assert_matches_reference(path: Path, chunks, keys: list[int], decoder: str):
    frames = reference_frames(path)
    assert len(chunks) == len(keys)
    for chunk, key in zip(chunks, keys):
        indices = tuple(min(key + k, len(frames) - 1) for k in range(chunk.clip.shape[0]))
        assert torch.equal(chunk.key_frame, torch.from_numpy(frames[key].to_ndarray(format="rgb24")).permute(2, 0, 1))
        assert torch.equal(chunk.clip, expected_clip(frames, indices, CLIP["clip_size"], decoder))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("h264.mp4", dict(codec="libx264")),
        ("hevc.mp4", dict(codec="libx265")),
        ("vp9.webm", dict(codec="libvpx-vp9")),
    ],
)
def test_backends_pick_the_same_frames_and_pixels(tmp_path, name, kwargs):
    path = make_video(tmp_path / name, frames=60, fps=24, **kwargs)
    info_d, n_d, by_decord = chunks_of(path, decoder="decord")
    info_p, n_p, by_pyav = chunks_of(path, decoder="pyav")
    assert (info_d.decoder, info_p.decoder) == ("decord", "pyav")
    assert {**vars(info_d), "decoder": None} == {**vars(info_p), "decoder": None}
    assert n_d == n_p == len(by_decord) == len(by_pyav) == 2
    for a, b in zip(by_decord, by_pyav):
        assert (a.index, a.second) == (b.index, b.second)
        assert (a.key_frame.int() - b.key_frame.int()).abs().max() <= 2  # same FFmpeg conversion
    assert_matches_reference(path, by_pyav, keys=[0, 24], decoder="pyav")
    assert_matches_reference(path, by_decord, keys=[0, 24], decoder="decord")


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_chunks_hold_the_planned_frames(tmp_path, decoder):
    path = make_video(tmp_path / "v.mp4", frames=75, fps=25)
    info, n, chunks = chunks_of(path, decoder=decoder)
    assert (info.frames, info.fps, info.duration, info.width, info.height) == (75, 25.0, 3.0, 64, 48)
    assert [c.index for c in chunks] == [0, 1, 2] and [c.second for c in chunks] == [0, 1, 2]
    assert chunks[0].key_frame.dtype == torch.uint8 and chunks[0].key_frame.shape == (3, 48, 64)
    assert chunks[0].clip.dtype == torch.uint8 and chunks[0].clip.shape == (8, 3, 32, 32)
    assert_matches_reference(path, chunks, keys=[0, 25, 50], decoder=decoder)


def test_variable_frame_rate_follows_timestamps(tmp_path):
    pts = [0.0, 0.1, 0.15, 0.5, 0.52, 1.0, 1.3, 2.05, 2.6, 3.2, 4.0]
    path = make_video(tmp_path / "vfr.mp4", pts=pts)
    for decoder in ("decord", "pyav"):
        info, _, chunks = chunks_of(path, decoder=decoder, clip_frames=4)
        assert info.frames == 11 and 4.0 < info.duration < 5.0
        assert [c.second for c in chunks] == [0, 1, 2, 3]
        assert_matches_reference(path, chunks, keys=[0, 5, 7, 9], decoder=info.decoder)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_is_applied_for_display(tmp_path, rotation):
    path = make_video(tmp_path / "phone.mp4", width=64, height=48, frames=6, rotation=rotation)
    info, _, chunks = chunks_of(path, decoder="decord")
    assert info.rotation == rotation and info.decoder == "pyav"
    assert (info.width, info.height) == ((48, 64) if rotation % 180 else (64, 48))
    shown = chunks[0].key_frame.permute(1, 2, 0).int().numpy()
    errors = {}
    for clockwise in (0, 90, 180, 270):
        candidate = np.rot90(frame_content(0, 64, 48), k=-clockwise // 90).astype(int)
        if candidate.shape == shown.shape:
            errors[clockwise] = np.abs(candidate - shown).mean()
    assert min(errors, key=errors.get) == rotation
    assert errors[rotation] < 12  # codec tolerance


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_10_bit_becomes_8_bit_rgb(tmp_path, codec):
    path = make_video(tmp_path / "deep.mp4", codec=codec, pix_fmt="yuv420p10le", frames=6)
    info, _, chunks = chunks_of(path, decoder="decord")
    assert info.pix_fmt == "yuv420p10le" and info.decoder == "pyav"
    shown = chunks[0].key_frame.permute(1, 2, 0).int().numpy()
    assert np.abs(shown - frame_content(0, 64, 48).astype(int)).mean() < 12


@pytest.mark.parametrize(
    "width, height, kwargs",
    [
        (16, 16, dict()),
        (33, 17, dict(pix_fmt="yuv444p")),  # odd sizes need a format without chroma subsampling
        (3840, 2160, dict(frames=1, options={"preset": "ultrafast"})),
    ],
)
@pytest.mark.slow
def test_frame_sizes(tmp_path, width, height, kwargs):
    path = make_video(tmp_path / "size.mkv", width=width, height=height, **{"frames": 8, **kwargs})
    info, n, chunks = chunks_of(path, decoder="decord")
    assert (info.width, info.height) == (width, height) and n == 1
    assert chunks[0].key_frame.shape == (3, height, width)
    assert chunks[0].clip.shape == (8, 3, 32, 32)
    assert_matches_reference(path, chunks, keys=[0], decoder=info.decoder)


def test_shorter_than_a_second_and_a_single_frame(tmp_path):
    short = make_video(tmp_path / "short.mp4", frames=5, fps=24)
    info, n, chunks = chunks_of(short)
    assert n == 1 and info.frames == 5 and info.duration == pytest.approx(5 / 24)
    assert_matches_reference(short, chunks, keys=[0], decoder=info.decoder)
    single = make_video(tmp_path / "single.mp4", frames=1)
    info, n, chunks = chunks_of(single, decoder="pyav")
    assert n == 1 and info.frames == 1
    assert all(torch.equal(frame, chunks[0].clip[0]) for frame in chunks[0].clip)


def test_sparse_plan_seeks_and_matches_a_sequential_decode(tmp_path, monkeypatch):
    path = make_video(tmp_path / "long.mp4", frames=200, fps=10, gop=10)  # 20 s, a key frame every second
    seeks = []
    original = PyAVDecoder._seek
    monkeypatch.setattr(PyAVDecoder, "_seek", lambda self, key: seeks.append(key) or original(self, key))
    info, n, chunks = chunks_of(path, decoder="pyav", max_chunks=3)
    assert n == 3 and [c.second for c in chunks] == [3, 10, 16]
    with av.open(str(path)) as container:
        packets = sorted((p.pts, p.is_keyframe) for p in container.demux(video=0) if p.size)
    keyframes = [i for i, (_, key) in enumerate(packets) if key]
    assert seeks == [max(k for k in keyframes if k <= target) for target in (30, 100, 160)]
    assert 0 not in seeks
    assert_matches_reference(path, chunks, keys=[30, 100, 160], decoder="pyav")
    _, _, by_decord = chunks_of(path, decoder="decord", max_chunks=3)
    assert_matches_reference(path, by_decord, keys=[30, 100, 160], decoder="decord")


def test_decord_reopens_its_reader_without_changing_the_frames(tmp_path, monkeypatch):
    monkeypatch.setattr(decoders, "_DECORD_REOPEN_BYTES", 1)  # renew the reader at every key frame
    opened = []
    original = DecordDecoder._open
    monkeypatch.setattr(DecordDecoder, "_open", lambda self: opened.append(1) or original(self))
    path = make_video(tmp_path / "v.mp4", frames=120, fps=24, gop=12)
    info, _, chunks = chunks_of(path, decoder="decord")
    assert info.decoder == "decord" and len(opened) > 3
    assert_matches_reference(path, chunks, keys=[0, 24, 48, 72, 96], decoder="decord")


def test_streaming_hands_on_chunks_before_the_video_is_decoded(tmp_path, monkeypatch):
    path = make_video(tmp_path / "v.mp4", frames=240, fps=24)  # 10 chunks
    delivered = []
    original = PyAVDecoder.frames

    def spy(self, wanted):
        for item in original(self, wanted):
            delivered.append(item[0])
            yield item

    monkeypatch.setattr(PyAVDecoder, "frames", spy)
    with open_chunks(path, decoder="pyav", **CLIP) as stream:
        first = next(iter(stream))
        assert first.second == 0
        assert len(delivered) < 120  # the first chunks (a few are made ahead), not all 240 frames


def test_a_stream_is_iterated_once_and_closes_early(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=48)
    with open_chunks(path, **CLIP) as stream:
        assert next(iter(stream)).second == 0  # stop after one chunk: closing must not hang or fail
        with pytest.raises(RuntimeError, match="iterated once"):
            list(stream)
    with open_chunks(path, **CLIP):
        pass  # never iterated
