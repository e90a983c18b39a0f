"""Label CSVs: ``filename,mos[,group]`` (``score`` accepted for ``mos``), validated once, at the edge.

Every problem in a file is collected and reported together, each naming the CSV line, so a user fixes a
broken table in one pass instead of one error per run.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Literal

import pandas as pd

from .errors import CSVError

MOS_ALIASES = ("mos", "score")
_LISTED = 10  # duplicate names listed; the message gives the count of all


def read_labels(
    csv_path: str | Path,
    video_root: str | Path | None = None,
    *,
    require_mos: bool = True,
    group_column: str = "group",
    split_column: str | None = None,
    missing: Literal["error", "keep"] = "error",
) -> pd.DataFrame:
    """Return the rows of a label CSV as a DataFrame with columns ``filename``, ``path``, ``mos``, ``group``, ``exists``.

    ``filename`` is the key exactly as the CSV gives it; ``path`` is it resolved against ``video_root`` (or the
    CSV's own directory when no root is given) unless absolute. ``mos`` is NaN where the CSV has none
    (allowed only with ``require_mos=False``). ``group`` is ``group_column``'s value, or the filename when the
    CSV has no such column. With ``split_column``, that column (required, no empty values) is returned as
    ``split``. With ``missing="keep"`` rows whose video file is missing are kept (``exists`` is
    False) for the caller to report per row; with ``"error"`` they are problems like any other.
    """
    csv_path = Path(csv_path)
    table = _read_table(csv_path)
    root = Path(video_root) if video_root is not None else csv_path.parent
    problems: list[str] = []

    if "filename" not in table.columns:
        problems.append(f"missing column 'filename' (columns found: {', '.join(table.columns) or 'none'})")
        raise CSVError(csv_path, problems)
    mos_column = next((c for c in MOS_ALIASES if c in table.columns), None)
    if mos_column is None and require_mos:
        problems.append(f"missing column 'mos' (or its alias 'score'); columns found: {', '.join(table.columns)}")
    if split_column is not None and split_column not in table.columns:
        problems.append(f"missing split column {split_column!r} (data.split_column); columns found: "
                        f"{', '.join(table.columns)}")

    filenames = table["filename"].fillna("").astype(str).str.strip()
    mos = pd.Series(math.nan, index=table.index, dtype=float)
    if mos_column is not None:
        mos = pd.to_numeric(table[mos_column], errors="coerce").astype(float)
    paths = [_resolve(root, name) for name in filenames]
    exists = [p.is_file() for p in paths]

    seen: dict[str, int] = {}
    duplicates: list[str] = []
    for row, name in enumerate(filenames):
        line = row + 2  # the header is line 1
        if not name:
            problems.append(f"line {line}: empty filename")
            continue
        if "\x00" in name:
            problems.append(f"line {line}: filename {name!r} contains a NUL character")
            continue
        if name in seen:
            duplicates.append(f"line {line}: duplicate filename {name!r} (first on line {seen[name]})")
        seen.setdefault(name, line)
        if mos_column is not None:
            problems.extend(_mos_problems(line, table[mos_column].iloc[row], mos.iloc[row], require_mos))
        if split_column in table.columns and pd.isna(table[split_column].iloc[row]):
            problems.append(f"line {line}: empty {split_column!r} (every row needs its split)")
        if missing == "error" and not exists[row]:
            problems.append(f"line {line}: video file not found: {paths[row]}")
    problems.extend(duplicates[:_LISTED])  # the first few and a count: a CSV concatenated twice must not
    if len(duplicates) > _LISTED:          # print thousands of lines
        problems.append(f"{len(duplicates)} duplicate filenames in all, the first {_LISTED} listed above")
    if problems:
        raise CSVError(csv_path, problems)

    groups = table[group_column].astype(str) if group_column in table.columns else filenames
    labels = pd.DataFrame(
        {
            "filename": filenames.to_numpy(),
            "path": [str(p) for p in paths],
            "mos": mos.to_numpy(),
            "group": groups.to_numpy(),
            "exists": exists,
        }
    )
    if split_column is not None:
        labels["split"] = table[split_column].astype(str).str.strip().to_numpy()
    return labels


def _read_table(csv_path: Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise CSVError(csv_path, ["file not found"])
    try:
        with warnings.catch_warnings():
            # index_col=False: a first row longer than the header must not turn its leading fields into an
            # index and shift the rest under the wrong columns; pandas then warns that it drops fields.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True,
                                index_col=False)
    except pd.errors.EmptyDataError:
        raise CSVError(csv_path, ["file is empty (expected a header row: filename,mos[,group])"]) from None
    except pd.errors.ParserWarning:
        raise CSVError(csv_path, ["the first data row has more fields than the header has columns"]) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CSVError(csv_path, [f"not a readable CSV: {err}"]) from None
    table.columns = [str(c).strip() for c in table.columns]
    if table.empty:
        raise CSVError(csv_path, ["no data rows after the header"])
    return table


def _mos_problems(line: int, raw: object, value: float, required: bool) -> list[str]:
    if raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() == "":
        return [f"line {line}: missing MOS"] if required else []
    if math.isnan(value):
        return [f"line {line}: MOS {raw!r} is not a number"]
    if math.isinf(value):
        return [f"line {line}: MOS {raw!r} is infinite"]
    return []


def _resolve(root: Path, name: str) -> Path:
    path = Path(os.path.expanduser(name))  # unlike Path.expanduser, leaves "~nosuchuser/a.mp4" as it is
    return path if path.is_absolute() else root / path
