"""One in-memory shape for every metadata format: named columns of text cells, each row knowing where it came from.

Readers (``text``, ``sheets``, ``matfiles``; :func:`~.metadata_files.read_table` picks one) turn CSV/TSV, XLSX and
MATLAB files into a ``Table``; the data-set
importers then read columns by name without caring about the format. Cells are text with ``.`` as the decimal
mark (readers normalise decimal commas), so one number parser serves every format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def number(cell: str) -> float:
    """The value of a numeric cell (NaN when empty); ValueError when it is not a finite number."""
    if cell.strip() == "":
        return math.nan
    value = float(cell)
    if not math.isfinite(value):
        raise ValueError(cell)
    return value
