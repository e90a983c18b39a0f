"""One extraction run: videos in, features into a store, a summary out; used by every command that extracts.

The flow (one module each): plan which videos the store lacks (:mod:`.plan`), decode them into chunks in
this process or in decoder processes (:mod:`.decoding`, :mod:`.decode_pool`, YUV planes through
:mod:`.plane_ring`), gather the chunks into backbone batches (:mod:`.batches`) that the device step moves
(:mod:`.device_step`), and hand each finished video to the store's writer (:mod:`.assemble`). Videos the
store already holds, from the same file, are skipped; a video that fails is recorded in the store's
``failures.csv`` and the run goes on.

With ``workers > 0`` decoding (and the weight-free NSS features) runs in that many separate processes
while this one runs the models, so a decoder that crashes or hangs on a bad file fails that video only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from pipeline.backbones import Backbones, resolve_device
from pipeline.backbones.device import recipe_for, usable_cpus
from pipeline.config import ExtractConfig
from pipeline.errors import ConfigError, ReadOnlyStoreError, UsageError
from pipeline.extract.assemble import assemble
from pipeline.extract.decode_pool import DecodePool, feed_plan
from pipeline.extract.decoding import DecodeOptions, inline_events
from pipeline.extract.heap import keep_freed_memory
from pipeline.extract.plan import ExtractSummary, claimed_tasks, plan_jobs
from pipeline.store import FeatureStore
from pipeline.store.claims import Claims


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
    keep_freed_memory()  # this process decodes (``workers: 0``) or prepares the chunks for the models
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
    """Extract what :func:`~.plan.plan_jobs` leaves to do, filling ``summary``; without a pool, decoding with
    ``options`` here.

    Damaged shards (their index always; with ``verify`` their rows too) are moved aside first, so their videos
    are extracted again. A store this process cannot write serves what it holds: with nothing to do the run
    succeeds, otherwise ReadOnlyStoreError says how many videos it lacks.
    """
    for damage in store.damaged(arrays=verify):
        store.set_aside(damage)
    wanted = set(backbones.kinds(levels))
    jobs = plan_jobs(videos, store, wanted, levels, backbones.short_sides, summary)
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
        tasks = claimed_tasks(jobs, store, claims, wanted, bar, summary)
        try:
            events = (pool.events(tasks) if pool
                      else inline_events(tasks, replace(options, device=str(backbones.device))))
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
