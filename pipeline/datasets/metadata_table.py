"""One in-memory shape for every metadata format: named columns of text cells, each row knowing where it came from.

Readers (``text``, ``sheets``, ``matfiles``) turn CSV/TSV, XLSX and MATLAB files into a ``Table``; the data-set
importers then read columns by name without caring about the format. Cells are text with ``.`` as the decimal
mark (readers normalise decimal commas), so one number parser serves every format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .problems import Place, fail


@dataclass
class Table:
    """Rows of text cells under ``columns``; ``places[i]`` says where row ``i`` is in ``path``."""

    path: str
    columns: list[str]
    rows: list[list[str]]
    places: list[str]

    def column(self, name: str) -> list[str]:
        """The cells of column ``name``; a MetadataError naming the file and the columns it has otherwise."""
        if name not in self.columns:
            raise fail(self.path, f"no column {name!r} (columns found: {', '.join(self.columns) or 'none'})")
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def has(self, *names: str) -> bool:
        """Whether the table has every one of ``names`` as a column."""
        return all(name in self.columns for name in names)

    def place(self, row: int) -> Place:
        """Where row ``row`` came from, for messages."""
        return Place(self.path, self.places[row])


def read_table(path: str | Path, *, sheet: str | None = None, names: list[str] | None = None) -> Table:
    """Return the table in ``path``, read by its extension: ``.xlsx``, ``.mat``, anything else as delimited text.

    ``sheet`` picks an XLSX sheet (default: the first). ``names`` reads a text file that has no header row.
    """
    from . import matfiles, sheets, text  # each reader pulls its own library (openpyxl, scipy.io) on demand

    path = Path(path)
    if not path.is_file():
        raise fail(str(path), "file not found")
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return sheets.read_xlsx(path, sheet)
    if suffix == ".mat":
        return matfiles.read_mat(path)
    return text.read_text_table(path, names)


def number(cell: str) -> float:
    """The value of a numeric cell (NaN when empty); ValueError when it is not a finite number."""
    if cell.strip() == "":
        return math.nan
    value = float(cell)
    if not math.isfinite(value):
        raise ValueError(cell)
    return value
