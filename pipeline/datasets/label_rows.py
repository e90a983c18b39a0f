"""What every importer produces (one ``Record`` per video), checked once, and written as a label CSV.

The output is the project's label CSV (README, "Standard datasets"): ``filename,mos,group`` then ``split`` and
``mos_std`` when the data set has them, readable by ``pipeline.labels.read_labels`` as it is.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.files import write_atomic

from .problems import MetadataError, Place
from .metadata_table import number


@dataclass(frozen=True)
class Record:
    """One video of a metadata file, its cells still as text.

    ``names`` are the relative paths the video may have, most usual first (a data set's known renamings come
    after it); without ``--videos`` the first is written. ``group`` None: the video is its own group.
    """

    names: tuple[str, ...]
    mos: str
    place: Place
    group: str | None = None
    split: str | None = None
    mos_std: str | None = None


@dataclass
class Imported:
    """An importer's records, plus notes for the user (rows deliberately left out, and why)."""

    records: list[Record]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    """A checked output row; ``group`` None: the video is its own group (written as its filename)."""

    filename: str
    mos: float
    group: str | None
    split: str | None
    mos_std: float | None


def check(records: list[Record]) -> list[Row]:
    """The records as output rows; a MetadataError listing every empty name, bad number and duplicate name."""
    problems: list[str] = []
    rows: list[Row] = []
    first_seen: dict[str, Place] = {}
    for record in records:
        name = record.names[0] if record.names else ""
        if not name:
            problems.append(f"{record.place}: empty video name")
            continue
        if name in first_seen:
            problems.append(f"{record.place}: duplicate video name {name!r} (first at {first_seen[name]})")
            continue
        first_seen[name] = record.place
        mos = _number(record.mos, "MOS", record.place, problems, required=True)
        std = _number(record.mos_std, "MOS std", record.place, problems, required=False)
        rows.append(Row(name, mos, record.group or None, record.split, std))
    if problems:
        raise MetadataError(problems)
    return rows


def write_csv(rows: list[Row], out: str | Path) -> None:
    """Write ``rows`` as a label CSV, all at once (a failed import leaves no file and no half file)."""
    with_split = any(r.split is not None for r in rows)
    with_std = any(r.mos_std is not None for r in rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filename", "mos", "group"] + ["split"] * with_split + ["mos_std"] * with_std)
    for r in rows:
        std = [] if not with_std else ["" if r.mos_std is None else repr(r.mos_std)]
        writer.writerow([r.filename, repr(r.mos), r.group or r.filename] + [r.split or ""] * with_split + std)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, buffer.getvalue())


def _number(cell: str | None, what: str, place: Place, problems: list[str], *, required: bool) -> float | None:
    if cell is None:
        return None
    try:
        value = number(cell)
    except ValueError:
        problems.append(f"{place}: {what} {cell!r} is not a number")
        return None
    if math.isnan(value):
        if required:
            problems.append(f"{place}: missing {what}")
        return None
    return value
