"""Delimited text tables as people ship them: any of four separators, decimal commas, three encodings, blank rows.

Detection is deliberately simple and explainable: the encoding is UTF-8 (with or without a byte-order mark)
unless the bytes are not valid UTF-8, then Latin-1 (which decodes anything); the separator is whichever of
``, ; TAB |`` occurs most often, outside quotes, in the first non-blank line; decimal commas are assumed only
when the separator is not a comma and no cell uses a decimal point.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from .problems import MetadataError, fail
from .metadata_table import Table

_SEPARATORS = (",", ";", "\t", "|")
_COMMA_DECIMAL = re.compile(r"^[+-]?\d+,\d+$")
_POINT_DECIMAL = re.compile(r"^[+-]?\d*\.\d+$")


def read_text_table(path: Path, names: list[str] | None = None) -> Table:
    """The table in the CSV/TSV file ``path``; ``names`` are the column names of a file without a header row."""
    text = _decode(path.read_bytes())
    separator = _separator(text)
    records = _records(path, text, separator)
    if names is None:
        if not records:
            raise fail(str(path), "file is empty (expected a header row)")
        _, header = records.pop(0)
        names = _drop_trailing_empty(header)
    if not records:
        raise fail(str(path), "no data rows")
    rows, places, problems = [], [], []
    for line, cells in records:
        extra = [c for c in cells[len(names):] if c]
        if extra:
            problems.append(f"{path}, line {line}: {len(cells)} fields but the header has {len(names)} columns")
        rows.append((cells + [""] * len(names))[: len(names)])
        places.append(f"line {line}")
    if problems:
        raise MetadataError(problems)
    if separator != ",":
        rows = _undo_decimal_comma(rows)
    return Table(str(path), names, rows, places)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")  # also plain UTF-8; drops a byte-order mark
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _separator(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    unquoted = re.sub(r'"[^"]*"', "", first)
    counts = {sep: unquoted.count(sep) for sep in _SEPARATORS}
    best = max(_SEPARATORS, key=lambda sep: counts[sep])  # ties (and no separator at all) keep the comma
    return best if counts[best] > 0 else ","


def _records(path: Path, text: str, separator: str) -> list[tuple[int, list[str]]]:
    """``(line number, stripped cells)`` of every record that is not blank (all cells empty)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, skipinitialspace=True)
    records = []
    try:
        for cells in reader:
            stripped = [c.strip() for c in cells]
            if any(stripped):
                records.append((reader.line_num, stripped))
    except csv.Error as err:
        raise fail(str(path), f"line {reader.line_num}: not readable as delimited text: {err}") from None
    return records


def _drop_trailing_empty(header: list[str]) -> list[str]:
    while header and not header[-1]:
        header = header[:-1]
    return header


def _undo_decimal_comma(rows: list[list[str]]) -> list[list[str]]:
    cells = [c for row in rows for c in row]
    if any(_POINT_DECIMAL.match(c) for c in cells) or not any(_COMMA_DECIMAL.match(c) for c in cells):
        return rows
    return [[c.replace(",", ".") if _COMMA_DECIMAL.match(c) else c for c in row] for row in rows]
