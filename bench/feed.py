"""The CPU feed of extraction: what a chunk costs outside the backbones' forward passes, against decoding alone.

On a GPU node the backbones of a chunk take milliseconds; everything else is CPU work, and it decides how
many chunks per second reach the GPU. This bench measures that work on real content (vqa-dev's pristine
sources, upscaled and re-encoded with PyAV as H.264 1080p30 and 720p24, cached under ``--work``), in CPU
seconds per one-second chunk, split by part:

- ``decode alone``: PyAV decoding every frame on one thread, nothing else (the yardstick);
- ``decode layer``: ``pipeline.extract.decoding.decode_video`` on one decoder thread, as a decoder process runs
  it, NSS off and on; within it, timed per call: the clip views (decoder pixels -> 224x224 RGB), the key
  frames' full-size RGB, the tensor views (rotation, placement), NSS and the probe (opening, indexing, first
  frame); the rest is decoding and assembly;
- ``hand-off``: a decoder process's chunks through a pipe as ``DecodePool`` sends them, both ends;
- ``levels + clip to float``: the main process's non-model work on a chunk (key frame resized to each
  level, clip scaled to [0, 1]): work the design puts on the device when there is one;
- ``store``: the rows of every kind through ``ShardWriter`` into a shard.

Two figures follow. A GPU node, against <= 1.15x decoding: the CPU work that stays on the
CPU under the accelerator recipe, where decoder processes hand over YUV planes through shared memory
(``decode layer, planes``: decoding, one copy of each clip frame's planes and of the key frame into the ring,
the key frame's RGB; ``hand-off, planes``: the header through the pipe, both ends; store). The main process
page-locks each ring, so the device copies planes and key frame by DMA; ``upload staging``, a host copy of them,
is what CUDA's copy from pageable memory would cost the main process where page-locking is refused, and
``gpu_node_pageable`` adds it. The device's work (clips from planes, NSS, levels, clip scaling) is timed on
this CPU as an upper bound. And a CPU-only machine with NSS on (everything, swscale clips) against <= 1.5x:
with the backbones (the chunks' pixels cross the pipe, or with ``workers: 0`` do not; levels and clip scaling
follow) and weight-free (NSS only: only NSS rows cross). Decoding alone and the three decode layers run in
``--repeats`` interleaved rounds; each figure is the median over rounds of its ratio within a round (with the
range over rounds, and the ratio of the best rounds); the split by part is the best round's.

``--feed`` then runs backbone-free extraction (NSS only, ``extract_videos``) of ``--copies`` copies of the
1080p30 clip, and of twice as many, at each ``--workers`` value and reports steady-state chunks/s (the extra
chunks over the extra time, so start-up cancels out) against 80% of cores / (CPU-s per chunk of the weight-free
CPU-only figure), the rate that keeps the cores busy.

    .venv/bin/python -m bench.feed --data ../shared/data/vqa-dev --work /tmp/vqa-bench-feed --feed auto,0,1,2
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from multiprocessing import Pipe
from pathlib import Path

import av
import click
import numpy as np
import torch

from bench.cputime import best_cpu
from bench.stores import video_record
from bench.videos import reencoded
import pipeline.extract.decode_pool as decode_pool
import pipeline.extract.decoding as decoding
import pipeline.extract.run as extract
import pipeline.video.chunks as chunks
from pipeline.backbones.device import usable_cpus
from pipeline.config import ExtractConfig, load_config
from pipeline.extract.decoding import DecodedChunk, DecodeOptions, decode_video
from pipeline.extract.heap import keep_freed_memory
from pipeline.nss import NSS_DIM, nss_features
from pipeline.extract.plane_ring import SLOTS, PlaneRing
from pipeline.store import FeatureStore
from pipeline.video import VideoInfo, resize_short_side
from pipeline.video.frames import AVFrame
from pipeline.video.yuv import YUVClip, clip_from_yuv

SOURCES = ("bbb_f00307", "vid4_calendar", "bbb_f02980", "skv_bikes", "vid4_walk")  # 2 s each in vqa-dev
CLIPS = {"1080p30": (1920, 1080, 30), "720p24": (1280, 720, 24)}
LEVELS = (448, 720)
ROWS = {"spatial_coarse": 7168, "spatial_fine": 7168, "temporal_slow": 2048, "temporal_fast": 256, "nss": NSS_DIM}
TARGETS = {"gpu_node": 1.15, "cpu_only_nss": 1.5}


def make_clip(data: Path, work: Path, name: str) -> Path:
    """The sources one after another, upscaled to ``name``'s size and frame rate; cached under ``work``."""
    width, height, fps = CLIPS[name]
    sources = [data / "videos" / f"{source}__pristine.mp4" for source in SOURCES]
    return reencoded(work / f"feed-{name}.mp4", sources, fps, width, height)


def decode_alone(path: Path) -> None:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        for _ in container.decode(stream):
            pass


class PartTimer:
    """Thread CPU seconds spent inside chosen functions, accumulated per name, while the real code runs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[name] = self.seconds.get(name, 0.0) + time.thread_time() - start
        return timed


@contextmanager
def timed_parts() -> Iterator[PartTimer]:
    """Time the decode layer's parts by wrapping the functions that do them, restored afterwards."""
    timer = PartTimer()
    patches = [(AVFrame, "resized", "clip views"), (AVFrame, "rgb", "key frame RGB"),
               (chunks, "display_frame", "tensor views"), (decoding, "nss_features", "NSS"),
               (chunks, "stack_planes", "plane copies"), (chunks, "probe", "probe (open, index, first frame)")]
    originals = [getattr(owner, attr) for owner, attr, _ in patches]
    for (owner, attr, name), original in zip(patches, originals):
        setattr(owner, attr, timer.wrap(name, original))
    try:
        yield timer
    finally:
        for (owner, attr, _), original in zip(patches, originals):
            setattr(owner, attr, original)


def decoded(path: Path, options: DecodeOptions) -> tuple[VideoInfo, list[DecodedChunk]]:
    items = list(decode_video(str(path), options))
    return items[0], items[1:]


_FREE = threading.Semaphore(SLOTS)
_RING = (_FREE, PlaneRing(_FREE, 60.0, lambda: "bench"))


def through_ring(path: Path, options: DecodeOptions, consume: Callable[[DecodedChunk, PlaneRing], None] | None = None
                 ) -> tuple[VideoInfo, int]:
    """Decode as a decoder process does under the accelerator recipe: YUV clips written into a plane ring whose
    slots ``consume`` (default: nothing) reads before they are released, as the main process would. The ring
    lives as long as a decoder process does (its pages are mapped once, not per video)."""
    free, ring = _RING
    items = decode_video(str(path), options, ring)
    info, count = next(items), 0
    for chunk in items:
        if isinstance(chunk.clip, YUVClip):
            if consume:
                consume(chunk, ring)
            ring.locate(chunk.clip, chunk.key_frame)
            free.release()
        count += 1
    return info, count


def layer_run(path: Path, options: DecodeOptions) -> dict[str, float]:
    """CPU seconds of one run of the decode layer on ``path``: its total and its timed parts."""
    run = (lambda: through_ring(path, options)) if options.planes else (lambda: decoded(path, options))
    with timed_parts() as timer:
        total = best_cpu(run, 1)
    parts = dict(timer.seconds)
    return {"total": total, **parts, "decoding and assembly": total - sum(parts.values())}


def interleaved(runs: dict[str, Callable[[], dict[str, float]]], repeats: int
                ) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Each run once per round, ``repeats`` rounds: per run, its round with the least total (for the split by part),
    and every round's total (for ratios taken within a round). Interleaved, every run meets the same spells of a
    shared machine's speed (one after the other, a slow minute under one of them moved a ratio by 10-15 %)."""
    best = {name: {"total": float("inf")} for name in runs}
    totals: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            result = run()
            totals[name].append(result["total"])
            if result["total"] < best[name]["total"]:
                best[name] = result
    return best, totals


def figure(layer: list[float], alone: list[float], chunks: int, extra: float, target: float) -> dict:
    """A figure (a decode layer's CPU per chunk plus ``extra``, as a multiple of decoding alone) from interleaved rounds.

    The ratio is taken within each round, then the median over rounds: a slow spell then moves both sides of one
    ratio, where the best round of each side alone could pair a lucky decoding run with an unlucky layer run or
    the other way round.
    """
    ratios = sorted((lay / chunks + extra) / (dec / chunks) for lay, dec in zip(layer, alone))
    return {"cpu": float(np.median(layer)) / chunks + extra, "x_decoding": float(np.median(ratios)),
            "x_range": [ratios[0], ratios[-1]],
            "x_best_rounds": (min(layer) / chunks + extra) / (min(alone) / chunks), "target": target}


def hand_off(chunks_: list[DecodedChunk]) -> None:
    """The chunks through a pipe as a decoder process sends them and DecodePool receives them (here: two threads), the
    pipe made as DecodePool makes it: duplex, a Unix socket pair (a one-way OS pipe costs more)."""
    ours, theirs = Pipe()

    def receive() -> None:
        for _ in chunks_:
            decode_pool.receive_chunk(ours, ours.recv())

    reader = threading.Thread(target=receive)
    reader.start()
    for c in chunks_:
        decode_pool.send_chunk(theirs, 0, c)
    reader.join()


def planes_hand_off(path: Path, options: DecodeOptions) -> float:
    """CPU seconds of the planes' hand-off, both ends, over the whole clip: each chunk's header through a pipe as
    a decoder process sends it and DecodePool receives it (planes and key frame stay put in shared memory)."""
    ours, theirs = Pipe()
    spent = 0.0

    def consume(chunk: DecodedChunk, ring: PlaneRing) -> None:
        nonlocal spent
        start = time.thread_time()  # per thread: the decoding thread runs meanwhile
        sent = []

        def send() -> None:
            begin = time.thread_time()
            decode_pool.send_chunk(theirs, 0, chunk, ring)
            sent.append(time.thread_time() - begin)

        sender = threading.Thread(target=send)
        sender.start()
        while not isinstance(message := ours.recv(), decode_pool.ChunkHeader):
            pass  # the ring's buffer, announced once: a file descriptor
        decode_pool.receive_chunk(ours, message, ring.buffer, threading.Semaphore(0))
        sender.join()
        spent += time.thread_time() - start + sent[0]

    through_ring(path, options, consume)
    return spent


def upload_staging(chunks_: list[DecodedChunk], staging: list[torch.Tensor]) -> None:
    """What CUDA's copy of the planes and key frame from pageable memory costs the host: one copy into its (reused)
    staging buffers."""
    for c in chunks_:
        for tensor, buffer in zip((*c.clip.planes, c.key_frame), staging):
            buffer.copy_(tensor)


def device_work(chunks_: list[DecodedChunk]) -> None:
    """The accelerator recipe's device work on a chunk, on this CPU: clip from planes, NSS, levels, clip scaling."""
    for c in chunks_:
        clip = clip_from_yuv(c.clip, 224)
        nss_features(c.key_frame, clip)
        for side in LEVELS:
            resize_short_side(c.key_frame[None], side)
        clip[None].float().div_(255)


def main_non_model(chunks_: list[DecodedChunk]) -> None:
    """What ``Backbones.spatial_batch``/``temporal_batch`` do to a chunk besides the forward passes: level
    resizes, clip to float."""
    for c in chunks_:
        for side in LEVELS:
            resize_short_side(c.key_frame[None], side)
        c.clip[None].float().div_(255)


def store_writes(chunks_per_video: int, videos: int = 64) -> None:
    """``videos`` videos' rows of every kind through a ShardWriter (one shard)."""
    rng = np.random.default_rng(0)
    rows = {kind: rng.standard_normal((chunks_per_video, dim), dtype=np.float32) for kind, dim in ROWS.items()}
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as root:
        store = FeatureStore.open(root, {"bench": "feed"})
        with store.writer(flush_videos=videos) as writer:
            for i in range(videos):
                writer.add(video_record(f"v{i}", chunks_per_video), rows, range(chunks_per_video))


def replace_clip(chunk: DecodedChunk) -> DecodedChunk:
    """The chunk with its planes and key frame copied out of the ring (whose slots are reused), for the device-side
    timings."""
    yuv = chunk.clip
    return DecodedChunk(chunk.key_frame.clone(), YUVClip(*(p.clone() for p in yuv.planes), yuv.colorspace,
                                                         yuv.full_range), chunk.nss, chunk.second)


def measure_clip(path: Path, repeats: int) -> dict:
    """Every figure of one clip, in CPU seconds per chunk."""
    torch.set_num_threads(1)
    keep_freed_memory()  # as in the extraction's processes
    options = DecodeOptions("pyav", 0, 32, 224, 120.0, nss=True, threads=1)
    info, chunks_ = decoded(path, options)
    n = len(chunks_)
    planes_options = replace(options, planes=True)
    through_ring(path, planes_options)  # the ring's pages mapped once, as in a decoder process
    layers, rounds = interleaved({
        "decode alone": lambda: {"total": best_cpu(lambda: decode_alone(path), 1)},
        "off": lambda: layer_run(path, replace(options, nss=False)),
        "on": lambda: layer_run(path, options),
        "planes": lambda: layer_run(path, planes_options),
    }, repeats)
    per = {"decode alone": layers["decode alone"]["total"] / n,
           "decode layer, NSS off": layers["off"]["total"] / n,
           "decode layer, NSS on": layers["on"]["total"] / n,
           "decode layer, planes": layers["planes"]["total"] / n}
    parts = {k: v / n for k, v in layers["on"].items() if k != "total"}
    planes_parts = {k: v / n for k, v in layers["planes"].items() if k != "total"}
    per["hand-off"] = best_cpu(lambda: hand_off(chunks_), repeats) / n
    bare = [DecodedChunk.without_pixels(c.nss, c.second) for c in chunks_]
    per["hand-off, NSS rows only"] = best_cpu(lambda: hand_off(bare), repeats) / n
    per["levels + clip to float"] = best_cpu(lambda: main_non_model(chunks_), repeats) / n
    per["store"] = best_cpu(lambda: store_writes(n), repeats) / (64 * n)
    per["hand-off, planes"] = min(planes_hand_off(path, planes_options) for _ in range(repeats)) / n
    kept: list[DecodedChunk] = []
    through_ring(path, planes_options, lambda chunk, ring: kept.append(replace_clip(chunk)))
    staging = [torch.empty_like(tensor) for tensor in (*kept[0].clip.planes, kept[0].key_frame)]
    per["upload staging"] = best_cpu(lambda: upload_staging(kept, staging), repeats) / n
    per["device work (on this CPU)"] = best_cpu(lambda: device_work(kept), 1) / n
    alone = rounds["decode alone"]
    gpu_extra = per["hand-off, planes"] + per["store"]  # the ring is page-locked: the device copies it by DMA
    return {"clip": path.name, "frames": info.frames, "chunks": n, "per_chunk": per, "decode_layer_parts": parts,
            "decode_layer_planes_parts": planes_parts,
            "gpu_node": {**figure(rounds["planes"], alone, n, gpu_extra, TARGETS["gpu_node"]),
                         "device_work_upper_bound": per["device work (on this CPU)"]},
            "gpu_node_pageable": figure(rounds["planes"], alone, n, gpu_extra + per["upload staging"],
                                        TARGETS["gpu_node"]),
            "cpu_only_nss": figure(rounds["on"], alone, n, per["hand-off"] + per["levels + clip to float"] + per["store"],
                                   TARGETS["cpu_only_nss"]),
            "cpu_only_nss_workers_0": figure(rounds["on"], alone, n, per["levels + clip to float"] + per["store"],
                                             TARGETS["cpu_only_nss"]),
            "cpu_only_nss_weight_free": figure(rounds["on"], alone, n, per["hand-off, NSS rows only"] + per["store"],
                                               TARGETS["cpu_only_nss"])}


def feed_rate(path: Path, copies: int, workers: str, config: Path) -> dict:
    """Backbone-free extraction (NSS only) of copies of ``path``: steady chunks/s and CPU-s per chunk, from the
    difference between extracting ``copies`` copies and twice as many (start-up and the last video's tail, the
    same in both, cancel out)."""
    cfg = load_config(config, [f"extract.workers={workers}"]).extract
    small, large = (_extract_copies(path, n, cfg) for n in (copies, 2 * copies))
    chunks = large["chunks"] - small["chunks"]
    if large["wall_s"] <= small["wall_s"] or large["cpu_s"] <= small["cpu_s"]:
        raise RuntimeError(f"{copies} copies of {path} are too few to tell the steady rate from start-up; "
                           "raise --copies")
    steady = chunks / (large["wall_s"] - small["wall_s"])
    cpu_per_chunk = (large["cpu_s"] - small["cpu_s"]) / chunks
    resolved = decode_pool.feed_plan(cfg.workers, usable_cpus(), cuda=False, models=False)
    return {"workers": workers, "processes_threads": resolved, "chunks": chunks,
            "steady_chunks_per_s": steady, "cpu_s_per_chunk": cpu_per_chunk,
            "cores_busy": steady * cpu_per_chunk,  # on a shared machine: compare with the load average
            "wall_s": large["wall_s"], "load": os.getloadavg()[0]}


def _extract_copies(path: Path, copies: int, cfg: ExtractConfig) -> dict:
    """Chunks stored, wall seconds and the process tree's CPU seconds of extracting ``copies`` copies of ``path``."""
    from bench.extract import TreeUsage

    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        videos = []
        for i in range(copies):
            os.symlink(path, Path(tmp) / f"copy{i}.mp4")
            videos.append((f"copy{i}.mp4", Path(tmp) / f"copy{i}.mp4"))
        # One sample a second: reading every process's smaps_rollup 20 times a second (the default) cost as much
        # CPU as the decoding it was measuring.
        with TreeUsage(interval_s=1.0) as usage:
            start = time.perf_counter()
            summary = extract.extract_videos(videos, Path(tmp) / "store", cfg, progress=False)
            wall = time.perf_counter() - start
        if summary.failed:
            raise RuntimeError(f"extraction failed: {summary.failed}")
        chunks = int(FeatureStore.open(Path(tmp) / "store").read(["nss"]).offsets[-1])
    return {"chunks": chunks, "wall_s": wall, "cpu_s": usage.cpu_seconds}


@click.command()
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True,
              help="vqa-dev: the folder holding its videos/ (the pristine sources are re-encoded from it)")
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/vqa-bench-feed"), show_default=True)
@click.option("--repeats", default=7, show_default=True,
              help="rounds of the decode measurements (median ratio), runs of the others (least CPU time)")
@click.option("--clips", default=",".join(CLIPS), show_default=True)
@click.option("--feed", "feed", default="", help="extract.workers values to run the feed-rate check at, e.g. auto,0,2")
@click.option("--copies", default=8, show_default=True, help="copies of the 1080p30 clip in the feed-rate check")
@click.option("--config", type=click.Path(exists=True, path_type=Path), default=Path("config/nss_only.yml"))
def cli(data: Path, work: Path, repeats: int, clips: str, feed: str, copies: int, config: Path) -> None:
    """Print one JSON line per clip (CPU-s per chunk by part, the two figures) and per feed-rate run."""
    cpu_per_chunk = {}
    for name in filter(None, clips.split(",")):
        report = measure_clip(make_clip(data, work, name), repeats)
        cpu_per_chunk[name] = report["cpu_only_nss_weight_free"]["cpu"]
        print(json.dumps(report, default=float), flush=True)
    cores = usable_cpus()
    for workers in filter(None, feed.split(",")):
        run = feed_rate(make_clip(data, work, "1080p30"), copies, workers, config)
        per_chunk = cpu_per_chunk.get("1080p30")
        if per_chunk:
            run["target_chunks_per_s"] = 0.8 * cores / per_chunk
        print(json.dumps({"cores": cores, **run}, default=float), flush=True)


if __name__ == "__main__":
    cli()
