"""Reading shards back: each shard's index once (checked against its arrays), then many videos' rows in a few
large reads per shard, each video's rows checked against their XXH3-64 hash.

Every error while reading a shard names it: :class:`~pipeline.errors.DamagedShardError` when its bytes are
wrong (checksums, an index that does not tile its arrays, HDF5 metadata that does not parse, truncation),
StoreError when it cannot be opened at all (gone, no permission).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import DamagedShardError, StoreError, VQAError
from pipeline.feature_kinds import BY_NAME, KIND_NAMES
from pipeline.store.manifest import READABLE_FORMATS
from pipeline.store.video_records import FeatureTable, VideoRecord
from pipeline.store.shards import CHUNK_SECOND, ROW_CHECKSUMS, INDEX_DIGEST, INDEX_NUMBERS, index_digest, row_checksum

# Reads of one shard are planned in blocks: rows a few apart are read in one call with the gap thrown
# away (cheaper than another call), and a block never exceeds this many rows (bounds the scratch buffer).
MAX_GAP_ROWS = 16
MAX_BLOCK_ROWS = 4096
# Blocks are hashed right after they are read; 16 MiB keeps the HDF5 calls few, which costs more than the cache
# misses of a block outgrowing the CPU cache (BENCHMARKS.md, "Shard checksums").
MAX_BLOCK_BYTES = 1 << 24
# Errors opening a shard that say nothing about its bytes: it is gone (moved aside by another process) or
# this user may not read it.
_NOT_DAMAGE = (errno.ENOENT, errno.EACCES, errno.EPERM)


@dataclass(frozen=True)
class Entry:
    """Where the newest copy of a video lives, and the XXH3-64 of its rows of each of ``record.kinds``."""

    shard: str
    row_start: int
    row_count: int
    record: VideoRecord
    checksums: tuple[int, ...] = ()  # empty in shards of store format 1, written without checksums


@dataclass(frozen=True)
class ShardIndex:
    """A shard's videos; ``checked``: it carries checksums (format 2), so damage to it cannot be served."""

    entries: list[Entry]
    checked: bool


@contextmanager
def open_shard(path: Path) -> Iterator[h5py.File]:
    """A shard open for reading, without a lock (shards are immutable). Any error while it is open names it:
    DamagedShardError for what HDF5 cannot parse, StoreError when the file cannot be opened."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            yield f
    except VQAError:
        raise
    except OSError as exc:
        if exc.errno in _NOT_DAMAGE:
            raise StoreError(f"{path}: cannot read shard: {exc.strerror}") from exc
        raise DamagedShardError(path, _first_line(exc)) from exc
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DamagedShardError(path, _first_line(exc)) from exc


def read_index(path: Path, settings_hash: str) -> ShardIndex:
    """The videos a shard holds, once its index is checked (digest, and tiling its arrays exactly); StoreError
    when it was written for a store of another settings hash."""
    with open_shard(path) as f:
        shard_hash = f.attrs.get("settings_hash")
        if shard_hash != settings_hash:
            raise StoreError(f"{path}: written with settings hash {shard_hash}, but the manifest has "
                             f"{settings_hash}; the shard belongs to another store")
        version = int(f.attrs.get("format", 1))
        if version not in READABLE_FORMATS:
            raise StoreError(f"{path}: shard format {version}, this version reads {READABLE_FORMATS}")
        kinds = tuple(k for k in KIND_NAMES if k in f)
        shapes = {kind: (f[kind].shape, f[kind].dtype) for kind in kinds}
        ix = f["index"]
        columns = {col: ix[col][()] for col in INDEX_NUMBERS}
        keys = [str(k) for k in ix["key"].asstr()[()]]
        decoders = [str(d) for d in ix["decoder"].asstr()[()]]
        seconds = ix[CHUNK_SECOND][()] if CHUNK_SECOND in ix else None
        checked = version >= 2
        crcs = ix[ROW_CHECKSUMS][()] if checked else np.zeros((len(keys), 0), dtype=np.uint64)
        if checked and f.attrs.get(INDEX_DIGEST) != index_digest(keys, decoders, columns, seconds, crcs):
            raise DamagedShardError(path, "its index fails its checksum")
    problem = _index_problem(keys, decoders, columns, seconds, crcs if checked else None, shapes)
    if problem:
        raise DamagedShardError(path, problem)
    entries = [
        Entry(
            shard=path.name,
            row_start=int(columns["row_start"][i]),
            row_count=int(columns["row_count"][i]),
            record=VideoRecord(
                key=keys[i], fps=float(columns["fps"][i]), frames=int(columns["frames"][i]),
                width=int(columns["width"][i]), height=int(columns["height"][i]),
                duration=float(columns["duration"][i]), decoder=decoders[i],
                size=int(columns["size"][i]), mtime=float(columns["mtime"][i]), kinds=kinds,
            ),
            checksums=tuple(int(c) for c in crcs[i]),
        )
        for i in range(len(keys))
    ]
    return ShardIndex(entries, checked)


def _index_problem(keys: list[str], decoders: list[str], columns: Mapping[str, np.ndarray], seconds: np.ndarray | None,
                   crcs: np.ndarray | None, shapes: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> str | None:
    """What is wrong with an index against its arrays (None: nothing): one entry per video in every column, row
    ranges that tile the rows exactly and in order, every array (rows, its kind's width) in its kind's dtype."""
    videos = len(keys)
    if not videos or not shapes:
        return "it holds no videos or no feature arrays"
    if len(decoders) != videos or any(len(c) != videos for c in columns.values()) or len(set(keys)) != videos:
        return "its index columns disagree on the number of videos, or name a video twice"
    counts, starts = columns["row_count"], columns["row_start"]
    rows = int(counts.sum())
    if (counts < 1).any() or not np.array_equal(starts, np.concatenate([[0], np.cumsum(counts)[:-1]])):
        return "its index row ranges do not tile the rows in order"
    for kind, (shape, dtype) in shapes.items():
        spec = BY_NAME[kind]
        if len(shape) != 2 or shape[0] != rows or shape[1] != (spec.width or shape[1]) or dtype != spec.dtype:
            return f"{kind} is {shape} {dtype}, its index says {rows} rows of {spec.dtype}"
    if seconds is not None and seconds.shape != (rows,):
        return f"index/{CHUNK_SECOND} has {seconds.shape} entries for {rows} rows"
    if crcs is not None and crcs.shape != (videos, len(shapes)):
        return f"index/{ROW_CHECKSUMS} is {crcs.shape}, not one per video and kind"
    return None


def read_features(root: Path, entries: Mapping[str, Entry], kinds: Sequence[str], keys: Sequence[str]) -> FeatureTable:
    """Features of ``kinds`` for ``keys``, in that order; StoreError naming what the store lacks,
    DamagedShardError naming a shard whose rows fail their checksum."""
    unknown = [k for k in kinds if k not in BY_NAME]
    if unknown:
        raise StoreError(f"{root}: unknown feature kind(s) {unknown}; known: {list(KIND_NAMES)}")
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
    by_shard: dict[str, list[tuple[Entry, int]]] = {}
    for key, dst in zip(keys, offsets[:-1]):
        by_shard.setdefault(entries[key].shard, []).append((entries[key], int(dst)))
    features: dict[str, np.ndarray] = {}
    for shard, placed in by_shard.items():
        with open_shard(root / shard) as f:
            for kind in kinds:
                ds = f[kind]
                if kind not in features:
                    features[kind] = np.empty((int(offsets[-1]), ds.shape[1]), dtype=ds.dtype)
                read_segments(ds, [(e.row_start, e.row_count, dst) for e, dst in placed], features[kind],
                              _row_checker(root / shard, kind, placed, features[kind]))
    for kind in kinds:  # no keys at all: still give each kind an empty array of the right width
        features.setdefault(kind, np.empty((0, BY_NAME[kind].width or 0), dtype=BY_NAME[kind].dtype))
    return FeatureTable(keys=list(keys), offsets=offsets, features=features)


def _row_checker(shard: Path, kind: str, placed: list[tuple[Entry, int]],
                 out: np.ndarray) -> Callable[[list[tuple[int, int, int]]], None]:
    """What checks segments of ``kind`` just read into ``out`` against the checksum written with them, each video's
    rows once: raises DamagedShardError naming the shard and the video whose rows fail."""
    expected = {dst: entry for entry, dst in placed if entry.checksums}
    # A key asked for twice is copied twice out of one block (read_segments), so its second copy needs no hash.
    hashed: set[int] = set()

    def check(segments: list[tuple[int, int, int]]) -> None:
        for start, rows, dst in segments:
            entry = expected.get(dst)
            if entry is None or start in hashed:
                continue
            hashed.add(start)
            if row_checksum(out[dst:dst + rows]) != entry.checksums[entry.record.kinds.index(kind)]:
                raise DamagedShardError(shard, f"the {kind} rows of {entry.record.key!r} fail their checksum (XXH3-64)")

    return check


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'unreadable'}"


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


def read_segments(ds: h5py.Dataset, segments: list[tuple[int, int, int]], out: np.ndarray,
                  placed: Callable[[list[tuple[int, int, int]]], None] = lambda segments: None) -> None:
    """Copy ``(src_row, rows, dst_row)`` segments of ``ds`` into ``out`` with few, large reads; ``placed`` is called
    with the segments of each block as soon as they are in ``out`` (their rows are then still in the CPU cache).

    Segments are sorted by source row and grouped into blocks (gaps up to ``MAX_GAP_ROWS``, at most
    ``MAX_BLOCK_ROWS`` rows and, beyond one segment, ``MAX_BLOCK_BYTES``). A block whose rows land contiguously
    in ``out`` is read straight into it; any other block is read once into a scratch buffer and scattered.
    """
    segments = sorted(segments)
    block_rows = max(1, min(MAX_BLOCK_ROWS, MAX_BLOCK_BYTES // max(1, out[:1].nbytes)))
    i = 0
    while i < len(segments):
        start, rows, dst = segments[i]
        end, j, direct = start + rows, i + 1, True
        while j < len(segments):
            s, r, d = segments[j]
            if s - end > MAX_GAP_ROWS or max(end, s + r) - start > block_rows:
                break
            direct = direct and s == end and d - dst == s - start
            end, j = max(end, s + r), j + 1  # max: a key asked for twice overlaps itself
        if direct:
            ds.read_direct(out, np.s_[start:end], np.s_[dst:dst + end - start])
        else:
            block = ds[start:end]
            for s, r, d in segments[i:j]:
                out[d:d + r] = block[s - start:s - start + r]
        placed(segments[i:j])
        i = j


def _check_held(root: Path, entries: Mapping[str, Entry], keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in entries]
    if missing:
        raise StoreError(f"{root}: {len(missing)} video(s) not in the store, e.g. {missing[:5]}; "
                         "run extract_features.py on them first")
