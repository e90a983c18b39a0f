"""Tensor views: display rotation and antialiased resizes."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import VideoReformatter

from pipeline.video import resize_short_side
from pipeline.video.frames import CLIP_FLAGS, PLANAR_FROM, AVFrame, RGBFrame
from pipeline.video.views import display_frame, resize_frames


def test_resize_short_side_keeps_the_aspect_ratio():
    landscape = torch.zeros(2, 3, 1080, 1920, dtype=torch.uint8)
    portrait = torch.zeros(1, 3, 1920, 1080, dtype=torch.uint8)
    assert resize_short_side(landscape, 448).shape == (2, 3, 448, 796)
    assert resize_short_side(portrait, 720).shape == (1, 3, 1280, 720)
    assert resize_short_side(torch.zeros(1, 3, 7, 5), 10).shape == (1, 3, 14, 10)  # upscaling works too


def test_resize_short_side_scales_to_unit_range_as_float32():
    frames = torch.full((1, 3, 40, 60), 255, dtype=torch.uint8)
    out = resize_short_side(frames, 20)
    assert out.dtype == torch.float32 and torch.allclose(out, torch.ones_like(out))
    half = resize_short_side(torch.full((1, 3, 40, 60), 0.5), 20)
    assert torch.allclose(half, torch.full_like(half, 0.5))


def test_downscaling_is_antialiased():
    # a one-pixel checkerboard shrunk 8x must average to grey, not alias to black or white
    checker = torch.from_numpy((np.indices((256, 256)).sum(0) % 2 * 255).astype(np.uint8))
    frames = checker.expand(1, 3, 256, 256)
    grey = resize_short_side(frames, 32)
    assert (grey - 0.5).abs().max() < 0.02
    square = resize_frames(frames, 32, 32)
    assert (square.int() - 128).abs().max() <= 1
    clip_view = RGBFrame(np.ascontiguousarray(frames[0].permute(1, 2, 0).numpy()), VideoReformatter()).resized(32, 32)
    assert clip_view.shape == (3, 32, 32) and np.abs(clip_view.astype(int) - 128).max() <= 1


def _packed_view(frame: av.VideoFrame, size: int) -> np.ndarray:
    """The clip view as defined: swscale's packed RGB, channels first."""
    packed = frame.reformat(width=size, height=size, format="rgb24", interpolation=CLIP_FLAGS)
    return packed.to_ndarray().transpose(2, 0, 1)


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p", "rgb24"])
def test_clip_views_are_swscales_packed_rgb_whichever_output_makes_them(pix_fmt: str):
    # From PLANAR_FROM x the view's height up, views come from planar RGB, below from packed: the same numbers
    # either way. Noise, so that any difference in rounding shows.
    rng, size = np.random.default_rng(3), 24
    for height in [*range(size, int(1.6 * size)), *range(PLANAR_FROM * size, 4 * size + 1, 3)]:
        rgb = rng.integers(0, 256, (height, height * 16 // 9 + 1, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
        view = AVFrame(frame, VideoReformatter()).resized(size, size)
        assert view.shape == (3, size, size) and view.flags.c_contiguous
        assert np.array_equal(view, _packed_view(frame, size)), (pix_fmt, height)
    if pix_fmt == "rgb24":  # decord's frames
        assert np.array_equal(RGBFrame(rgb, VideoReformatter()).resized(size, size), _packed_view(frame, size))


def test_levels_of_uint8_frames_are_8_bit_images():
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 3, 90, 160), dtype=np.uint8))
    levels = resize_short_side(frames, 48) * 255
    assert (levels - levels.round()).abs().max() < 1e-4


def test_a_level_of_the_frames_own_size_is_the_frame_itself():
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (1, 3, 72, 128), dtype=np.uint8))
    assert resize_frames(frames, 72, 128) is frames
    assert torch.equal(resize_short_side(frames, 72), frames.float() / 255)


def test_resize_short_side_rejects_bad_input():
    with pytest.raises(ValueError, match="N, 3, H, W"):
        resize_short_side(torch.zeros(3, 10, 10), 5)
    with pytest.raises(ValueError, match="short_side"):
        resize_short_side(torch.zeros(1, 3, 10, 10), 0)


def test_uint8_resize_matches_a_float_resize():
    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, (2, 3, 90, 160), dtype=np.uint8))
    fast = resize_frames(frames, 24, 24)
    exact = torch.nn.functional.interpolate(frames.float(), size=(24, 24), mode="bilinear", antialias=True)
    assert fast.dtype == torch.uint8 and fast.shape == (2, 3, 24, 24)
    assert (fast.float() - exact).abs().max() <= 1


@pytest.mark.parametrize("rotation, corner", [(0, (0, 0)), (90, (0, -1)), (180, (-1, -1)), (270, (-1, 0))])
def test_display_frame_rotates_clockwise(rotation, corner):
    stored = np.zeros((4, 6, 3), np.uint8)
    stored[0, 0] = 255  # mark the top-left pixel; clockwise 90 moves it to the top-right
    shown = display_frame(stored, rotation, torch.device("cpu"))
    assert shown.shape == ((3, 6, 4) if rotation % 180 else (3, 4, 6))
    assert shown[0, corner[0], corner[1]] == 255 and shown[0].sum() == 255


@pytest.mark.cuda
def test_views_on_a_gpu_match_the_cpu():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    on_gpu = display_frame(rgb, 90, gpu)
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), display_frame(rgb, 90, cpu))
    square = resize_frames(on_gpu[None], 24, 24)
    assert square.device.type == "cuda" and square.dtype == torch.uint8
    assert (square.cpu().int() - resize_frames(display_frame(rgb, 90, cpu)[None], 24, 24).int()).abs().max() <= 1
    short = resize_short_side(on_gpu[None], 48)
    assert short.device.type == "cuda"
    on_cpu = resize_short_side(display_frame(rgb, 90, cpu)[None], 48)
    assert (short.cpu() - on_cpu).abs().max() <= 1.001 / 255  # both rounded to 8 bits: one grey level apart at most
