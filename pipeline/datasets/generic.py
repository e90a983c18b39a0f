"""Any other data set: name the columns of its metadata table (CSV, TSV, XLSX or ``.mat``) on the command line."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from .problems import MetadataError, Place, fail
from .label_rows import Imported, Record
from .metadata_files import read_table


@dataclass(frozen=True)
class Columns:
    """Which columns hold what. ``template`` builds the file name from a row: ``{}`` is the filename column's
    value, ``{col}`` any column's (``'{vid}.mkv'``); None uses the filename column as it is."""

    filename: str
    mos: str
    template: str | None = None
    group: str | None = None
    split: str | None = None
    mos_std: str | None = None
    sheet: str | None = None


def read_generic(path: Path, columns: Columns) -> Imported:
    """The records of the metadata table ``path``, read through ``columns``."""
    table = read_table(path, sheet=columns.sheet)
    for field in _template_fields(columns.template, path):
        table.column(field)  # a MetadataError naming the file and the columns it has
    names = table.column(columns.filename)
    mos = table.column(columns.mos)
    optional = {key: table.column(col) if col else None for key, col in
                (("group", columns.group), ("split", columns.split), ("mos_std", columns.mos_std))}
    records = []
    for i, (name, score) in enumerate(zip(names, mos)):
        if columns.template is not None:
            name = _fill(columns.template, name, dict(zip(table.columns, table.rows[i])), table.place(i))
        extra = {key: cells[i] for key, cells in optional.items() if cells is not None}
        records.append(Record((name,), score, table.place(i), **extra))
    return Imported(records)


def _template_fields(template: str | None, path: Path) -> list[str]:
    if template is None:
        return []
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise fail(str(path), f"--template {template!r} is not a valid template: {err}") from None
    return [f for f in fields if f and not f.isdigit()]  # "{}" and "{0}" are the filename column


def _fill(template: str, name: str, row: dict[str, str], place: Place) -> str:
    try:
        return template.format(name, **row)
    except (ValueError, KeyError, IndexError, AttributeError) as err:  # e.g. "{vid:d}" on a text cell
        raise MetadataError([f"{place}: --template {template!r} cannot be filled: {err!r}"]) from None
