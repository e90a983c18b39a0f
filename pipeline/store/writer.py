"""The shard writer: complete videos buffered in memory and committed as one immutable shard at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
import numpy as np

from pipeline.errors import StoreError
from pipeline.feature_kinds import in_store_order
from pipeline.store import failures, shards
from pipeline.store.video_records import VideoRecord, checked_rows


class ShardWriter:
    """Buffers complete videos and commits them as one immutable shard every so many videos or rows.

    Use as a context manager: leaving it (also on an exception such as Ctrl-C) commits the videos already
    added, so only a hard kill loses work, and then only the shard in progress.
    """

    def __init__(self, root: Path, settings_hash: str, flush_videos: int, flush_rows: int):
        """A writer into the store at ``root`` (made by :meth:`~pipeline.store.FeatureStore.writer`), whose shards
        carry ``settings_hash``."""
        if flush_videos < 1 or flush_rows < 1:
            raise StoreError(f"{root}: flush_videos and flush_rows must be >= 1")
        self.root = root
        self.settings_hash = settings_hash
        self.flush_videos = flush_videos
        self.flush_rows = flush_rows
        self.committed: list[Path] = []
        self.videos_committed = 0
        self._records: list[VideoRecord] = []
        self._arrays: dict[str, list[np.ndarray]] = {}
        self._seconds: list[np.ndarray] = []
        self._rows = 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.flush()

    def add(self, record: VideoRecord, features: Mapping[str, np.ndarray], seconds: Sequence[int]) -> None:
        """Buffer one video's features (``kind -> (rows, dim)``) and the second each row's chunk starts at
        (increasing, >= 0); commits a shard when the buffer is full."""
        arrays = self._validated(record, features)
        rows = len(next(iter(arrays.values())))
        starts = _checked_seconds(seconds, rows, f"{self.root}: video {record.key!r}")
        kinds = in_store_order(arrays)
        if self._records and (kinds != tuple(self._arrays) or record.key in {r.key for r in self._records}):
            self.flush()  # a shard holds one set of kinds and one copy of each key
        if not self._records:
            self._arrays = {k: [] for k in kinds}
        for kind in kinds:
            self._arrays[kind].append(arrays[kind])
        self._seconds.append(starts)
        self._records.append(dataclasses.replace(record, kinds=kinds))
        self._rows += rows
        if len(self._records) >= self.flush_videos or self._rows >= self.flush_rows:
            self.flush()

    def fail(self, key: str, error: str) -> None:
        """Record that ``key`` could not be extracted, with the reason (kept until it succeeds)."""
        failures.record_failures(self.root, {key: error})

    def flush(self) -> Path | None:
        """Commit the buffered videos as a shard now; returns its path (None when nothing was buffered)."""
        if not self._records:
            return None
        records, arrays, seconds = self._records, self._arrays, self._seconds
        self._records, self._arrays, self._seconds, self._rows = [], {}, [], 0
        try:
            path = shards.write_shard(self.root, self.settings_hash, records, arrays, np.concatenate(seconds))
        except StoreError as exc:
            raise StoreError(f"{exc}; kept: {self.videos_committed} video(s) in the {len(self.committed)} shard(s) "
                             f"this run completed, and every earlier shard; lost: the {len(records)} video(s) of this "
                             "shard") from exc
        self.committed.append(path)
        self.videos_committed += len(records)
        failures.record_failures(self.root, {}, succeeded=[r.key for r in records])
        return path

    def _validated(self, record: VideoRecord, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not record.key:
            raise StoreError(f"{self.root}: a video key must be a non-empty string")
        where = f"{self.root}: video {record.key!r}"
        arrays = checked_rows(features, where)
        for kind, array in arrays.items():
            if self._arrays.get(kind) and array.shape[1] != self._arrays[kind][0].shape[1]:
                raise StoreError(f"{where}: {kind} has width {array.shape[1]}, the shard so far "
                                 f"{self._arrays[kind][0].shape[1]}")
        return arrays


def _checked_seconds(seconds: Sequence[int], rows: int, where: str) -> np.ndarray:
    """``seconds`` as int32 after checking there is one per row, each >= 0 and later than the one before."""
    starts = np.asarray(seconds)
    if starts.shape != (rows,) or not np.issubdtype(starts.dtype, np.integer) or (starts < 0).any() \
            or (np.diff(starts) <= 0).any():
        raise StoreError(f"{where}: chunk start seconds must be {rows} increasing integers >= 0, one per row; "
                         f"got {starts.tolist()[:8]}")
    return starts.astype(np.int32)
