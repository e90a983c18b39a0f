"""MATLAB ``.mat`` files (v5, via scipy.io) as named one-dimensional variables, and as a table of them.

Structs are flattened to ``struct.field`` names, so ``qualcommVideoData.vidNames`` is a column like any other.
A file's table holds the variables that share the most common length (the per-video ones); shorter lookup
lists, such as LIVE-Qualcomm's six distortion names, stay available through ``variables``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .problems import fail
from .metadata_table import Table


def variables(path: Path) -> dict[str, list[str]]:
    """Every one-dimensional variable (and struct field) of the MATLAB file ``path``, its entries as text."""
    import scipy.io

    try:
        content = scipy.io.loadmat(path, simplify_cells=True)
    except NotImplementedError:
        raise fail(str(path), "MATLAB v7.3 (HDF5) files are not supported; re-save it in MATLAB with -v7") from None
    except Exception as err:  # scipy raises ValueError, TypeError and others for files that are not MATLAB v5
        raise fail(str(path), f"not a readable MATLAB file: {err}") from None
    found: dict[str, list[str]] = {}
    _flatten(content, "", found)
    if not found:
        raise fail(str(path), "holds no one-dimensional variables")
    return found


def read_mat(path: Path) -> Table:
    """The per-video variables of ``path`` (those of the most common length) as a table, row ``i`` = entry ``i``."""
    found = variables(path)
    length = Counter(len(v) for v in found.values()).most_common(1)[0][0]
    columns = [name for name, values in found.items() if len(values) == length]
    rows = [list(cells) for cells in zip(*(found[name] for name in columns))]
    return Table(str(path), columns, rows, [f"entry {i + 1} of {columns[0]}" for i in range(length)])


def _flatten(tree: dict, prefix: str, found: dict[str, list[str]]) -> None:
    for name, value in tree.items():
        if name.startswith("__"):  # __header__, __version__, __globals__
            continue
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{name}.", found)
            continue
        array = np.asarray(value, dtype=object if isinstance(value, list) else None)
        if array.ndim <= 1:
            found[prefix + name] = [_text(v) for v in np.atleast_1d(array)]


def _text(value: Any) -> str:
    if isinstance(value, np.ndarray):  # an empty cell loads as an empty array
        return "" if value.size == 0 else _text(value.ravel()[0])
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value).strip()
