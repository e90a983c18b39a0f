"""Synthetic scoring tables for the report tests and bench/report.py: the shape ``Scorer.score_csv`` returns,
at any size, without extracting anything."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.scoring import SCORE_COLUMNS

# Error messages in the form extraction records them (the file first), three reasons.
_ERRORS = ("{}: video file not found", "{}: no video stream in the file",
           "{}: decoding failed after frame {}: Invalid data found when processing input")
UNFAMILIAR = 0.1  # share of scored videos unlike the training data (novelty above 1)
TRAINED_ON = 0.1  # share of scored videos the model trained on


def synthetic_scores(videos: int, *, failed: int = 0, chunks: tuple[int, int] = (4, 40), mos: bool = True,
                     legacy: bool = False, seed: int = 0) -> pd.DataFrame:
    """A scoring table of ``videos`` rows (``failed`` of them failures) named ``video00000.mp4`` and on.

    Chunk scores wander around each video's level on a 0-100 scale with an occasional one-second drop; the
    MOS, when asked for, follows the score with noise. Intervals widen with novelty, about
    :data:`UNFAMILIAR` of the videos lie out of domain and :data:`TRAINED_ON` were trained on; ``legacy``: the
    table of a version-1 model (NaN intervals and novelty, ``in_domain`` None, nothing trained on).
    """
    rng = np.random.default_rng(seed)
    failing = set(rng.choice(videos, size=failed, replace=False).tolist())
    rows = []
    for i in range(videos):
        name = f"video{i:05d}.mp4"
        if i in failing:
            error = _ERRORS[i % len(_ERRORS)].format(name, int(rng.integers(1, 500)))
            rows.append((name, math.nan, math.nan, math.nan, "error", error, math.nan, math.nan, None, math.nan,
                         None, None, None, None, None))
            continue
        count = int(rng.integers(chunks[0], chunks[1] + 1))
        level = rng.uniform(20, 90)
        scores = np.clip(level + np.cumsum(rng.normal(0, 1.5, count)), 0, 100)
        scores[rng.integers(count)] -= rng.uniform(0, 30)
        score = float(scores.mean())
        truth = float(np.clip(score + rng.normal(0, 8), 0, 100)) if mos else math.nan
        novelty = rng.uniform(1.05, 2.5) if rng.random() < UNFAMILIAR else rng.uniform(0.1, 0.95)
        half = 9.0 + 4.0 * novelty + rng.uniform(0, 3, count)  # per chunk; the video's is their mean
        trust = ((math.nan, math.nan, None, math.nan, False) if legacy else
                 (score - float(half.mean()), score + float(half.mean()), novelty <= 1, novelty,
                  bool(rng.random() < TRAINED_ON)))
        band = (np.full(count, math.nan), np.full(count, math.nan)) if legacy else (scores - half, scores + half)
        rows.append((name, truth, score, score, "ok", "", *trust, np.arange(count), scores, *band))
    columns = [SCORE_COLUMNS[0], "mos", *SCORE_COLUMNS[1:], "seconds", "chunk_scores", "chunk_low", "chunk_high"]
    return pd.DataFrame(rows, columns=columns)
