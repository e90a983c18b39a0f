"""Replacing a file all at once, so a run killed (or a disk filling up) mid-write never leaves half a file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pipeline.errors import WriteError


def write_atomic(path: str | Path, data: bytes | str, *, tmp: str | Path | None = None) -> None:
    """Write ``data`` (text as UTF-8) to a temp file beside ``path``, fsync it, rename it over ``path`` and fsync
    the folder, with plain file I/O only (a full disk is then an ordinary error, never a crash in a library).

    ``tmp``: the temp file's name (default: hidden, unique). On failure the old file is kept, no temp file is
    left behind, and :class:`~pipeline.errors.WriteError` (an OSError) names ``path`` and the cause.
    """
    path = Path(path)
    tmp = Path(tmp) if tmp is not None else path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise WriteError(path, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
