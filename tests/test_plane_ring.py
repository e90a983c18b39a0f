"""Clips converted on the device: the shared-memory ring of YUV planes, and extraction through it.

A recipe that converts clips on the device runs on the CPU too (the device is then the CPU), so these tests
cover the decoder processes' hand-over of planes, their conversion in the main process and NSS computed
there, against the CPU recipe where swscale converts in the decoder.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import pipeline.extract.batches as batches
import pipeline.extract.decode_pool as decode_pool
import pipeline.extract.plane_ring as plane_ring
from pipeline.backbones.device import CPU_RECIPE, Recipe
from pipeline.config import load_config
from pipeline.errors import DecodeTimeoutError
from pipeline.extract.decoding import DecodedChunk
from pipeline.backbones import Backbones
from pipeline.extract.plan import VideoJob
from pipeline.extract.run import extract_videos
from pipeline.extract.plane_ring import SLOTS, PlaneRing, page_lock, planes_at
from pipeline.store import FeatureStore
from pipeline.video import open_chunks
from pipeline.video.yuv import YUVClip, clip_from_yuv, new_planes

from videos import TINY_EXTRACT_YAML, make_video

pytestmark = pytest.mark.usefixtures("one_thread")

#: Clips and NSS on the device, everything else as on the CPU: isolates the conversion from bf16 rounding.
DEVICE_CLIPS = Recipe(precision="float32", batched=True, channels_last=False, clips_on_device=True)
KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast", "nss")


def ring(timeout_s: float = 5.0) -> tuple[PlaneRing, threading.Semaphore]:
    free = threading.Semaphore(SLOTS)
    return PlaneRing(free, timeout_s, lambda: "v.mp4"), free


def locate(plane_ring: PlaneRing, views: tuple[torch.Tensor, ...]):
    """Where a slot's clip planes and key frame lie, as the decoder process's main thread sends it."""
    return plane_ring.locate(YUVClip(*views[:3], colorspace=2, full_range=False), views[3])


def test_slots_come_back_when_released_and_the_ring_grows_for_larger_clips():
    plane_ring, free = ring()
    first = plane_ring(2, (4, 6), (2, 3), (3, 6, 4))
    first[0].fill_(7)
    first[3].fill_(9)
    y, u, v, key = planes_at(plane_ring.buffer, locate(plane_ring, first))  # the main process's view of the memory
    assert y.eq(7).all() and key.eq(9).all() and key.shape == (3, 6, 4) and v.shape == (2, 2, 3)
    second = plane_ring(2, (4, 6), (2, 3), (3, 6, 4))
    assert second[0].data_ptr() != first[0].data_ptr()
    assert second[0].data_ptr() >= first[3].data_ptr() + first[3].numel()  # slots hold their key frames apart
    locate(plane_ring, second)
    free.release(), free.release()  # the main process converted both
    small_buffer = plane_ring.buffer
    larger = plane_ring(2, (8, 12), (4, 6), (3, 12, 8))  # waits for every slot, then a new buffer
    assert plane_ring.buffer is not small_buffer and larger[0].shape == (2, 8, 12)


def test_slots_of_clips_never_sent_are_reclaimed_between_videos():
    plane_ring, _ = ring(timeout_s=0.2)
    plane_ring(2, (4, 6), (2, 3), (3, 4, 6))
    plane_ring(2, (4, 6), (2, 3), (3, 4, 6))  # both taken, neither sent: the video failed
    with pytest.raises(DecodeTimeoutError, match="v.mp4: the main process took no clip"):
        plane_ring(2, (4, 6), (2, 3), (3, 4, 6))
    plane_ring.reclaim()
    plane_ring(2, (4, 6), (2, 3), (3, 4, 6))  # free again


def test_without_room_in_shared_memory_clips_are_converted_in_the_decoder(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture):
    full, _ = ring()
    full._room = lambda: 10_000  # bytes free in /dev/shm
    assert full(2, (40, 60), (20, 30), (3, 40, 60)) is None and full.buffer is None
    assert full(2, (40, 60), (20, 30), (3, 40, 60)) is None  # not tried again, nor warned again
    assert full(1, (20, 30), (10, 15), (3, 20, 30)) is not None  # a smaller video still fits
    assert len([r for r in caplog.records if "--shm-size" in r.getMessage()]) == 1
    path = make_video(tmp_path / "v.mp4", width=96, height=80, frames=20, fps=10)
    with open_chunks(path, clip_size=32, clip_frames=8) as on_cpu, \
            open_chunks(path, clip_size=32, clip_frames=8, planes=lambda *shapes: None) as no_room:
        assert on_cpu.num_chunks == no_room.num_chunks == 2
        for rgb, fallback in zip(on_cpu, no_room):
            assert isinstance(fallback.clip, torch.Tensor) and torch.equal(rgb.clip, fallback.clip)


class FakeCudart:
    """The two CUDA runtime calls page_lock makes, recorded; ``error`` is what registering returns."""

    def __init__(self, calls: list, error: int = 0):
        self.calls, self.error = calls, error

    def cudaHostRegister(self, address: int, size: int, flags: int) -> int:  # noqa: N802 - CUDA's name
        self.calls.append(("register", address, size, flags))
        return self.error

    def cudaHostUnregister(self, address: int) -> int:  # noqa: N802
        self.calls.append(("unregister", address))
        return 0


def test_page_lock_registers_the_buffer_for_cuda_only_and_undoes_it(monkeypatch: pytest.MonkeyPatch):
    calls: list = []
    buffer = torch.zeros(1000, dtype=torch.uint8).share_memory_()
    monkeypatch.setattr(torch.cuda, "cudart", lambda: FakeCudart(calls))
    page_lock(buffer, torch.device("cpu"))()
    assert calls == []  # a CPU reads the planes where they are
    unlock = page_lock(buffer, torch.device("cuda"))
    assert calls == [("register", buffer.data_ptr(), 1000, 1)]  # cudaHostRegisterPortable, as PyTorch's own staging
    unlock()
    assert calls[-1] == ("unregister", buffer.data_ptr())


def test_a_refused_page_lock_warns_once_and_leaves_the_buffer_pageable(monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture):
    calls: list = []
    monkeypatch.setattr(torch.cuda, "cudart", lambda: FakeCudart(calls, error=2))
    monkeypatch.setattr(plane_ring, "_lock_refused", False)
    for _ in range(2):
        page_lock(torch.zeros(2 << 20, dtype=torch.uint8), torch.device("cuda"))()
    assert [call[0] for call in calls] == ["register", "register"]  # nothing to undo
    warnings = [r.getMessage() for r in caplog.records if "page-locking" in r.getMessage()]
    assert len(warnings) == 1 and "2 MB" in warnings[0] and "cudaError 2" in warnings[0]


@pytest.mark.cuda
def test_a_page_locked_ring_buffer_is_copied_to_the_gpu_directly():
    buffer = torch.arange(1 << 16, dtype=torch.int32).to(torch.uint8).share_memory_()
    unlock = page_lock(buffer, torch.device("cuda"))
    assert buffer.is_pinned()  # CUDA copies it without staging
    on_gpu = buffer.to("cuda", non_blocking=True)
    torch.cuda.synchronize()
    assert torch.equal(on_gpu.cpu(), buffer)
    unlock()
    assert not buffer.is_pinned()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two videos the device converts (one rotated), one too small for it, and one truncated mid-stream."""
    root = tmp_path_factory.mktemp("device-clips")
    make_video(root / "a.mp4", width=96, height=80, frames=30, fps=12, seed=1)
    make_video(root / "b.mp4", width=96, height=72, frames=30, fps=12, seed=2, rotation=90)
    make_video(root / "small.mp4", width=48, height=40, frames=30, fps=12, seed=3)
    whole = make_video(root / "whole.mp4", width=96, height=80, frames=60, fps=12, seed=4).read_bytes()
    (root / "cut.mp4").write_bytes(whole[: len(whole) * 2 // 3])
    (root / "config.yml").write_text(TINY_EXTRACT_YAML)
    return root


def extracted(videos: Path, store: Path, recipe: Recipe, workers: int) -> dict[str, dict[str, np.ndarray]]:
    cfg = replace(load_config(videos / "config.yml").extract, workers=workers, decode_timeout_s=30.0)
    keys = ["a", "b", "small"]
    summary = extract_videos([(k, videos / f"{k}.mp4") for k in keys], store, cfg,
                             backbones=Backbones(cfg, recipe=recipe), progress=False)
    assert sorted(summary.done) == keys, summary.failed
    read = FeatureStore.open(store).read(KINDS)
    return {key: {kind: read.features[kind][read.rows(key)] for kind in KINDS} for key in keys}


@pytest.mark.slow
def test_device_clips_give_the_same_rows_with_any_workers_and_the_cpu_rows_within_rounding(
        videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    converted = []
    monkeypatch.setattr(batches, "clip_from_yuv", lambda clip, size: converted.append(clip.y.shape) or
                        clip_from_yuv(clip, size))
    cpu = extracted(videos, tmp_path / "cpu", CPU_RECIPE, workers=0)
    assert not converted
    inline = extracted(videos, tmp_path / "inline", DEVICE_CLIPS, workers=0)
    assert converted == [(8, 80, 96)] * 2 + [(8, 72, 96)] * 2  # a and b (stored orientation), not the small one
    shared = extracted(videos, tmp_path / "shared", DEVICE_CLIPS, workers=1)  # planes through shared memory
    for key in cpu:
        for kind in KINDS:
            assert np.array_equal(inline[key][kind], shared[key][kind]), (key, kind)
            # Clip pixels within one grey level, batches instead of single items: rows within a small fraction.
            a, b = cpu[key][kind].astype(np.float64), inline[key][kind].astype(np.float64)
            assert np.linalg.norm(a - b) <= 0.01 * np.linalg.norm(a), (key, kind)


@pytest.mark.slow
def test_a_video_failing_mid_clip_fails_alone_and_hands_back_its_slots(videos: Path, tmp_path: Path):
    cfg = replace(load_config(videos / "config.yml").extract, workers=1, decode_timeout_s=10.0)
    names = ["cut", "a", "cut", "b", "a"]
    summary = extract_videos([(f"{n}{i}", videos / f"{n}.mp4") for i, n in enumerate(names)], tmp_path / "s", cfg,
                             backbones=Backbones(cfg, recipe=DEVICE_CLIPS), progress=False)
    assert {"a1", "a4", "b3"} <= set(summary.done)  # a slot lost to the cut video would stall these
    assert set(summary.done) | set(summary.failed) == {f"{n}{i}" for i, n in enumerate(names)}


@pytest.mark.slow
def test_the_main_process_page_locks_each_ring_buffer_and_unlocks_it_before_the_next(
        videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    events: list[tuple[str, int]] = []

    def recording_lock(buffer: torch.Tensor, device: torch.device):
        assert device == torch.device("cpu")  # the extraction's device, whatever it is
        events.append(("lock", buffer.data_ptr()))
        return lambda: events.append(("unlock", buffer.data_ptr()))

    monkeypatch.setattr(decode_pool, "page_lock", recording_lock)
    cfg = replace(load_config(videos / "config.yml").extract, workers=1, decode_timeout_s=30.0)
    # b's clips (96 x 72 stored) fill a ring that a's (96 x 80) outgrow: the decoder sends a second buffer.
    summary = extract_videos([("b", videos / "b.mp4"), ("a", videos / "a.mp4")], tmp_path / "s", cfg,
                             backbones=Backbones(cfg, recipe=DEVICE_CLIPS), progress=False)
    assert sorted(summary.done) == ["a", "b"], summary.failed
    assert [kind for kind, _ in events] == ["lock", "unlock", "lock", "unlock"]  # the last when the pool closed
    assert events[0][1] == events[1][1] and events[2][1] == events[3][1]


@pytest.mark.slow
def test_a_chunk_in_shared_memory_is_copied_out_before_its_slot_can_be_reused(videos: Path):
    cfg = load_config(videos / "config.yml").extract
    backbones = Backbones(cfg, recipe=DEVICE_CLIPS)
    with open_chunks(videos / "a.mp4", clip_size=cfg.clip.size, clip_frames=cfg.clip.frames, planes=new_planes) as stream:
        first = next(iter(stream))

    def rows(reuse_slot: bool) -> dict[str, np.ndarray]:
        key_frame, clip = first.key_frame.clone(), YUVClip(*(p.clone() for p in first.clip.planes), 1, False)
        video = VideoJob("a", "a.mp4", tuple(cfg.levels), 0, 0.0)
        batcher = batches.Batcher(backbones, batch_size=4)
        batcher.add(video, DecodedChunk(key_frame, clip, None, 0))
        if reuse_slot:  # the decoder writes its next chunk where this one lay
            for tensor in (key_frame, *clip.planes):
                tensor.fill_(0)
        batcher.decoded(video)
        batcher.flush()  # batches span videos under this recipe: run the partial ones
        return {kind: rows[0] for kind, rows in video.rows.items()}

    kept, reused = rows(reuse_slot=False), rows(reuse_slot=True)
    assert set(kept) == set(KINDS)
    for kind in KINDS:
        assert np.array_equal(kept[kind], reused[kind]), kind
