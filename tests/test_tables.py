"""The one metric-table formatter and the one flattener of nested settings."""

from __future__ import annotations

import math

import numpy as np

from pipeline.metric_tables import cell, format_table, metrics_table
from pipeline.trees import differences, flatten


def test_cells_and_alignment() -> None:
    assert [cell(v) for v in (0.123456, np.float32(2.5), math.nan, 0.0, 3e-4, 12, "x")] == \
        ["0.1235", "2.5000", "nan", "0.0000", "0.0003", "12", "x"]
    assert format_table(["a", "long"], [[1.0, "x"], ["yy", 2]]).splitlines() == \
        ["a       long", "1.0000  x", "yy      2"]


def test_metrics_table_rows_are_labels_then_metrics() -> None:
    table = metrics_table(["phase"], [(["fine"], {"srocc": 0.5, "n": 10})], columns=("srocc", "n"))
    assert table.splitlines() == ["phase  srocc   n", "fine   0.5000  10"]


def test_flatten_and_differences() -> None:
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}
    assert differences({"a": {"b": 1}, "p": "x"}, {"a": {"b": 2}, "q": (1,)}, allowed=("p",)) == \
        ["a.b: 1 vs. 2", 'q: "<absent>" vs. [1]']
