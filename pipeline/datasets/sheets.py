"""XLSX sheets as tables (openpyxl): the first non-blank row is the header, blank rows and columns are skipped."""

from __future__ import annotations

from pathlib import Path

from .problems import fail
from .metadata_table import Table


def read_xlsx(path: Path, sheet: str | None = None) -> Table:
    """The table on sheet ``sheet`` (default: the first) of the workbook ``path``; cells as text."""
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises zipfile, KeyError and its own errors for a broken file
        raise fail(str(path), f"not a readable XLSX workbook: {err}") from None
    try:
        if sheet is not None and sheet not in workbook.sheetnames:
            raise fail(str(path), f"no sheet {sheet!r} (sheets: {', '.join(workbook.sheetnames)})")
        worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
        numbered = [
            (number, [_text(v) for v in values])
            for number, values in enumerate(worksheet.iter_rows(values_only=True), start=1)
        ]
    finally:
        workbook.close()
    numbered = [(n, cells) for n, cells in numbered if any(cells)]
    if len(numbered) < 2:
        raise fail(str(path), f"sheet {worksheet.title!r} has no data rows below a header row")
    header = numbered[0][1]
    width = max(i + 1 for i, name in enumerate(header) if name)
    return Table(
        str(path),
        header[:width],
        [(cells + [""] * width)[:width] for _, cells in numbered[1:]],
        [f"row {n} of sheet {worksheet.title!r}" for n, _ in numbered[1:]],
    )


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an id typed as a number must not become "8536919744.0"
    return str(value).strip()
