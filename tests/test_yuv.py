"""The device's clip view (torch, from YUV planes) against the CPU's (swscale): one definition, two implementations."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import VideoReformatter

from pipeline.video import open_chunks
from pipeline.video.frames import AVFrame
from pipeline.video.yuv import (YUVClip, _area_taps, area_resize, clip_from_yuv, converts_on_device, new_planes,
                                stack_planes)

from videos import make_video

SIZE = 32


def chunks(path: Path, planes: bool) -> list:
    with open_chunks(path, clip_size=SIZE, clip_frames=8, planes=new_planes if planes else None) as stream:
        return list(stream)


def differences(device: torch.Tensor, cpu: torch.Tensor) -> tuple[float, int]:
    diff = (device.int() - cpu.int()).abs()
    return diff.float().mean().item(), diff.max().item()


@pytest.mark.parametrize("width, height, rotation", [(96, 80, 0), (102, 70, 0), (96, 72, 90)],
                         ids=["even", "odd-chroma-sizes", "rotated"])
def test_device_clips_match_swscale_on_h264_frames(tmp_path: Path, width: int, height: int, rotation: int):
    path = make_video(tmp_path / "v.mp4", width=width, height=height, frames=20, fps=10, rotation=rotation)
    on_cpu, as_planes = chunks(path, planes=False), chunks(path, planes=True)
    assert len(on_cpu) == len(as_planes) == 2
    for rgb, planar in zip(on_cpu, as_planes):
        assert isinstance(planar.clip, YUVClip) and planar.clip.rotation == rotation
        assert torch.equal(rgb.key_frame, planar.key_frame)
        converted = clip_from_yuv(planar.clip, SIZE)
        assert converted.shape == rgb.clip.shape
        mean, worst = differences(converted, rgb.clip)
        assert mean < 0.05 and worst <= 1, (mean, worst)  # rounding only: H.264 chroma is left-sited, as assumed


@pytest.mark.parametrize("pix_fmt, colour", [("yuv420p", (1, 1)), ("yuv420p", (9, 1)), ("yuvj420p", (5, 2)),
                                              ("yuv420p", (6, 2))],
                         ids=["bt709", "bt2020", "jpeg", "tagged-full-range"])
def test_colour_matrix_and_range_follow_the_frame(tmp_path: Path, pix_fmt: str, colour: tuple[int, int]):
    path = make_video(tmp_path / "v.mp4", width=96, height=80, frames=10, fps=10, pix_fmt=pix_fmt, colour=colour)
    with av.open(str(path)) as container:
        frame = AVFrame(next(container.decode(video=0)), VideoReformatter())
    assert frame.colour == (colour[0], True if pix_fmt == "yuvj420p" else colour[1] == 2)
    y, u, v = (torch.from_numpy(p.copy())[None] for p in frame.planes())
    converted = clip_from_yuv(YUVClip(y, u, v, *frame.colour), SIZE)[0]
    reference = torch.from_numpy(frame.resized(SIZE, SIZE))
    mean, worst = differences(converted, reference)
    assert mean < 0.05 and worst <= 1, (mean, worst)
    wrong_range = clip_from_yuv(YUVClip(y, u, v, colour[0], not frame.colour[1]), SIZE)[0]
    assert differences(wrong_range, reference)[0] > 2  # the range matters, so the test can tell


def test_area_weights_are_the_covered_fractions():
    index, weights = _area_taps(8, 2, 0.0)  # 4:1: plain means of four pixels
    dense = np.zeros((2, 8))
    np.add.at(dense, (np.arange(2)[:, None].repeat(index.shape[1], 1), index.numpy()), weights.numpy())
    assert np.allclose(dense, [[0.25] * 4 + [0] * 4, [0] * 4 + [0.25] * 4])
    index, weights = _area_taps(10, 4, 0.25)  # 2.5:1, shifted: partial pixels at both ends, the edge repeated
    dense = np.zeros((4, 10))
    np.add.at(dense, (np.arange(4)[:, None].repeat(index.shape[1], 1), index.numpy()), weights.numpy())
    assert np.allclose(dense.sum(axis=1), 1)
    assert np.allclose(dense[0, :4] * 2.5, [0.75, 1, 0.75, 0])  # [0.25, 2.75)
    assert np.allclose(dense[3, 7:] * 2.5, [0.25, 1, 1.25])  # [7.75, 10.25): the 0.25 past the edge counts the last pixel


def test_area_resize_keeps_flat_planes_and_refuses_to_enlarge():
    flat = torch.full((2, 50, 70), 77, dtype=torch.uint8)
    assert torch.allclose(area_resize(flat, 20, chroma=True), torch.tensor(77.0))
    with pytest.raises(Exception, match="only shrinks"):
        area_resize(flat, 60)


def test_small_frames_and_other_formats_keep_the_swscale_path(tmp_path: Path):
    assert converts_on_device("h264", "yuv420p", 64, 64, 32) and not converts_on_device("h264", "yuv420p", 62, 64, 32)
    assert not converts_on_device("h264", "yuv420p10le", 640, 480, 32)
    assert not converts_on_device("h264", "yuv444p", 640, 480, 32) and not converts_on_device("vp9", "yuv420p", 640, 480, 32)
    small = make_video(tmp_path / "small.mp4", width=48, height=40, frames=10, fps=10)
    deep = make_video(tmp_path / "deep.mp4", width=96, height=80, frames=10, fps=10, pix_fmt="yuv420p10le")
    for path in (small, deep):
        for rgb, planar in zip(chunks(path, planes=False), chunks(path, planes=True)):
            assert isinstance(planar.clip, torch.Tensor) and torch.equal(rgb.clip, planar.clip)


def test_stack_planes_copies_each_frame_and_the_key_frame_once_into_the_buffers():
    frames = [tuple(np.full(shape, k, np.uint8) for shape in ((4, 6), (2, 3), (2, 3))) for k in range(3)]
    key_frame = torch.arange(72, dtype=torch.uint8).reshape(6, 4, 3).permute(2, 1, 0)  # a rotated view
    given = []

    def buffers(n: int, luma: tuple[int, int], chroma: tuple[int, int],
                key: tuple[int, int, int]) -> tuple[torch.Tensor, ...]:
        given.append((n, luma, chroma, key))
        return new_planes(n, luma, chroma, key)

    clip, key = stack_planes(frames, (1, False), 180, key_frame, buffers)
    assert given == [(3, (4, 6), (2, 3), (3, 4, 6))]
    assert clip.rotation == 180 and clip.colorspace == 1 and not clip.full_range
    assert [int(clip.y[k, 0, 0]) for k in range(3)] == [0, 1, 2] and clip.v.shape == (3, 2, 3)
    assert key.permute(1, 2, 0).is_contiguous() and torch.equal(key, key_frame)  # channels last, as decoded


@pytest.mark.cuda
def test_cuda_converts_uploaded_planes_as_the_cpu_does(tmp_path: Path):
    from pipeline.extract.device_step import to_device  # the upload a decoder process's planes take on a GPU node

    path = make_video(tmp_path / "v.mp4", width=640, height=360, frames=20, fps=10)
    for chunk, reference in zip(chunks(path, planes=True), chunks(path, planes=False)):
        planes, key_frame = to_device(chunk.clip, chunk.key_frame, torch.device("cuda"))
        assert key_frame.device.type == "cuda" and torch.equal(key_frame.cpu(), chunk.key_frame)
        on_gpu = clip_from_yuv(planes, SIZE)
        assert on_gpu.device.type == "cuda"
        mean, worst = differences(on_gpu.cpu(), reference.clip)
        assert mean < 0.05 and worst <= 1, (mean, worst)
