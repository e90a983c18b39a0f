"""Extraction end to end against the backbones alone and against the research code's way.

Three ways over the same videos, the same models (seeded random weights: the same compute as the
pretrained ones, which cannot be downloaded here) and the same config (levels coarse 448 + fine 720,
SlowFast clips of 32 x 224 x 224, batches of 8 chunks):

- ``pipeline``: ``extract_videos`` into a fresh store (decode, resize, models, shard writes), with
  ``--workers`` 0 (decode in the main process) or N (decode in N processes beside the models);
- ``forward``: the backbones alone, timed on chunks decoded beforehand, batched exactly as the pipeline
  batches them (the floor the pipeline is measured against);
- ``research``: a straightforward re-implementation of the research code's way: the whole video decoded
  into RAM, every frame transformed one by one (PIL resize + to-tensor) up front, then one model call per
  key frame and level and one per clip.

Each run is a fresh subprocess reporting wall-clock seconds, CPU seconds and peak memory of itself and
its children (decoder processes), sampled every 50 ms; every way builds its models inside the clock.
Then the same on long generated 1080p videos (``--long``, a few chunks each) for peak memory, which grows
with the video's length only where the whole video is decoded into RAM.

    .venv/bin/python -m bench.extract --data ../shared/data/vqa-dev --videos 8 --long 10,30,90 --long-chunks 2
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import click
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from bench.videos import pattern_video
from pipeline.config import ExtractConfig, load_config
from pipeline.backbones import Backbones
from pipeline.extract.decoding import DecodedChunk, DecodeOptions, decode_video
from pipeline.extract.run import extract_videos
from pipeline.store import FeatureStore

ROOT = Path(__file__).resolve().parent.parent


class TreeUsage:
    """Peak summed PSS and total CPU seconds of this process and its descendants, sampled in a thread.

    PSS (proportional set size) splits pages shared between processes (a forked decoder shares the fork
    server's imports) among them, so the sum is the memory the tree really holds. CPU seconds are the
    work done whatever else runs on the machine (wall-clock time on a shared machine depends on the load).
    """

    def __init__(self, interval_s: float = 0.05):
        self.peak_bytes = 0
        self._cpu_ticks: dict[int, int] = {}
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> TreeUsage:
        self._base = _processes()  # CPU already spent (imports, model building) is not this measurement's
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval_s)

    def _sample(self) -> None:
        processes = _processes()
        tree, frontier = [os.getpid()], [os.getpid()]
        while frontier:
            frontier = [pid for pid, (parent, _) in processes.items() if parent in frontier]
            tree += frontier
        self.peak_bytes = max(self.peak_bytes, sum(_pss_bytes(pid) for pid in tree))
        for pid in tree:
            spent = processes[pid][1] - self._base.get(pid, (0, 0))[1]
            self._cpu_ticks[pid] = max(self._cpu_ticks.get(pid, 0), spent)


def _processes() -> dict[int, tuple[int, int]]:
    """``pid -> (parent pid, CPU ticks so far)`` of every process."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                found[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_pipeline(paths: list[Path], cfg: ExtractConfig) -> int:
    """``extract_videos`` into a fresh store, as extract_features.py runs it; returns the chunks stored."""
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as store:
        summary = extract_videos([(p.name, p) for p in paths], store, cfg, progress=False)
        if summary.failed:
            raise RuntimeError(f"extraction failed: {summary.failed}")
        return int(FeatureStore.open(store).read(["temporal_fast"]).offsets[-1])


def decode_all(paths: list[Path], cfg: ExtractConfig) -> list[list[DecodedChunk]]:
    """Every chunk of ``paths``, decoded into memory (the forward-only way's untimed preparation)."""
    options = DecodeOptions.from_config(cfg)
    return [[c for c in decode_video(str(p), options) if isinstance(c, DecodedChunk)] for p in paths]


def run_forward(videos: list[list[DecodedChunk]], cfg: ExtractConfig, backbones: Backbones) -> int:
    """Only the backbones (with the key-frame resizes), in the pipeline's batches, on decoded chunks."""
    for chunks in videos:
        for i in range(0, len(chunks), cfg.batch_size):
            batch = chunks[i:i + cfg.batch_size]
            key_frames = torch.stack([c.key_frame for c in batch]).to(backbones.device)
            for level in cfg.levels:
                backbones.spatial_batch(key_frames, level)
            if backbones.temporal:
                backbones.temporal_batch(torch.stack([c.clip for c in batch]).to(backbones.device))
    return sum(map(len, videos))


def run_research(paths: list[Path], cfg: ExtractConfig, backbones: Backbones) -> int:
    """The research code's way: whole video in RAM, per-frame transforms, one model call per frame and clip."""
    chunks = 0
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        size = cfg.clip.size
        clip_frames = torch.stack([TF.to_tensor(Image.fromarray(f).resize((size, size), Image.BILINEAR))
                                   for f in frames])  # (N, 3, S, S) float: every frame, transformed up front
        seconds = max(1, math.floor(len(frames) / fps))
        if cfg.max_chunks:  # the same evenly spread seconds as the pipeline's max_chunks
            seconds = sorted(set(np.linspace(0, seconds - 1, min(cfg.max_chunks, seconds)).round().astype(int)))
        else:
            seconds = range(seconds)
        for second in seconds:
            key = min(math.ceil(second * fps), len(frames) - 1)
            image = Image.fromarray(frames[key])
            for level in cfg.levels.values():
                backbones.spatial(TF.to_tensor(TF.resize(image, level.short_side))[None])
            clip = [min(key + j, len(frames) - 1) for j in range(cfg.clip.frames)]
            backbones.temporal(clip_frames[clip][None])
            chunks += 1
    return chunks


WAYS = ("forward", "pipeline", "research")


def measure(way: str, paths: list[Path], config: Path, workers: int, max_chunks: int, threads: int) -> dict:
    """One way over ``paths`` in this process: chunks, seconds and peak memory."""
    torch.set_num_threads(threads)
    overrides = ["extract.weights=random", "extract.device=cpu", f"extract.workers={workers}",
                 f"extract.max_chunks={max_chunks}", "extract.nss=false"]  # like for like: the research way has none
    cfg = load_config(config, overrides).extract
    decoded = decode_all(paths, cfg) if way == "forward" else []
    with TreeUsage() as usage:  # models are built inside the clock: the pipeline overlaps that with decoder start-up
        start = time.perf_counter()
        if way == "pipeline":
            chunks = run_pipeline(paths, cfg)
        elif way == "forward":
            chunks = run_forward(decoded, cfg, Backbones(cfg))
        else:
            chunks = run_research(paths, cfg, Backbones(cfg))
        seconds = time.perf_counter() - start
    return {"way": way, "workers": workers if way == "pipeline" else None, "videos": len(paths), "chunks": chunks,
            "seconds": round(seconds, 2), "cpu_seconds": round(usage.cpu_seconds, 2),
            "peak_mib": round(usage.peak_bytes / 2**20), "threads": threads, "load": round(os.getloadavg()[0], 1)}


def in_subprocess(way: str, paths: list[Path], config: Path, workers: int, max_chunks: int, threads: int) -> dict:
    """``measure`` in a fresh interpreter, so each way's peak memory is its own."""
    command = [sys.executable, "-m", "bench.extract", "--measure", way, "--config", str(config), "--workers",
               str(workers), "--max-chunks", str(max_chunks), "--threads", str(threads), *map(str, paths)]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@click.command()
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True,
              help="a data set folder holding labels.csv (filename column) and its videos, e.g. vqa-dev")
@click.option("--videos", default=16, show_default=True, help="evenly spaced subset of DATA's labels.csv")
@click.option("--config", type=click.Path(exists=True, path_type=Path), default=ROOT / "config/kwai_simpleVQA.yml")
@click.option("--long", "long_seconds", default="10,30,90", show_default=True,
              help="lengths (s) of generated 1080p 10 fps videos for the memory comparison")
@click.option("--long-chunks", default=3, show_default=True, help="max_chunks on the long videos (bounds time)")
@click.option("--workers", default="0,1", show_default=True, help="pipeline decoder processes to try")
@click.option("--threads", default=1, show_default=True, help="torch intra-op threads of every way")
@click.option("--work", type=click.Path(path_type=Path), default=Path("/tmp/vqa-bench-extract"), show_default=True)
@click.option("--measure", "way", type=click.Choice(WAYS), hidden=True)
@click.option("--max-chunks", default=0, hidden=True)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def main(data: Path, videos: int, config: Path, long_seconds: str, long_chunks: int, workers: str, threads: int,
         work: Path, way: str | None, max_chunks: int, paths: tuple[Path, ...]) -> None:
    """Time DATA's subset every way, then compare peak memory on long generated videos; one JSON line each."""
    if way:  # one measurement, in this fresh process
        print(json.dumps(measure(way, list(paths), config, int(workers), max_chunks, threads)))
        return
    table = pd.read_csv(data / "labels.csv")
    subset = [data / f for f in table["filename"].iloc[np.linspace(0, len(table) - 1, videos).round().astype(int)]]
    work.mkdir(parents=True, exist_ok=True)
    long_videos = [pattern_video(work / f"1080p_{s}s_10fps.mp4", int(s), 10, 1920, 1080)
                   for s in long_seconds.split(",") if s.strip()]  # --long "": the data set only
    counts = [int(w) for w in workers.split(",")]
    sets = [(f"{data.name} ({videos} videos)", subset, 0, ["forward", *["pipeline"] * len(counts), "research"])]
    sets += [(p.name, [p], long_chunks, [*["pipeline"] * len(counts), "research"]) for p in long_videos]
    for label, chosen, chunks, ways in sets:
        pipeline_workers = iter(counts)
        for run_way in ways:
            w = next(pipeline_workers) if run_way == "pipeline" else 0
            report = in_subprocess(run_way, chosen, config, w, chunks, threads)
            print(json.dumps({"set": label, "max_chunks": chunks, **report}), flush=True)


if __name__ == "__main__":
    main()
