"""Reading a metadata file of any supported format into a :class:`~.metadata_table.Table`, by its extension."""

from __future__ import annotations

from pathlib import Path

from .metadata_table import Table
from .problems import fail


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
