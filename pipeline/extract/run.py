"""One extraction run: videos in, features into a store, a summary out; used by every command that extracts.

Per video: decode one-second chunks (streaming, bounded memory), batch them (:mod:`pipeline.batches`; on a
GPU batches span videos), run the spatial backbone on the key frames at each requested level and the
temporal backbone on the clips, and hand the rows to a :class:`~pipeline.store.ShardWriter`. Videos the
store already holds, from the same file, are skipped; a video that fails is recorded in the store's
``failures.csv`` and the run goes on.

With ``workers > 0`` decoding (and the weight-free NSS features) runs in that many separate processes
while this one runs the models, so a decoder that crashes or hangs on a bad file fails that video only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from pipeline.backbones import SpatialExtractor, TemporalExtractor, resolve_device
from pipeline.backbones.device import Recipe, recipe_for, usable_cpus
from pipeline.batches import Video, assemble
from pipeline.config import ExtractConfig
from pipeline.decode_pool import DecodeOptions, DecodePool, feed_plan, inline_events
from pipeline.errors import ConfigError, ReadOnlyStoreError, UsageError
from pipeline.features import FeatureSettings
from pipeline.store import CHANGED, LACKING, FeatureStore, extraction_need, file_signature
from pipeline.store.claims import Claims
from pipeline.video import resize_short_side


@dataclass
class ExtractSummary:
    """What a run did: keys extracted, skipped (already cached), re-extracted because the file changed, failed."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    elsewhere: list[str] = field(default_factory=list)  # claimed by another live extraction process
    shards: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        stale = f" ({len(self.stale)} of them changed since cached)" if self.stale else ""
        elsewhere = f", left {len(self.elsewhere)} to other running extractions" if self.elsewhere else ""
        return (f"extracted {len(self.done)}{stale}, skipped {len(self.skipped)} (cached), failed "
                f"{len(self.failed)}{elsewhere} in {self.seconds:.1f} s; {len(self.shards)} new shard(s)")


class Backbones:
    """The models of one extraction config, built once and reused for every video (and by score/Dask runs)."""

    def __init__(self, cfg: ExtractConfig, recipe: Recipe | None = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.recipe = recipe or recipe_for(self.device)  # another recipe: tests of the GPU path on a CPU
        self.short_sides = {name: level.short_side for name, level in cfg.levels.items()}
        self.spatial = SpatialExtractor(cfg.weights, self.device, recipe=self.recipe) if cfg.levels else None
        self.temporal = TemporalExtractor(cfg.weights, self.device, recipe=self.recipe) if cfg.temporal else None
        # Everything that shapes the feature values: a store refuses to mix runs where any of it differs.
        self.settings = FeatureSettings.from_config(
            cfg, spatial_weights=self.spatial.weights_id if self.spatial else None,
            temporal_weights=self.temporal.weights_id if self.temporal else None,
            precision=self.recipe.precision)

    def kinds(self, levels: Iterable[str]) -> tuple[str, ...]:
        """The store kinds a video extracted at ``levels`` holds."""
        return self.settings.kinds(levels)

    def spatial_batch(self, key_frames: torch.Tensor, level: str) -> torch.Tensor:
        """float32 (N, 7168) rows, left on the device, of uint8 key frames (N, 3, H, W) already there."""
        return self.spatial.forward_on_device(resize_short_side(key_frames, self.short_sides[level]))

    def temporal_batch(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (slow, fast) rows, left on the device, of uint8 clips (N, T, 3, S, S) already there."""
        return self.temporal.forward_on_device(clips.float().div_(255))


def extract_videos(
    videos: Iterable[tuple[str, str | Path]],
    store: str | Path,
    cfg: ExtractConfig,
    *,
    levels: Sequence[str] | None = None,
    backbones: Backbones | None = None,
    progress: bool = True,
    verify: bool = False,
) -> ExtractSummary:
    """Extract ``(key, path)`` videos into the store at ``store``; return what was done, skipped and failed.

    ``levels``: spatial levels to extract (default: every level of ``cfg.levels``). A cached video lacking
    one is extracted again with its old levels plus the new ones. ``backbones``: reuse models already built
    for ``cfg``. ``verify``: also check every stored row against its checksum (reads the whole store), so that
    shards with damaged rows are set aside and their videos extracted again (damaged indexes always are).
    Per-video failures are recorded in the store and in the summary; nothing is raised for them.
    """
    start = time.perf_counter()
    check_config(cfg)
    levels = tuple(cfg.levels) if levels is None else tuple(dict.fromkeys(levels))
    unknown = [level for level in levels if level not in cfg.levels]
    if unknown:
        raise UsageError(f"unknown level(s) {unknown}; the config defines {sorted(cfg.levels)}")
    videos = list(videos)
    device = resolve_device(cfg.device)
    workers, threads = feed_plan(cfg.workers, usable_cpus(), cuda=device.type == "cuda",
                                 models=bool(cfg.levels or cfg.temporal))
    planes = (backbones.recipe if backbones else recipe_for(device)).clips_on_device
    # Decoder processes first: they start up while the models are built.
    options = DecodeOptions.from_config(cfg, threads=threads, planes=planes)
    pool = DecodePool(workers, options, device=device) if workers and videos else None
    try:
        backbones = backbones or Backbones(cfg)
        if not backbones.kinds(levels):
            raise UsageError("nothing to extract: no spatial level, extract.temporal and extract.nss both off")
        summary = ExtractSummary()
        _run(videos, FeatureStore.open(store, backbones.settings.to_dict()), cfg, levels, backbones, pool, options,
             progress, verify, summary)
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
         backbones: Backbones, pool: DecodePool | None, options: DecodeOptions, progress: bool, verify: bool,
         summary: ExtractSummary) -> None:
    """Extract what ``_plan`` leaves to do, filling ``summary``; without a pool, decoding with ``options`` here.

    Damaged shards (their index always; with ``verify`` their rows too) are moved aside first, so their videos
    are extracted again. A store this process cannot write serves what it holds: with nothing to do the run
    succeeds, otherwise ReadOnlyStoreError says how many videos it lacks.
    """
    for damage in store.damaged(arrays=verify):
        store.set_aside(damage)
    jobs = _plan(videos, store, backbones, levels, summary)
    lacking = [job.key for job in jobs] + list(summary.failed)
    if not lacking:
        return
    if store.read_only:
        raise ReadOnlyStoreError(f"{store.root}: the store is read-only here and lacks {len(lacking)} of the videos "
                                 f"(e.g. {lacking[0]!r}); extract them into a writable store (--store DIR)")
    # Claims are released only once the writer has committed the last shard (the with statement exits in reverse).
    with Claims(store.root) as claims, store.writer(flush_videos=cfg.shard_videos) as writer:
        store.record_failures(summary.failed)  # the unreadable files, in one update
        bar = tqdm(total=len(jobs), unit="video", disable=not progress, dynamic_ncols=True)
        tasks = _claimed(jobs, store, claims, set(backbones.kinds(levels)), bar, summary)
        try:
            events = pool.events(tasks) if pool else inline_events(tasks, replace(options, device=str(backbones.device)))
            for key, error in assemble(events, jobs, backbones, cfg.batch_size, writer):
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


def _claimed(jobs: list[Video], store: FeatureStore, claims: Claims, wanted: set[str], bar: tqdm,
             summary: ExtractSummary) -> Iterator[tuple[int, str]]:
    """``(task, path)`` of the jobs this process claims, one at a time as the decoders ask for the next, so that
    concurrent processes on one store share the work; jobs claimed or finished by another process are left.

    Torch threads are set before each video to this process's share of the cores among the extractions of
    this host on this store (never above the starting count), so several processes do not oversubscribe them.
    """
    threads = torch.get_num_threads()
    for task, job in enumerate(jobs):
        if not claims.take(job.key):
            summary.elsewhere.append(job.key)
        elif extraction_need(store.cached().get(job.key), job.path, wanted) is None:
            summary.skipped.append(job.key)  # another process stored it after this one planned
        else:
            torch.set_num_threads(max(1, threads // claims.extractors_here()))
            yield task, job.path
            continue
        bar.update(1)


def _plan(videos: Iterable[tuple[str, str | Path]], store: FeatureStore, backbones: Backbones,
          levels: tuple[str, ...], summary: ExtractSummary) -> list[Video]:
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
        need = extraction_need(record, path, wanted)
        if need is None:
            summary.skipped.append(key)
            continue
        job_levels = levels
        if need == CHANGED:
            summary.stale.append(key)
        elif need == LACKING:  # extract again with the levels it holds as well, so none is lost
            held = [k.removeprefix("spatial_") for k in record.kinds if k.startswith("spatial_")]
            job_levels = tuple(dict.fromkeys([*levels, *(h for h in held if h in backbones.short_sides)]))
        jobs.append(Video(key, str(path), job_levels, size, mtime))
    return jobs
