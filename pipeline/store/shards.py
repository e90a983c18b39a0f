"""Shard files: their names, their layout, and writing one all or nothing.

A shard is written as ``shard-<id>.h5.tmp`` and renamed only once complete and synced, so a killed writer
loses at most the shard in progress and a reader never sees a partial one. Ids start with a nanosecond
timestamp and carry host, pid and a random part: concurrent writers on any number of machines never
collide, and sorting ids orders shards by age (the newest copy of a key wins).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import StoreError
from pipeline.store.manifest import FORMAT_VERSION, fsync_dir, library_versions
from pipeline.store.records import VideoRecord
from pipeline.trees import canonical

SHARD_GLOB = "shard-*.h5"
INDEX_NUMBERS = {  # index/<name> columns besides key and decoder, one entry per video, with their on-disk dtypes
    "row_start": np.int64, "row_count": np.int64, "fps": np.float64, "frames": np.int64, "width": np.int64,
    "height": np.int64, "duration": np.float64, "size": np.int64, "mtime": np.float64,
}
#: Per-row index column: the second each chunk starts at (shards written before it existed lack it).
CHUNK_SECOND = "chunk_second"
HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def write_shard(root: Path, settings_hash: str, records: list[VideoRecord], arrays: dict[str, list[np.ndarray]],
                seconds: np.ndarray) -> Path:
    """Write one shard of ``records`` (rows of each kind in ``arrays``, in record order; ``seconds`` one per row)
    under a ``.tmp`` name, sync it, and rename it into place: all or nothing."""
    path = root / f"shard-{_new_shard_id()}.h5"
    tmp = path.with_name(path.name + ".tmp")
    counts = np.array([len(a) for a in next(iter(arrays.values()))], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    strings = h5py.string_dtype("utf-8")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_VERSION
            f.attrs["settings_hash"] = settings_hash
            f.attrs["versions"] = canonical(library_versions())  # per shard: writers may run on other machines
            f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            for kind, parts in arrays.items():
                f.create_dataset(kind, data=np.concatenate(parts))  # contiguous layout: fastest to read back
            ix = f.create_group("index")
            ix.create_dataset("key", data=[r.key for r in records], dtype=strings)
            ix.create_dataset("decoder", data=[r.decoder for r in records], dtype=strings)
            values = {"row_start": starts, "row_count": counts}
            for col, dtype in INDEX_NUMBERS.items():
                data = values[col] if col in values else [getattr(r, col) for r in records]
                ix.create_dataset(col, data=np.asarray(data, dtype=dtype))
            ix.create_dataset(CHUNK_SECOND, data=seconds)  # per row, unlike the per-video columns above
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(root)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"{tmp}: cannot write shard: {exc}") from exc
    return path


def remove_orphans(root: Path) -> None:
    """Delete ``.tmp`` shards left by dead processes of this host (their work is lost anyway)."""
    for tmp in root.glob(SHARD_GLOB + ".tmp"):
        host, pid = _shard_owner(tmp.name)
        if host == HOST and pid is not None and not _pid_alive(pid):
            tmp.unlink(missing_ok=True)


def _new_shard_id() -> str:
    return f"{time.time_ns():020d}-{HOST}-{os.getpid()}-{secrets.token_hex(4)}"


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
