"""The store as one object: open (create or check its settings), what it holds, reading, writing, failures,
and setting damaged shards aside."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import DamagedShardError, ReadOnlyStoreError, StoreError
from pipeline.store import failures, reader, shards
from pipeline.store.manifest import MANIFEST, StoreSettings, create_or_check, read_settings
from pipeline.store.video_records import CHANGED, FeatureTable, VideoRecord, extraction_need
from pipeline.store.writer import ShardWriter

log = logging.getLogger(__name__)


class FeatureStore:
    """A directory of feature shards; see :mod:`pipeline.store` for the layout."""

    def __init__(self, root: Path, settings: StoreSettings, writable: bool):
        self.root = root
        self.settings = settings
        self.writable = writable
        self._index_cache: dict[str, reader.ShardIndex] = {}
        self._warned_unchecked = False

    @classmethod
    def open(cls, root: str | Path, settings: Mapping | None = None) -> FeatureStore:
        """Open the store at ``root``.

        With ``settings``: create the store if needed, or check they equal the manifest's
        (SettingsMismatchError naming the keys that differ); the store is then writable. Without: open an
        existing store read-only.
        """
        root = Path(root)
        if settings is not None:
            return cls(root, create_or_check(root, StoreSettings.of(settings)), writable=True)
        held = read_settings(root)
        if held is None:
            raise StoreError(f"{root}: no feature store here ({MANIFEST} missing); run extract_features.py first")
        return cls(root, held, writable=False)

    @property
    def read_only(self) -> bool:
        """True when this process cannot write the store's directory (a read-only mount, no permission)."""
        return not os.access(self.root, os.W_OK)

    def shards(self) -> list[Path]:
        """Complete shards, oldest first (ids start with a timestamp). ``.tmp`` files are never listed."""
        return sorted(self.root.glob(shards.SHARD_GLOB))

    def cached(self) -> dict[str, VideoRecord]:
        """Videos held by complete shards, newest copy of each key."""
        return {key: entry.record for key, entry in self._entries().items()}

    def stale(self, paths: Mapping[str, str | Path]) -> list[str]:
        """Keys of ``paths`` that are cached but whose file changed (size or mtime) since extraction."""
        cached = self.cached()
        return [key for key, path in paths.items() if extraction_need(cached.get(key), path) == CHANGED]

    def failures(self) -> dict[str, str]:
        """``key -> error`` of the videos whose latest extraction failed."""
        return failures.read_failures(self.root)

    def read(self, kinds: Sequence[str], keys: Sequence[str] | None = None) -> FeatureTable:
        """Features of ``kinds`` for ``keys`` (all cached keys, sorted, when None), in the order of ``keys``.

        Each shard is opened once and its rows are read in a few large blocks straight into the result
        arrays, so a training run pays for bytes, not for file opens.
        """
        entries = self._entries()
        return reader.read_features(self.root, entries, kinds, sorted(entries) if keys is None else list(keys))

    def chunk_seconds(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """``key -> the second each of its chunks starts at`` (int64, one per row, as the sampling plan chose them).

        Raises StoreError for a video in a shard written before the store recorded these seconds: no rule can
        recover them for every video (variable frame rates, ``max_chunks``), so such a store must be extracted
        anew to give per-second scores.
        """
        return reader.read_chunk_seconds(self.root, self._entries(), keys)

    def damaged(self, arrays: bool = False) -> list[DamagedShardError]:
        """The damage of every shard whose index (and with ``arrays``, whose rows) fail their checks, one error
        each. Checking the rows reads the whole store."""
        found = []
        for path in self.shards():
            try:
                index = self.shard_index(path)
                if arrays and index.checked:
                    by_key = {entry.record.key: entry for entry in index.entries}
                    reader.read_features(self.root, by_key, index.entries[0].record.kinds, list(by_key))
            except DamagedShardError as exc:
                found.append(exc)
        return found

    def set_aside(self, damage: DamagedShardError) -> Path:
        """Move a damaged shard into ``<store>/damaged/`` (kept for inspection), so that its videos count as not
        extracted; its new path. ReadOnlyStoreError when the store cannot be changed."""
        if self.read_only:
            raise ReadOnlyStoreError(f"{damage}; the store is read-only, so it cannot be moved aside here")
        self._index_cache.pop(damage.shard.name, None)
        moved = shards.set_aside(damage.shard)
        log.warning("%s: damaged (%s); moved to %s, its videos count as not extracted", damage.shard, damage.problem,
                    moved)
        return moved

    def writer(self, flush_videos: int = 32, flush_rows: int = 4096) -> ShardWriter:
        """A :class:`ShardWriter` that commits a shard every ``flush_videos`` videos or ``flush_rows`` rows."""
        if not self.writable:
            raise StoreError(f"{self.root}: opened read-only (no settings given); cannot write")
        if self.read_only:
            raise ReadOnlyStoreError(f"{self.root}: the store is read-only here; extract into a writable one "
                                     "(--store DIR)")
        shards.remove_orphans(self.root)
        return ShardWriter(self.root, self.settings.hash, flush_videos=flush_videos, flush_rows=flush_rows)

    def record_failures(self, errors: Mapping[str, str] | None = None, succeeded: Sequence[str] = ()) -> None:
        """Set the latest error of the keys in ``errors`` and drop the keys that ``succeeded``, atomically."""
        failures.record_failures(self.root, errors or {}, succeeded)

    def _entries(self) -> dict[str, reader.Entry]:
        entries: dict[str, reader.Entry] = {}
        unchecked = 0
        for path in self.shards():  # oldest first, so a newer copy of a key overwrites an older one
            index = self.shard_index(path)
            unchecked += not index.checked
            for entry in index.entries:
                entries[entry.record.key] = entry
        if unchecked and not self._warned_unchecked:
            self._warned_unchecked = True
            log.warning("%s: %d shard(s) were written before shards carried checksums (store format 1); they are "
                        "read without damage detection. Extract into a new store (--store) to have it.",
                        self.root, unchecked)
        return entries

    def shard_index(self, path: Path) -> reader.ShardIndex:
        """The videos one shard holds, its index checked (DamagedShardError naming it otherwise)."""
        if path.name not in self._index_cache:  # shards are immutable: each index is read once per store object
            self._index_cache[path.name] = reader.read_index(path, self.settings.hash)
        return self._index_cache[path.name]
