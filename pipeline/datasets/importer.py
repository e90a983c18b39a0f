"""An import from start to finish: read the metadata, check it, find the videos, write the label CSV.

Nothing is written unless every step succeeded, so a failed import never leaves a partial CSV behind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.errors import UsageError

from .catalog import DATASETS
from .generic import Columns, read_generic
from .label_rows import Imported, Row, check, write_csv
from .resolve import Missing, resolve

_LISTED_MISSING = 10


@dataclass
class Report:
    """What an import did, for the user: rows written, and notes on what was left out."""

    written: int
    notes: list[str]


def import_dataset(
    name: str,
    metadata: list[Path],
    out: str | Path,
    *,
    videos: str | Path | None = None,
    skip_missing: bool = False,
    relative_to: str | Path | None = None,
    columns: Columns | None = None,
) -> Report:
    """Import data set ``name`` (a known one, or ``generic`` with ``columns``) from ``metadata`` into ``out``.

    With ``videos``, each row's video is found under that folder and written relative to it, or to
    ``relative_to`` (a folder above it: several data sets under one ``data.video_root``, for cross-dataset tests).
    """
    if videos is None and (skip_missing or relative_to is not None):
        raise UsageError("--skip-missing and --relative-to need --videos")
    imported = _read(name, metadata, columns)
    rows = check(imported.records)
    notes = list(imported.notes)
    if videos is not None:
        found = resolve([r.names for r in imported.records], videos)
        missing = {i: path.why for i, path in enumerate(found) if isinstance(path, Missing)}
        if (missing and not skip_missing) or len(missing) == len(rows):
            raise UsageError(_missing_message(missing, rows, videos))
        prefix = _prefix(Path(videos), relative_to)
        rows = [replace(row, filename=prefix + path) for row, path in zip(rows, found) if isinstance(path, str)]
        if missing:
            notes.append(f"left out {len(missing)} row(s) whose video is not under {videos}")
    if not rows:
        raise UsageError(f"no rows to write from {', '.join(map(str, metadata))}" + "".join(f"; {n}" for n in notes))
    write_csv(rows, out)
    return Report(len(rows), notes)


def _read(name: str, metadata: list[Path], columns: Columns | None) -> Imported:
    if not metadata:
        raise UsageError("no metadata file given (--metadata FILE [FILE ...])")
    if name == "generic":
        if columns is None:
            raise UsageError("vqa-data import generic needs --filename-column and --mos-column")
        if len(metadata) != 1:
            raise UsageError(f"vqa-data import generic reads one metadata file, got {len(metadata)}")
        return read_generic(metadata[0], columns)
    if columns is not None:
        raise UsageError(f"column options are for 'generic' only; {name!r} knows its own columns")
    if name not in DATASETS:
        raise UsageError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}, generic")
    return DATASETS[name].read(metadata)


def _prefix(videos: Path, relative_to: str | Path | None) -> str:
    """What goes before a path relative to ``videos`` to make it relative to ``relative_to``."""
    if relative_to is None:
        return ""
    try:
        inside = videos.resolve().relative_to(Path(relative_to).resolve())
    except ValueError:
        raise UsageError(f"--relative-to {relative_to} is not a folder above --videos {videos}") from None
    return "" if inside == Path(".") else f"{inside.as_posix()}/"


def _missing_message(missing: dict[int, str], rows: list[Row], videos: str | Path) -> str:
    shown = "\n".join(f"  {rows[i].filename}: {why}" for i, why in list(missing.items())[:_LISTED_MISSING])
    more = f"\n  ... and {len(missing) - _LISTED_MISSING} more" if len(missing) > _LISTED_MISSING else ""
    return (f"{len(missing)} of {len(rows)} video(s) not found under {videos} (by path, by known renaming, or by "
            f"unique file name):\n{shown}{more}\npass --skip-missing to write the rows whose videos were found")
