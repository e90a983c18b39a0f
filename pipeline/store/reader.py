"""Reading shards back: each shard's index once, then many videos' rows in a few large reads per shard."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import StoreError
from pipeline.store.records import FEATURE_DIMS, FEATURE_DTYPES, FEATURE_KINDS, FeatureTable, VideoRecord
from pipeline.store.shards import CHUNK_SECOND, INDEX_NUMBERS

# Reads of one shard are planned in blocks: rows a few apart are read in one call with the gap thrown
# away (cheaper than another call), and a block never exceeds this many rows (bounds the scratch buffer).
MAX_GAP_ROWS = 16
MAX_BLOCK_ROWS = 4096


@dataclass(frozen=True)
class Entry:
    """Where the newest copy of a video lives."""

    shard: str
    row_start: int
    row_count: int
    record: VideoRecord


@contextmanager
def open_shard(path: Path) -> Iterator[h5py.File]:
    """A shard open for reading, without a lock (shards are immutable); StoreError when it cannot be read."""
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read shard: {exc}") from exc
    with f:
        yield f


def read_index(path: Path, settings_hash: str) -> list[Entry]:
    """The videos a shard holds; StoreError when it was written for a store of another settings hash."""
    with open_shard(path) as f:
        shard_hash = f.attrs.get("settings_hash")
        if shard_hash != settings_hash:
            raise StoreError(f"{path}: written with settings hash {shard_hash}, but the manifest has "
                             f"{settings_hash}; the shard belongs to another store")
        kinds = tuple(k for k in FEATURE_KINDS if k in f)
        ix = f["index"]
        columns = {col: ix[col][()] for col in INDEX_NUMBERS}
        keys = ix["key"].asstr()[()]
        decoders = ix["decoder"].asstr()[()]
    return [
        Entry(
            shard=path.name,
            row_start=int(columns["row_start"][i]),
            row_count=int(columns["row_count"][i]),
            record=VideoRecord(
                key=str(keys[i]), fps=float(columns["fps"][i]), frames=int(columns["frames"][i]),
                width=int(columns["width"][i]), height=int(columns["height"][i]),
                duration=float(columns["duration"][i]), decoder=str(decoders[i]),
                size=int(columns["size"][i]), mtime=float(columns["mtime"][i]), kinds=kinds,
            ),
        )
        for i in range(len(keys))
    ]


def read_features(root: Path, entries: Mapping[str, Entry], kinds: Sequence[str], keys: Sequence[str]) -> FeatureTable:
    """Features of ``kinds`` for ``keys``, in that order; StoreError naming what the store lacks."""
    unknown = [k for k in kinds if k not in FEATURE_KINDS]
    if unknown:
        raise StoreError(f"{root}: unknown feature kind(s) {unknown}; known: {list(FEATURE_KINDS)}")
    _check_held(root, entries, keys)
    lacking = [(k, kind) for k in keys for kind in kinds if kind not in entries[k].record.kinds]
    if lacking:
        key, kind = lacking[0]
        raise StoreError(
            f"{root}: {len(lacking)} (video, kind) pair(s) not extracted, e.g. {key!r} has no {kind!r} "
            f"(it has {list(entries[key].record.kinds)}); extract that level/kind first"
        )
    counts = np.array([entries[k].row_count for k in keys], dtype=np.int64)
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    by_shard: dict[str, list[tuple[int, int, int]]] = {}
    for key, dst in zip(keys, offsets[:-1]):
        entry = entries[key]
        by_shard.setdefault(entry.shard, []).append((entry.row_start, entry.row_count, int(dst)))
    features: dict[str, np.ndarray] = {}
    for shard, segments in by_shard.items():
        with open_shard(root / shard) as f:
            for kind in kinds:
                ds = f[kind]
                if kind not in features:
                    features[kind] = np.empty((int(offsets[-1]), ds.shape[1]), dtype=ds.dtype)
                read_segments(ds, segments, features[kind])
    for kind in kinds:  # no keys at all: still give each kind an empty array of the right width
        features.setdefault(kind, np.empty((0, FEATURE_DIMS.get(kind, 0)), dtype=FEATURE_DTYPES[kind]))
    return FeatureTable(keys=list(keys), offsets=offsets, features=features)


def read_chunk_seconds(root: Path, entries: Mapping[str, Entry], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """``key -> the second each of its chunks starts at`` (int64); StoreError for shards that lack them."""
    _check_held(root, entries, keys)
    by_shard: dict[str, list[str]] = {}
    for key in keys:
        by_shard.setdefault(entries[key].shard, []).append(key)
    seconds: dict[str, np.ndarray] = {}
    for shard, shard_keys in by_shard.items():
        with open_shard(root / shard) as f:
            if CHUNK_SECOND not in f["index"]:
                raise StoreError(
                    f"{root / shard}: written before stores recorded each chunk's start second, so its "
                    "videos have no per-second scores; extract them into a new store (--store NEW_DIR)")
            column = f["index"][CHUNK_SECOND][()]
        for key in shard_keys:
            entry = entries[key]
            seconds[key] = column[entry.row_start:entry.row_start + entry.row_count].astype(np.int64)
    return seconds


def read_segments(ds: h5py.Dataset, segments: list[tuple[int, int, int]], out: np.ndarray) -> None:
    """Copy ``(src_row, rows, dst_row)`` segments of ``ds`` into ``out`` with few, large reads.

    Segments are sorted by source row and grouped into blocks (gaps up to ``MAX_GAP_ROWS``, at most
    ``MAX_BLOCK_ROWS`` rows). A block whose rows land contiguously in ``out`` is read straight into it;
    any other block is read once into a scratch buffer and scattered.
    """
    segments = sorted(segments)
    i = 0
    while i < len(segments):
        start, rows, dst = segments[i]
        end, j, direct = start + rows, i + 1, True
        while j < len(segments):
            s, r, d = segments[j]
            if s - end > MAX_GAP_ROWS or max(end, s + r) - start > MAX_BLOCK_ROWS:
                break
            direct = direct and s == end and d - dst == s - start
            end, j = max(end, s + r), j + 1  # max: a key asked for twice overlaps itself
        if direct:
            ds.read_direct(out, np.s_[start:end], np.s_[dst:dst + end - start])
        else:
            block = ds[start:end]
            for s, r, d in segments[i:j]:
                out[d:d + r] = block[s - start:s - start + r]
        i = j


def _check_held(root: Path, entries: Mapping[str, Entry], keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in entries]
    if missing:
        raise StoreError(f"{root}: {len(missing)} video(s) not in the store, e.g. {missing[:5]}; "
                         "run extract_features.py on them first")
