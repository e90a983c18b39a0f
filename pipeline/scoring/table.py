"""The output of scoring: one row per video (its scores, or why it has none), and the files written from it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.files import write_atomic
from pipeline.scoring.predict import Predictions
from pipeline.trees import finite

#: Columns of ``scores.csv`` (and the first columns of every table ``Scorer.score_paths`` returns).
SCORE_COLUMNS = ("filename", "score", "score_raw", "status", "error", "score_low", "score_high", "in_domain",
                 "novelty", "trained_on")


def scores_table(keys: list[str], errors: Mapping[str, str], predictions: Predictions | None,
                 seconds: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """One row per key, in order: its scores and chunk scores (at the ``seconds`` its chunks start at), or its
    error. Columns: :data:`SCORE_COLUMNS`, then ``seconds``, ``chunk_scores``, ``chunk_low``, ``chunk_high``."""
    at = {key: i for i, key in enumerate(predictions.keys)} if predictions is not None else {}
    rows = []
    for key in keys:
        if key in at:
            p, i = predictions, at[key]
            span = slice(p.offsets[i], p.offsets[i + 1])
            novelty = float(p.novelty[i])
            rows.append((key, p.score[i], p.score_raw[i], "ok", "", p.score_low[i], p.score_high[i],
                         None if math.isnan(novelty) else bool(novelty <= 1.0), novelty, bool(p.trained_on[i]),
                         seconds[key], p.chunk_score[span], p.chunk_low[span], p.chunk_high[span]))
        else:
            rows.append((key, math.nan, math.nan, "error", errors[key], math.nan, math.nan, None, math.nan, None,
                         None, None, None, None))
    return pd.DataFrame(rows, columns=[*SCORE_COLUMNS, "seconds", "chunk_scores", "chunk_low", "chunk_high"])


def write_scores(table: pd.DataFrame, path: str | Path) -> None:
    """Write ``scores.csv``: the columns of :data:`SCORE_COLUMNS`, one row per video, in input order."""
    write_atomic(path, table.loc[:, list(SCORE_COLUMNS)].to_csv(index=False))


def write_per_second(table: pd.DataFrame, path: str | Path) -> None:
    """Write one JSON line per scored video: ``{"filename", "score", "score_low", "score_high", "seconds": [...],
    "scores": [...], "scores_low": [...], "scores_high": [...]}`` (bounds null for a model without intervals)."""
    write_atomic(path, "".join(
        json.dumps(finite({"filename": row.filename, "score": row.score, "score_low": row.score_low,
                            "score_high": row.score_high, "seconds": row.seconds.tolist(),
                            "scores": row.chunk_scores.tolist(), "scores_low": row.chunk_low.tolist(),
                            "scores_high": row.chunk_high.tolist()}), allow_nan=False) + "\n"
        for row in table[table["status"] == "ok"].itertuples(index=False)))
