"""The feature store: extracted features on disk, written once, read fast, never half-written.

A store is a directory:

``manifest.json``
    The extraction settings, their hash and the library versions. Opening a store with other settings
    raises :class:`StoreError` naming the keys that differ, so a changed setting is never served stale
    features.
``shard-<id>.h5``
    Immutable HDF5 files, each holding several videos: one contiguous ``(rows, dim)`` array per feature
    kind and an ``index/`` group (key, first row, row count, video properties, file size and mtime; and
    ``chunk_second``, one entry per row: the second of its video the chunk starts at). A
    shard is written as ``shard-<id>.h5.tmp`` and renamed only once complete and synced, so a killed
    writer loses at most the shard in progress and a reader never sees a partial one. Ids start with a
    nanosecond timestamp and carry host, pid and a random part: concurrent writers on any number of
    machines never collide, and sorting ids orders shards by age (the newest copy of a key wins).
``failures.csv``
    ``key,error`` of videos that could not be extracted (latest reason; removed once a video succeeds),
    rewritten atomically under a file lock.
"""

from __future__ import annotations

import csv
import fcntl
import functools
import hashlib
import io
import json
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from pipeline import __version__
from pipeline.errors import SettingsMismatchError, StoreError
from pipeline.files import write_atomic
from pipeline.trees import canonical, differences

FEATURE_KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast", "nss")
#: Width of each fixed-size kind; ``nss`` has whatever width its extractor gives (checked per store).
FEATURE_DIMS = {"spatial_coarse": 7168, "spatial_fine": 7168, "temporal_slow": 2048, "temporal_fast": 256}
#: On-disk dtype of each kind: the CNN features are float16 (half the bytes to read), nss keeps float32.
FEATURE_DTYPES = {kind: np.dtype(np.float16) for kind in FEATURE_DIMS} | {"nss": np.dtype(np.float32)}

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FAILURES = "failures.csv"
LOCK = ".lock"
_SHARD_GLOB = "shard-*.h5"
_INDEX_NUMBERS = {  # index/<name> columns besides key and decoder, with their on-disk dtypes
    "row_start": np.int64, "row_count": np.int64, "fps": np.float64, "frames": np.int64, "width": np.int64,
    "height": np.int64, "duration": np.float64, "size": np.int64, "mtime": np.float64,
}
#: Reasons :func:`extraction_need` gives.
MISSING, CHANGED, LACKING = "missing", "changed", "lacking kinds"
#: Per-row index column: the second each chunk starts at (shards written before it existed lack it).
CHUNK_SECOND = "chunk_second"
_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
_FLOAT16_MAX = float(np.finfo(np.float16).max)
# Reads of one shard are planned in blocks: rows a few apart are read in one call with the gap thrown
# away (cheaper than another call), and a block never exceeds this many rows (bounds the scratch buffer).
_MAX_GAP_ROWS = 16
_MAX_BLOCK_ROWS = 4096


@dataclass(frozen=True)
class VideoRecord:
    """One video as a shard indexes it: decoded properties plus the file signature it was extracted from."""

    key: str
    fps: float
    frames: int
    width: int
    height: int
    duration: float
    decoder: str
    size: int
    mtime: float
    kinds: tuple[str, ...] = ()

    def same_file(self, path: str | Path) -> bool:
        """True when ``path`` still has the size and mtime this record was extracted from."""
        try:
            size, mtime = file_signature(path)
        except OSError:
            return False
        return size == self.size and abs(mtime - self.mtime) < 1e-6


@dataclass
class FeatureTable:
    """Features of many videos: one contiguous array per kind, rows of ``keys[i]`` at ``offsets[i]:offsets[i+1]``."""

    keys: list[str]
    offsets: np.ndarray
    features: dict[str, np.ndarray]
    _positions: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def rows(self, key: str) -> slice:
        """The row slice of ``key`` in every array of :attr:`features`."""
        if not self._positions:
            self._positions = {k: i for i, k in enumerate(self.keys)}
        i = self._positions[key]
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


@dataclass(frozen=True)
class _Entry:
    """Where the newest copy of a video lives."""

    shard: str
    row_start: int
    row_count: int
    record: VideoRecord


def file_signature(path: str | Path) -> tuple[int, float]:
    """``(size in bytes, mtime in seconds)`` of a file: what tells a replaced video from the one extracted."""
    st = os.stat(path)
    return st.st_size, st.st_mtime


def extraction_need(record: VideoRecord | None, path: str | Path, kinds: Iterable[str] = ()) -> str | None:
    """Why the video at ``path`` must be extracted, given the store's ``record`` of it; None when it need not be.

    :data:`MISSING`: the store holds no copy (never extracted, or every extraction failed); :data:`CHANGED`: the
    file's size or mtime differ from the copy's (replaced since); :data:`LACKING`: the copy lacks some of
    ``kinds``. Extraction, the Dask client and scoring all decide with this function.
    """
    if record is None:
        return MISSING
    if not record.same_file(path):
        return CHANGED
    return LACKING if not set(kinds) <= set(record.kinds) else None


def settings_hash(settings: Mapping) -> str:
    """SHA-256 of the canonical JSON of ``settings`` (sorted keys, no whitespace)."""
    return hashlib.sha256(canonical(settings).encode("utf-8")).hexdigest()


@functools.cache
def library_versions() -> dict[str, str]:
    """Versions of what shapes the features, recorded in the manifest and each shard for provenance."""
    versions = {"python": sys.version.split()[0], "pipeline": __version__}
    for dist in ("numpy", "h5py", "torch", "torchvision", "decord", "av"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


class FeatureStore:
    """A directory of feature shards; see the module docstring for the layout."""

    def __init__(self, root: Path, manifest: dict, writable: bool):
        self.root = root
        self.manifest = manifest
        self.settings: dict = manifest["settings"]
        self.writable = writable
        self._index_cache: dict[str, list[_Entry]] = {}

    @classmethod
    def open(cls, root: str | Path, settings: Mapping | None = None) -> FeatureStore:
        """Open the store at ``root``.

        With ``settings``: create the store if needed, or check they equal the manifest's (StoreError
        naming the keys that differ); the store is then writable. Without: open an existing store read-only.
        """
        root = Path(root)
        if settings is None:
            manifest = _read_manifest(root)
            if manifest is None:
                raise StoreError(f"{root}: no feature store here ({MANIFEST} missing); run extract_features.py first")
            return cls(root, manifest, writable=False)
        settings = json.loads(canonical(settings))
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{root}: cannot create the feature store: {exc}") from exc
        with _locked(root):
            manifest = _read_manifest(root)
            if manifest is None:
                manifest = {
                    "format": FORMAT_VERSION,
                    "settings": settings,
                    "settings_hash": settings_hash(settings),
                    "versions": dict(library_versions()),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                _write_atomic(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        differing = differences(manifest["settings"], settings)
        if differing:
            listed = "\n".join(f"  - {d}" for d in differing)
            raise SettingsMismatchError(
                f"{root}: the store was made with other extraction settings; use another --store or the "
                f"store's settings. Differing keys (store vs. this run):\n{listed}"
            )
        return cls(root, manifest, writable=True)

    def shards(self) -> list[Path]:
        """Complete shards, oldest first (ids start with a timestamp). ``.tmp`` files are never listed."""
        return sorted(self.root.glob(_SHARD_GLOB))

    def cached(self) -> dict[str, VideoRecord]:
        """Videos held by complete shards, newest copy of each key."""
        return {key: entry.record for key, entry in self._entries().items()}

    def stale(self, paths: Mapping[str, str | Path]) -> list[str]:
        """Keys of ``paths`` that are cached but whose file changed (size or mtime) since extraction."""
        cached = self.cached()
        return [key for key, path in paths.items() if extraction_need(cached.get(key), path) == CHANGED]

    def failures(self) -> dict[str, str]:
        """``key -> error`` of the videos whose latest extraction failed."""
        path = self.root / FAILURES
        if not path.exists():
            return {}
        with open(path, newline="", encoding="utf-8") as f:
            return {row["key"]: row["error"] for row in csv.DictReader(f)}

    def read(self, kinds: Sequence[str], keys: Sequence[str] | None = None) -> FeatureTable:
        """Features of ``kinds`` for ``keys`` (all cached keys, sorted, when None), in the order of ``keys``.

        Each shard is opened once and its rows are read in a few large blocks straight into the result
        arrays, so a training run pays for bytes, not for file opens.
        """
        unknown = [k for k in kinds if k not in FEATURE_KINDS]
        if unknown:
            raise StoreError(f"{self.root}: unknown feature kind(s) {unknown}; known: {list(FEATURE_KINDS)}")
        entries = self._entries()
        keys = sorted(entries) if keys is None else list(keys)
        missing = [k for k in keys if k not in entries]
        if missing:
            raise StoreError(
                f"{self.root}: {len(missing)} video(s) not in the store, e.g. {missing[:5]}; "
                "run extract_features.py on them first"
            )
        lacking = [(k, kind) for k in keys for kind in kinds if kind not in entries[k].record.kinds]
        if lacking:
            key, kind = lacking[0]
            raise StoreError(
                f"{self.root}: {len(lacking)} (video, kind) pair(s) not extracted, e.g. {key!r} has no {kind!r} "
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
            with self._open_shard(shard) as f:
                for kind in kinds:
                    ds = f[kind]
                    if kind not in features:
                        features[kind] = np.empty((int(offsets[-1]), ds.shape[1]), dtype=ds.dtype)
                    _read_segments(ds, segments, features[kind])
        for kind in kinds:  # no keys at all: still give each kind an empty array of the right width
            features.setdefault(kind, np.empty((0, FEATURE_DIMS.get(kind, 0)), dtype=FEATURE_DTYPES[kind]))
        return FeatureTable(keys=keys, offsets=offsets, features=features)

    def chunk_seconds(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """``key -> the second each of its chunks starts at`` (int64, one per row, as the sampling plan chose them).

        Raises StoreError for a video in a shard written before the store recorded these seconds: no rule can
        recover them for every video (variable frame rates, ``max_chunks``), so such a store must be extracted
        anew to give per-second scores.
        """
        entries = self._entries()
        missing = [k for k in keys if k not in entries]
        if missing:
            raise StoreError(f"{self.root}: {len(missing)} video(s) not in the store, e.g. {missing[:5]}")
        by_shard: dict[str, list[str]] = {}
        for key in keys:
            by_shard.setdefault(entries[key].shard, []).append(key)
        seconds: dict[str, np.ndarray] = {}
        for shard, shard_keys in by_shard.items():
            with self._open_shard(shard) as f:
                if CHUNK_SECOND not in f["index"]:
                    raise StoreError(
                        f"{self.root / shard}: written before stores recorded each chunk's start second, so its "
                        "videos have no per-second scores; extract them into a new store (--store NEW_DIR)")
                column = f["index"][CHUNK_SECOND][()]
            for key in shard_keys:
                entry = entries[key]
                seconds[key] = column[entry.row_start:entry.row_start + entry.row_count].astype(np.int64)
        return seconds

    def writer(self, flush_videos: int = 32, flush_rows: int = 4096) -> ShardWriter:
        """A :class:`ShardWriter` that commits a shard every ``flush_videos`` videos or ``flush_rows`` rows."""
        if not self.writable:
            raise StoreError(f"{self.root}: opened read-only (no settings given); cannot write")
        self._remove_orphans()
        return ShardWriter(self, flush_videos=flush_videos, flush_rows=flush_rows)

    def record_failures(self, errors: Mapping[str, str] | None = None, succeeded: Sequence[str] = ()) -> None:
        """Set the latest error of the keys in ``errors`` and drop the keys that ``succeeded``, atomically."""
        errors = errors or {}
        if not errors and not self.failures().keys() & set(succeeded):
            return  # nothing to change: skip the lock and the rewrite (the common case after a clean shard)
        with _locked(self.root):
            current = self.failures()
            for key in succeeded:
                current.pop(key, None)
            current.update({key: " ".join(str(error).split()) for key, error in errors.items()})  # one line each
            out = io.StringIO()
            w = csv.writer(out, lineterminator="\n")
            w.writerow(["key", "error"])
            w.writerows(sorted(current.items()))
            _write_atomic(self.root / FAILURES, out.getvalue())

    # -- internals ---------------------------------------------------------------------------------

    def _entries(self) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        for path in self.shards():  # oldest first, so a newer copy of a key overwrites an older one
            for entry in self._shard_index(path.name):
                entries[entry.record.key] = entry
        return entries

    def _shard_index(self, name: str) -> list[_Entry]:
        """The index of one shard; shards are immutable, so it is read once per store object."""
        if name not in self._index_cache:
            with self._open_shard(name) as f:
                shard_hash = f.attrs.get("settings_hash")
                if shard_hash != self.manifest["settings_hash"]:
                    raise StoreError(
                        f"{self.root / name}: written with settings hash {shard_hash}, but the manifest has "
                        f"{self.manifest['settings_hash']}; the shard belongs to another store"
                    )
                kinds = tuple(k for k in FEATURE_KINDS if k in f)
                ix = f["index"]
                columns = {col: ix[col][()] for col in _INDEX_NUMBERS}
                keys = ix["key"].asstr()[()]
                decoders = ix["decoder"].asstr()[()]
            self._index_cache[name] = [
                _Entry(
                    shard=name,
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
        return self._index_cache[name]

    @contextmanager
    def _open_shard(self, name: str) -> Iterator[h5py.File]:
        path = self.root / name
        try:
            f = h5py.File(path, "r", locking=False)  # shards are immutable: no lock needed to read them
        except OSError as exc:
            raise StoreError(f"{path}: cannot read shard: {exc}") from exc
        with f:
            yield f

    def _remove_orphans(self) -> None:
        """Delete ``.tmp`` shards left by dead processes of this host (their work is lost anyway)."""
        for tmp in self.root.glob(_SHARD_GLOB + ".tmp"):
            host, pid = _shard_owner(tmp.name)
            if host == _HOST and pid is not None and not _pid_alive(pid):
                tmp.unlink(missing_ok=True)


class ShardWriter:
    """Buffers complete videos and commits them as one immutable shard every so many videos or rows.

    Use as a context manager: leaving it (also on an exception such as Ctrl-C) commits the videos already
    added, so only a hard kill loses work, and then only the shard in progress.
    """

    def __init__(self, store: FeatureStore, flush_videos: int, flush_rows: int):
        if flush_videos < 1 or flush_rows < 1:
            raise StoreError(f"{store.root}: flush_videos and flush_rows must be >= 1")
        self.store = store
        self.flush_videos = flush_videos
        self.flush_rows = flush_rows
        self.committed: list[Path] = []
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
        starts = _checked_seconds(seconds, len(next(iter(arrays.values()))), f"{self.store.root}: video {record.key!r}")
        kinds = tuple(k for k in FEATURE_KINDS if k in arrays)
        if self._records and (kinds != tuple(self._arrays) or record.key in {r.key for r in self._records}):
            self.flush()  # a shard holds one set of kinds and one copy of each key
        if not self._records:
            self._arrays = {k: [] for k in kinds}
        for kind in kinds:
            self._arrays[kind].append(arrays[kind])
        self._seconds.append(starts)
        self._records.append(_replace_kinds(record, kinds))
        self._rows += len(next(iter(arrays.values())))
        if len(self._records) >= self.flush_videos or self._rows >= self.flush_rows:
            self.flush()

    def fail(self, key: str, error: str) -> None:
        """Record that ``key`` could not be extracted, with the reason (kept until it succeeds)."""
        self.store.record_failures({key: error})

    def flush(self) -> Path | None:
        """Commit the buffered videos as a shard now; returns its path (None when nothing was buffered)."""
        if not self._records:
            return None
        records, arrays, seconds = self._records, self._arrays, self._seconds
        self._records, self._arrays, self._seconds, self._rows = [], {}, [], 0
        path = _write_shard(self.store, records, arrays, np.concatenate(seconds))
        self.committed.append(path)
        self.store.record_failures(succeeded=[r.key for r in records])
        return path

    def _validated(self, record: VideoRecord, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not record.key:
            raise StoreError(f"{self.store.root}: a video key must be a non-empty string")
        where = f"{self.store.root}: video {record.key!r}"
        arrays = checked_rows(features, where)
        for kind, array in arrays.items():
            if self._arrays.get(kind) and array.shape[1] != self._arrays[kind][0].shape[1]:
                raise StoreError(f"{where}: {kind} has width {array.shape[1]}, the shard so far "
                                 f"{self._arrays[kind][0].shape[1]}")
        return arrays


def checked_rows(features: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """``features`` in their on-disk dtypes, after checking what a shard requires of one video's rows.

    Known kinds, (rows, dim) of the right width, the same non-zero row count for every kind, finite values
    within float16 range. Raises StoreError starting with ``where``. Extraction calls this before handing
    rows to the writer, so bad rows fail their video, while a store that cannot be written ends the run.
    """
    if not features:
        raise StoreError(f"{where}: no features given")
    rows = {len(a) for a in features.values()}
    if len(rows) != 1 or 0 in rows:
        raise StoreError(f"{where}: every kind needs the same, non-zero number of rows; got "
                         f"{ {k: np.shape(a) for k, a in features.items()} }")
    arrays: dict[str, np.ndarray] = {}
    for kind, array in features.items():
        if kind not in FEATURE_KINDS:
            raise StoreError(f"{where}: unknown feature kind {kind!r}; known: {list(FEATURE_KINDS)}")
        array = np.asarray(array)
        if array.ndim != 2 or (kind in FEATURE_DIMS and array.shape[1] != FEATURE_DIMS[kind]):
            raise StoreError(f"{where}: {kind} must be (rows, {FEATURE_DIMS.get(kind, 'N')}), got {array.shape}")
        if not np.isfinite(array).all() or (FEATURE_DTYPES[kind] == np.float16 and np.abs(array).max() > _FLOAT16_MAX):
            raise StoreError(f"{where}: {kind} holds non-finite values or values beyond float16 range")
        arrays[kind] = array.astype(FEATURE_DTYPES[kind], copy=False)
    return arrays


# -- module helpers ---------------------------------------------------------------------------------

def _read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the manifest: {exc}") from exc
    try:
        manifest = json.loads(text)
        if manifest["format"] != FORMAT_VERSION:
            raise StoreError(f"{path}: store format {manifest['format']}, this version reads {FORMAT_VERSION}")
        manifest["settings"], manifest["settings_hash"]  # noqa: B018 - both must be present
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path}: not a valid store manifest ({exc})") from exc
    return manifest


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Exclusive advisory lock on the store directory (manifest creation, failures.csv updates)."""
    with open(root / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` all at once; StoreError (and the old file kept) when it cannot be written."""
    try:
        write_atomic(path, text)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StoreError(f"{path}: cannot write: {exc}") from exc


def _new_shard_id() -> str:
    return f"{time.time_ns():020d}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def _shard_owner(name: str) -> tuple[str | None, int | None]:
    """``(host, pid)`` encoded in a shard file name (None, None when it does not follow the pattern)."""
    match = re.fullmatch(r"shard-\d+-(.+)-(\d+)-[0-9a-f]+\.h5(\.tmp)?", name)
    return (match.group(1), int(match.group(2))) if match else (None, None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _replace_kinds(record: VideoRecord, kinds: tuple[str, ...]) -> VideoRecord:
    return VideoRecord(**{**record.__dict__, "kinds": kinds})



def _checked_seconds(seconds: Sequence[int], rows: int, where: str) -> np.ndarray:
    """``seconds`` as int32 after checking there is one per row, each >= 0 and later than the one before."""
    starts = np.asarray(seconds)
    if starts.shape != (rows,) or not np.issubdtype(starts.dtype, np.integer) or (starts < 0).any() \
            or (np.diff(starts) <= 0).any():
        raise StoreError(f"{where}: chunk start seconds must be {rows} increasing integers >= 0, one per row; "
                         f"got {starts.tolist()[:8]}")
    return starts.astype(np.int32)


def _write_shard(store: FeatureStore, records: list[VideoRecord], arrays: dict[str, list[np.ndarray]],
                 seconds: np.ndarray) -> Path:
    """Write one shard under a ``.tmp`` name, sync it, and rename it into place: all or nothing."""
    path = store.root / f"shard-{_new_shard_id()}.h5"
    tmp = path.with_name(path.name + ".tmp")
    counts = np.array([len(a) for a in next(iter(arrays.values()))], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    strings = h5py.string_dtype("utf-8")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_VERSION
            f.attrs["settings_hash"] = store.manifest["settings_hash"]
            f.attrs["versions"] = canonical(library_versions())  # per shard: writers may run on other machines
            f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            for kind, parts in arrays.items():
                f.create_dataset(kind, data=np.concatenate(parts))  # contiguous layout: fastest to read back
            ix = f.create_group("index")
            ix.create_dataset("key", data=[r.key for r in records], dtype=strings)
            ix.create_dataset("decoder", data=[r.decoder for r in records], dtype=strings)
            values = {"row_start": starts, "row_count": counts}
            for col, dtype in _INDEX_NUMBERS.items():
                data = values[col] if col in values else [getattr(r, col) for r in records]
                ix.create_dataset(col, data=np.asarray(data, dtype=dtype))
            ix.create_dataset(CHUNK_SECOND, data=seconds)  # per row, unlike the per-video columns above
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(store.root)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{tmp}: cannot write shard: {exc}") from exc
    return path


def _read_segments(ds: h5py.Dataset, segments: list[tuple[int, int, int]], out: np.ndarray) -> None:
    """Copy ``(src_row, rows, dst_row)`` segments of ``ds`` into ``out`` with few, large reads.

    Segments are sorted by source row and grouped into blocks (gaps up to ``_MAX_GAP_ROWS``, at most
    ``_MAX_BLOCK_ROWS`` rows). A block whose rows land contiguously in ``out`` is read straight into it;
    any other block is read once into a scratch buffer and scattered.
    """
    segments = sorted(segments)
    i = 0
    while i < len(segments):
        start, rows, dst = segments[i]
        end, j, direct = start + rows, i + 1, True
        while j < len(segments):
            s, r, d = segments[j]
            if s - end > _MAX_GAP_ROWS or max(end, s + r) - start > _MAX_BLOCK_ROWS:
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
