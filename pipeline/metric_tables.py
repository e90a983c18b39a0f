"""Aligned text tables for the terminal and log files: the one formatter of every metric table (fit, folds,
sweeps, score, the demo), so a number reads the same wherever it is printed."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: The metrics of ``metrics.json`` (pipeline.metrics.evaluate, and the share of MOS inside the scores' intervals,
#: NaN where a model has none), in the order tables show them.
METRIC_COLUMNS = ("srocc", "krocc", "plcc", "rmse", "plcc_raw", "rmse_raw", "coverage", "n")


def cell(value: object) -> str:
    """One table cell: floats to 4 decimals (3 significant digits when tiny or huge), NaN as ``nan``."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"
    return str(value)


def format_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``rows`` under ``header``, each column padded to its widest cell; cells go through :func:`cell`."""
    lines = [list(map(str, header)), *([cell(v) for v in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)


def metrics_table(labels: Sequence[str], rows: Iterable[tuple[Sequence[str], Mapping[str, object]]],
                  columns: Sequence[str] = METRIC_COLUMNS) -> str:
    """A table of metrics: each row is its label cells (one per ``labels`` header) and a metric mapping."""
    return format_table([*labels, *columns], ([*names, *(values.get(c, math.nan) for c in columns)] for names, values in rows))
