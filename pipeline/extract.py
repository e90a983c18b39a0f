"""One extraction run: videos in, features into a store, a summary out; used by every command that extracts.

Per video: decode one-second chunks (streaming, bounded memory), batch them, run the spatial backbone on
the key frames at each requested level and the temporal backbone on the clips, and hand the rows to a
:class:`~pipeline.store.ShardWriter`. Videos the store already holds, from the same file, are skipped; a
video that fails is recorded in the store's ``failures.csv`` and the run goes on.

With ``workers > 0`` decoding (and the weight-free NSS features) runs in that many separate processes
while this one runs the models, so a decoder that crashes or hangs on a bad file fails that video only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.backbones import SpatialExtractor, TemporalExtractor, resolve_device
from pipeline.backbones.device import usable_cpus
from pipeline.config import ExtractConfig
from pipeline.decode_pool import DecodedChunk, DecodeOptions, DecodePool, Event, describe, feed_plan, inline_events
from pipeline.errors import ConfigError, CorruptVideoError, UsageError
from pipeline.nss import NSS_DIM, NSS_VERSION
from pipeline.store import FeatureStore, ShardWriter, VideoRecord, checked_rows, file_signature
from pipeline.video import VideoInfo, resize_short_side

#: Version of the feature definitions (DESIGN.md "Feature definitions"); part of every store's settings,
#: so features made under an older definition are never mixed with new ones. Bump on any change.
FEATURE_VERSION = 2


@dataclass
class ExtractSummary:
    """What a run did: keys extracted, skipped (already cached), re-extracted because the file changed, failed."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    shards: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        stale = f" ({len(self.stale)} of them changed since cached)" if self.stale else ""
        return (f"extracted {len(self.done)}{stale}, skipped {len(self.skipped)} (cached), failed "
                f"{len(self.failed)} in {self.seconds:.1f} s; {len(self.shards)} new shard(s)")


class Backbones:
    """The models of one extraction config, built once and reused for every video (and by score/Dask runs)."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.short_sides = {name: level.short_side for name, level in cfg.levels.items()}
        self.spatial = SpatialExtractor(cfg.weights, self.device) if cfg.levels else None
        self.temporal = TemporalExtractor(cfg.weights, self.device) if cfg.temporal else None

    @property
    def settings(self) -> dict:
        """Everything that shapes the feature values: the store refuses to mix runs where any of it differs."""
        cfg = self.cfg
        return {
            "feature_version": FEATURE_VERSION,
            "levels": {name: {"short_side": side} for name, side in sorted(self.short_sides.items())},
            "clip": {"frames": cfg.clip.frames, "size": cfg.clip.size},
            "max_chunks": cfg.max_chunks,
            "spatial_weights": self.spatial.weights_id if self.spatial else None,
            "temporal_weights": self.temporal.weights_id if self.temporal else None,
            "nss": {"dim": NSS_DIM, "version": NSS_VERSION} if cfg.nss else None,
        }

    def kinds(self, levels: Iterable[str]) -> tuple[str, ...]:
        """The store kinds a video extracted at ``levels`` holds."""
        kinds = [f"spatial_{level}" for level in levels]
        kinds += ["temporal_slow", "temporal_fast"] if self.temporal else []
        return tuple(kinds + (["nss"] if self.cfg.nss else []))

    def features(self, chunks: Sequence[DecodedChunk], levels: Iterable[str]) -> dict[str, np.ndarray]:
        """Rows of every kind for a batch of chunks of one video (their key frames share one size)."""
        out: dict[str, np.ndarray] = {}
        key_frames = torch.stack([c.key_frame for c in chunks]).to(self.device)
        for level in levels:
            frames = resize_short_side(key_frames, self.short_sides[level])
            out[f"spatial_{level}"] = self.spatial(frames).numpy()
        if self.temporal:
            clips = torch.stack([c.clip for c in chunks]).to(self.device).float().div_(255)
            slow, fast = self.temporal(clips)
            out["temporal_slow"], out["temporal_fast"] = slow.numpy(), fast.numpy()
        if self.cfg.nss:
            out["nss"] = np.stack([c.nss for c in chunks])
        return out


@dataclass
class _Job:
    """One video to extract, and its features as they are assembled batch by batch."""

    key: str
    path: str
    levels: tuple[str, ...]
    size: int
    mtime: float
    info: VideoInfo | None = None
    pending: list[DecodedChunk] = field(default_factory=list)
    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, chunk: DecodedChunk, backbones: Backbones, batch_size: int) -> None:
        self.pending.append(chunk)
        if len(self.pending) >= batch_size:
            self._run(backbones)

    def finish(self, backbones: Backbones) -> tuple[VideoRecord, dict[str, np.ndarray]]:
        """The video's record and rows, checked as the store requires (StoreError: this video fails)."""
        if self.pending:
            self._run(backbones)
        if self.info is None or not self.parts:
            raise CorruptVideoError(self.path, "no chunks could be decoded")
        info, parts, self.parts = self.info, self.parts, {}  # the arrays go to the writer, not kept here
        record = VideoRecord(key=self.key, fps=info.fps, frames=info.frames, width=info.width, height=info.height,
                             duration=info.duration, decoder=info.decoder, size=self.size, mtime=self.mtime)
        rows = checked_rows({kind: np.concatenate(rows) for kind, rows in parts.items()}, self.path)
        return record, rows

    def _run(self, backbones: Backbones) -> None:
        for kind, rows in backbones.features(self.pending, self.levels).items():
            self.parts.setdefault(kind, []).append(rows)
        self.pending = []


def extract_videos(
    videos: Iterable[tuple[str, str | Path]],
    store: str | Path,
    cfg: ExtractConfig,
    *,
    levels: Sequence[str] | None = None,
    backbones: Backbones | None = None,
    progress: bool = True,
) -> ExtractSummary:
    """Extract ``(key, path)`` videos into the store at ``store``; return what was done, skipped and failed.

    ``levels``: spatial levels to extract (default: every level of ``cfg.levels``). A cached video lacking
    one is extracted again with its old levels plus the new ones. ``backbones``: reuse models already built
    for ``cfg``. Per-video failures are recorded in the store and in the summary; nothing is raised for them.
    """
    start = time.perf_counter()
    check_config(cfg)
    levels = tuple(cfg.levels) if levels is None else tuple(dict.fromkeys(levels))
    unknown = [level for level in levels if level not in cfg.levels]
    if unknown:
        raise UsageError(f"unknown level(s) {unknown}; the config defines {sorted(cfg.levels)}")
    videos = list(videos)
    workers, threads = feed_plan(cfg.workers, usable_cpus(), cuda=resolve_device(cfg.device).type == "cuda",
                                 models=bool(cfg.levels or cfg.temporal))
    # Decoder processes first: they start up while the models are built.
    pool = DecodePool(workers, DecodeOptions.from_config(cfg, threads=threads)) if workers and videos else None
    try:
        backbones = backbones or Backbones(cfg)
        if not backbones.kinds(levels):
            raise UsageError("nothing to extract: no spatial level, extract.temporal and extract.nss both off")
        summary = ExtractSummary()
        _run(videos, FeatureStore.open(store, backbones.settings), cfg, levels, backbones, pool, threads, progress,
             summary)
    finally:
        if pool:
            pool.close()
    summary.seconds = time.perf_counter() - start
    return summary


def check_config(cfg: ExtractConfig) -> None:
    """Refuse values no extraction can run with (ConfigError naming the keys), before a store or model is made.

    Caught here, a bad value is one usage error; caught by the decoder, it would fail every video.
    """
    rules = [
        ("extract.batch_size", cfg.batch_size, ">= 1", cfg.batch_size >= 1),
        ("extract.max_chunks", cfg.max_chunks, ">= 0", cfg.max_chunks >= 0),
        ("extract.clip.size", cfg.clip.size, ">= 1", cfg.clip.size >= 1),
        ("extract.clip.frames", cfg.clip.frames, ">= 1", cfg.clip.frames >= 1),
        ("extract.decode_timeout_s", cfg.decode_timeout_s, "> 0", cfg.decode_timeout_s > 0),
        ("extract.workers", cfg.workers, ">= 0 or auto", cfg.workers == "auto" or cfg.workers >= 0),
        ("extract.shard_videos", cfg.shard_videos, ">= 1", cfg.shard_videos >= 1),
        *((f"extract.levels.{name}.short_side", level.short_side, ">= 1", level.short_side >= 1)
          for name, level in cfg.levels.items()),
    ]
    problems = [f"{key} must be {rule}, got {value}" for key, value, rule, ok in rules if not ok]
    if problems:
        raise ConfigError("invalid extraction settings: " + "; ".join(problems))


def _run(videos: Iterable[tuple[str, str | Path]], store: FeatureStore, cfg: ExtractConfig, levels: tuple[str, ...],
         backbones: Backbones, pool: DecodePool | None, threads: int, progress: bool, summary: ExtractSummary) -> None:
    """Extract what ``_plan`` leaves to do, filling ``summary``."""
    with store.writer(flush_videos=cfg.shard_videos) as writer:
        jobs = _plan(videos, store, backbones, levels, summary)
        store.record_failures(summary.failed)  # the unreadable files, in one update
        tasks = [(i, job.path) for i, job in enumerate(jobs)]
        bar = tqdm(total=len(jobs), unit="video", disable=not progress, dynamic_ncols=True)
        try:
            events = pool.events(tasks) if pool else inline_events(
                tasks, DecodeOptions.from_config(cfg, device=str(backbones.device), threads=threads))
            for task, key, error in _assemble(events, jobs, backbones, cfg.batch_size, writer):
                if error is None:
                    summary.done.append(key)
                else:
                    summary.failed[key] = error
                    writer.fail(key, error)
                bar.update(1)
                bar.set_postfix(failed=len(summary.failed), refresh=False)
        finally:
            bar.close()
    summary.shards = writer.committed


def _plan(videos: Iterable[tuple[str, str | Path]], store: FeatureStore, backbones: Backbones,
          levels: tuple[str, ...], summary: ExtractSummary) -> list[_Job]:
    """The videos that need extracting; cached ones go to ``summary.skipped``, unreadable ones to ``failed``."""
    cached = store.cached()
    wanted = set(backbones.kinds(levels))
    jobs, seen = [], set()
    for key, path in videos:
        if key in seen:
            continue
        seen.add(key)
        try:
            size, mtime = file_signature(path)
        except OSError as exc:
            summary.failed[key] = f"{path}: video file not found or unreadable ({exc.strerror})"
            continue
        record = cached.get(key)
        job_levels = levels
        if record is not None:
            if record.same_file(path):
                if wanted <= set(record.kinds):
                    summary.skipped.append(key)
                    continue
                held = [k.removeprefix("spatial_") for k in record.kinds if k.startswith("spatial_")]
                job_levels = tuple(dict.fromkeys([*levels, *(h for h in held if h in backbones.short_sides)]))
            else:
                summary.stale.append(key)
        jobs.append(_Job(key, str(path), job_levels, size, mtime))
    return jobs


def _assemble(events: Iterable[Event], jobs: list[_Job], backbones: Backbones, batch_size: int,
              writer: ShardWriter) -> Iterator[tuple[int, str, str | None]]:
    """Turn decode events into stored videos; yield ``(task, key, error or None)`` as each video ends.

    A failure of one video (decoding, models, unusable rows) is yielded and the run goes on. A store that
    cannot be written raises: going on would only lose more work.
    """
    broken: set[int] = set()  # tasks whose model step failed: their remaining events are ignored
    for task, kind, payload in events:
        job = jobs[task]
        if task in broken:
            if kind in ("done", "failed"):
                broken.discard(task)
            continue
        if kind == "failed":
            yield task, job.key, str(payload)
            continue
        try:
            if kind == "info":
                job.info = payload
            elif kind == "chunk":
                job.add(payload, backbones, batch_size)
            else:
                record, rows = job.finish(backbones)
        except Exception as exc:  # noqa: BLE001 - any failure of one video must not stop the run
            if kind != "done":
                broken.add(task)
            yield task, job.key, describe(exc, job.path)
            continue
        if kind == "done":
            writer.add(record, rows)
            yield task, job.key, None
