"""The feature store: extracted features on disk, written once, read fast, never half-written.

A store is a directory (docs/design.md, "Feature store"):

``manifest.json``
    The extraction settings, their hash and the library versions; read only by :mod:`.manifest`, which hands
    out the settings and their hash as one :class:`StoreSettings` (``FeatureStore.settings``). Opening a store
    with other settings raises :class:`~pipeline.errors.SettingsMismatchError` naming the keys that differ, so
    a changed setting is never served stale features.
``shard-<id>.h5``
    Immutable HDF5 files, each holding several videos: one contiguous ``(rows, dim)`` array per feature
    kind and an ``index/`` group (key, first row, row count, video properties, file size and mtime; and
    ``chunk_second``, one entry per row: the second of its video the chunk starts at; ``xxh3``, a checksum
    of each video's rows of each kind). Written all or nothing (:mod:`.shards`, :mod:`.writer`), checked
    and read in few large blocks (:mod:`.reader`): damage raises DamagedShardError naming the shard.
``failures.csv``
    ``key,error`` of videos that could not be extracted (latest reason; removed once a video succeeds),
    rewritten atomically under a file lock. (:mod:`.failures`)
``damaged/``
    Shards found damaged, moved aside for inspection (:meth:`FeatureStore.set_aside`).
``claims/``
    What each live extraction process works on, so that several share the work (:mod:`.claims`).

What a video's record holds, and when a video must be extracted again, is in :mod:`.video_records`.
"""

from pipeline.store.failures import FAILURES
from pipeline.store.feature_store import FeatureStore
from pipeline.store.manifest import FORMAT_VERSION, LOCK, MANIFEST, StoreSettings, library_versions
from pipeline.store.video_records import (
    CHANGED, LACKING, MISSING, FeatureTable, VideoRecord, checked_rows, extraction_need, file_signature,
)
from pipeline.store.shards import CHUNK_SECOND
from pipeline.store.writer import ShardWriter

__all__ = [
    "CHANGED", "CHUNK_SECOND", "FAILURES", "FORMAT_VERSION", "LACKING", "LOCK", "MANIFEST", "MISSING", "FeatureStore",
    "FeatureTable", "ShardWriter", "StoreSettings", "VideoRecord", "checked_rows", "extraction_need",
    "file_signature", "library_versions",
]
