"""Shard files: their names, their layout, their checksums, and writing one all or nothing.

A shard is built in memory (HDF5's core driver), then written as ``shard-<id>.h5.tmp`` with plain file I/O,
synced and renamed into place: a killed writer loses at most the shard in progress, a reader never sees a
partial one, and a full disk is an ordinary OSError (HDF5 writing to a full file system crashed the process).
Ids start with a nanosecond timestamp and carry host, pid and a random part: concurrent writers on any
number of machines never collide, and sorting ids orders shards by age (the newest copy of a key wins).

Damage is detected, never served (format 2): HDF5's own metadata carries checksums (file format of HDF5
1.10), the index carries a SHA-256 of all its columns (``index_sha256``), and every video's rows of every kind
carry an XXH3-64 hash (``index/xxh3``, checked whenever the rows are read): fast enough that checked rows read
at most of the speed of unchecked ones, where zlib's CRC-32 and HDF5's per-chunk Fletcher-32 cost far more
(BENCHMARKS.md, "Shard checksums").
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import xxhash

from pipeline.errors import StoreError, WriteError
from pipeline.files import write_atomic
from pipeline.store.manifest import FORMAT_VERSION, library_versions
from pipeline.store.video_records import VideoRecord
from pipeline.trees import canonical

SHARD_GLOB = "shard-*.h5"
DAMAGED = "damaged"  # the store's folder of shards set aside as damaged, kept for inspection
INDEX_NUMBERS = {  # index/<name> columns besides key and decoder, one entry per video, with their on-disk dtypes
    "row_start": np.int64, "row_count": np.int64, "fps": np.float64, "frames": np.int64, "width": np.int64,
    "height": np.int64, "duration": np.float64, "size": np.int64, "mtime": np.float64,
}
#: Per-row index column: the second each chunk starts at (shards written before it existed lack it).
CHUNK_SECOND = "chunk_second"
#: ``index/xxh3``: (videos, kinds) uint64, the XXH3-64 of each video's rows of each kind, kinds in store order.
ROW_CHECKSUMS = "xxh3"
#: Shard attribute: SHA-256 of every index column (:func:`index_digest`).
INDEX_DIGEST = "index_sha256"
HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def write_shard(root: Path, settings_hash: str, records: list[VideoRecord], arrays: dict[str, list[np.ndarray]],
                seconds: np.ndarray) -> Path:
    """Write one shard of ``records`` (rows of each kind in ``arrays``, in record order; ``seconds`` one per row)
    under a ``.tmp`` name, sync it, and rename it into place: all or nothing. A failed write raises StoreError
    naming the store, the shard and the cause, and leaves nothing behind."""
    path = root / f"shard-{_new_shard_id()}.h5"
    image = shard_image(path.name, settings_hash, records, arrays, seconds)
    try:
        write_atomic(path, image, tmp=path.with_name(path.name + ".tmp"))
    except WriteError as exc:
        raise StoreError(f"{root}: cannot write shard {path.name}: {exc.reason}") from exc
    return path


def shard_image(name: str, settings_hash: str, records: list[VideoRecord], arrays: dict[str, list[np.ndarray]],
                seconds: np.ndarray) -> bytes:
    """The bytes of a shard file, built in memory: nothing touches the disk until they are complete."""
    counts = np.array([len(a) for a in next(iter(arrays.values()))], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    values = {"row_start": starts, "row_count": counts}
    columns = {col: np.asarray(values[col] if col in values else [getattr(r, col) for r in records], dtype=dtype)
               for col, dtype in INDEX_NUMBERS.items()}
    keys, decoders = [r.key for r in records], [r.decoder for r in records]
    crcs = np.array([[row_checksum(part) for part in parts] for parts in arrays.values()], dtype=np.uint64).T
    strings = h5py.string_dtype("utf-8")
    # libver 1.10: every metadata block (superblock, object headers, B-trees) carries a checksum.
    with h5py.File(name, "w", driver="core", backing_store=False, libver=("v110", "latest")) as f:
        f.attrs["format"] = FORMAT_VERSION
        f.attrs["settings_hash"] = settings_hash
        f.attrs["versions"] = canonical(library_versions())  # per shard: writers may run on other machines
        f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        f.attrs[INDEX_DIGEST] = index_digest(keys, decoders, columns, seconds, crcs)
        for kind, parts in arrays.items():
            ds = f.create_dataset(kind, shape=(int(counts.sum()), parts[0].shape[1]), dtype=parts[0].dtype)
            for part, start in zip(parts, starts):  # contiguous layout: fastest to read back
                ds[start:start + len(part)] = part
        ix = f.create_group("index")
        ix.create_dataset("key", data=keys, dtype=strings)
        ix.create_dataset("decoder", data=decoders, dtype=strings)
        for col, data in columns.items():
            ix.create_dataset(col, data=data)
        ix.create_dataset(CHUNK_SECOND, data=seconds)  # per row, unlike the per-video columns above
        ix.create_dataset(ROW_CHECKSUMS, data=crcs)
        f.flush()
        return f.id.get_file_image()


def row_checksum(rows: np.ndarray) -> int:
    """XXH3-64 of the bytes of a video's rows of one kind (C order), as written and as read back."""
    return xxhash.xxh3_64_intdigest(np.ascontiguousarray(rows).data)


def index_digest(keys: Sequence[str], decoders: Sequence[str], columns: Mapping[str, np.ndarray],
                 seconds: np.ndarray, crcs: np.ndarray) -> str:
    """SHA-256 of a shard's index: keys, decoders, every number column in :data:`INDEX_NUMBERS` order, chunk
    seconds and row checksums, each with its dtype and shape (the same bytes whether written or read back)."""
    digest = hashlib.sha256(canonical([list(keys), list(decoders)]).encode("utf-8"))
    for array in (*(columns[col] for col in INDEX_NUMBERS), seconds, crcs):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode("ascii"))
        digest.update(array.data)
    return digest.hexdigest()


def set_aside(path: Path) -> Path:
    """Move a damaged shard into the store's ``damaged/`` folder (kept for inspection); its new path."""
    folder = path.parent / DAMAGED
    moved = folder / path.name
    try:
        folder.mkdir(exist_ok=True)
        os.replace(path, moved)
    except FileNotFoundError:
        pass  # another process found it damaged too, and moved it first
    except OSError as exc:
        raise StoreError(f"{path}: damaged, and cannot be moved aside to {folder}: {exc.strerror}") from exc
    return moved


def remove_orphans(root: Path) -> None:
    """Delete ``.tmp`` shards left by dead processes of this host (their work is lost anyway)."""
    for tmp in root.glob(SHARD_GLOB + ".tmp"):
        host, pid = _shard_owner(tmp.name)
        if host == HOST and pid is not None and not pid_alive(pid):
            tmp.unlink(missing_ok=True)


def _new_shard_id() -> str:
    return f"{time.time_ns():020d}-{HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def _shard_owner(name: str) -> tuple[str | None, int | None]:
    """``(host, pid)`` encoded in a shard file name (None, None when it does not follow the pattern)."""
    match = re.fullmatch(r"shard-\d+-(.+)-(\d+)-[0-9a-f]+\.h5(\.tmp)?", name)
    return (match.group(1), int(match.group(2))) if match else (None, None)


def pid_alive(pid: int) -> bool:
    """True when a process of this host with ``pid`` exists (another user's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
