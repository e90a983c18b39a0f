"""Writing a table in the format its file name asks for: ``.csv``, ``.jsonl`` (JSON lines) or ``.parquet``.

The same columns, in the same order, in every format: ``score.py --out`` writes what ``SCORE_COLUMNS`` holds,
whichever format the user's tools read. Parquet needs pyarrow (the ``parquet`` extra); the format is checked
before any work, so a name it cannot write costs nothing.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from pipeline.errors import UsageError
from pipeline.files import write_atomic


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def _jsonl(frame: pd.DataFrame) -> str:
    """One strict JSON object per row (a missing value as null), numbers exact."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return "".join(json.dumps(row, ensure_ascii=False, default=lambda value: value.item()) + "\n" for row in rows)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


FORMATS: dict[str, Callable[[pd.DataFrame], str | bytes]] = {".csv": _csv, ".jsonl": _jsonl, ".parquet": _parquet}


def check_format(path: str | Path) -> None:
    """UsageError unless ``path``'s extension names a format this machine can write."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: cannot write a {suffix or 'file without an extension'}; name it "
                         f"{', '.join('*' + s for s in FORMATS)}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401 - pandas writes Parquet through it
        except ImportError:
            raise UsageError(f"{path}: writing Parquet needs pyarrow: pip install 'vqa-pipeline[parquet]' "
                             "(or name a .csv or .jsonl file)") from None


def write_table(table: pd.DataFrame, path: str | Path, columns: Sequence[str]) -> None:
    """Write ``table``'s ``columns``, in that order, in the format of ``path``'s extension, all at once."""
    check_format(path)
    write_atomic(path, FORMATS[Path(path).suffix.lower()](table.loc[:, list(columns)]))
