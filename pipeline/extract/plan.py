"""Planning a run: which videos the store lacks (and at which levels), one :class:`VideoJob` each, claimed one at
a time so that several extraction processes on one store share the work; and what the run did."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.errors import CorruptVideoError
from pipeline.feature_kinds import held_levels
from pipeline.store import CHANGED, LACKING, FeatureStore, VideoRecord, checked_rows, extraction_need, file_signature
from pipeline.store.claims import Claims
from pipeline.video import VideoInfo


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


@dataclass(eq=False)
class VideoJob:
    """One video being extracted: what it is, its rows as the batches deliver them, and how it ended."""

    key: str
    path: str
    levels: tuple[str, ...]
    size: int
    mtime: float
    info: VideoInfo | None = None
    error: str | None = None
    rows: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    seconds: list[int] = field(default_factory=list)  # the second each chunk starts at, in chunk order

    @property
    def chunks(self) -> int:
        """Chunks received so far (each brought its start second)."""
        return len(self.seconds)

    def has_all_rows(self, kinds: Iterable[str]) -> bool:
        return all(len(self.rows.get(kind, ())) == self.chunks for kind in kinds)

    def result(self) -> tuple[VideoRecord, dict[str, np.ndarray], list[int]]:
        """The video's record, rows and chunk start seconds, rows checked as the store requires (StoreError:
        this video fails)."""
        info = self.info
        if info is None or not self.chunks:
            raise CorruptVideoError(self.path, "no chunks could be decoded")
        record = VideoRecord(key=self.key, fps=info.fps, frames=info.frames, width=info.width, height=info.height,
                             duration=info.duration, decoder=info.decoder, size=self.size, mtime=self.mtime)
        rows = {kind: np.stack([rows[i] for i in range(self.chunks)]) for kind, rows in self.rows.items()}
        self.rows = {}  # the arrays go to the writer, not kept here
        return record, checked_rows(rows, self.path), self.seconds


def plan_jobs(videos: Iterable[tuple[str, str | Path]], store: FeatureStore, wanted: set[str],
              levels: tuple[str, ...], known_levels: Iterable[str], summary: ExtractSummary) -> list[VideoJob]:
    """The videos that need extracting to hold the ``wanted`` kinds; cached ones go to ``summary.skipped``,
    unreadable ones to ``failed``. A cached video lacking a kind is extracted at ``levels`` plus the levels it
    holds (of ``known_levels``), so none is lost."""
    cached = store.cached()
    known_levels = set(known_levels)
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
        elif need == LACKING:
            held = [level for level in held_levels(record.kinds) if level in known_levels]
            job_levels = tuple(dict.fromkeys([*levels, *held]))
        jobs.append(VideoJob(key, str(path), job_levels, size, mtime))
    return jobs


def claimed_tasks(jobs: list[VideoJob], store: FeatureStore, claims: Claims, wanted: set[str], bar: tqdm,
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
