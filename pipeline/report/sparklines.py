"""Per-second score strips as inline SVG: a few hundred bytes per video, so 10,000 of them stay cheap.

Every strip of a report shares one vertical scale (``low``..``high``), so a dip in one row compares with a dip
in the next. Long videos are drawn from the lowest score of each of at most ``_MAX_POINTS`` bins: a drop
that lasts one second still shows, where an average would hide it.
"""

from __future__ import annotations

import numpy as np

_WIDTH, _HEIGHT, _PAD = 160.0, 28.0, 3.0
_MAX_POINTS = 80


def sparkline(scores: np.ndarray, low: float, high: float) -> str:
    """An ``<svg>`` line of a video's chunk scores on the shared scale, its worst chunk marked with a dot."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) > _MAX_POINTS:
        edges = np.linspace(0, len(scores), _MAX_POINTS + 1).astype(int)
        scores = np.minimum.reduceat(scores, edges[:-1])
    span = (high - low) or 1.0
    y = _PAD + (_HEIGHT - 2 * _PAD) * (1 - (np.clip(scores, low, high) - low) / span)
    x = np.linspace(_PAD, _WIDTH - _PAD, len(scores)) if len(scores) > 1 else np.array([_PAD, _WIDTH - _PAD])
    y = y if len(scores) > 1 else np.repeat(y, 2)
    worst = int(np.argmax(y[: len(scores)]))  # the lowest score is drawn lowest
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
    return (f'<svg class="spark" viewBox="0 0 {_WIDTH:g} {_HEIGHT:g}">'
            f'<polyline points="{points}"/><circle cx="{x[worst]:.1f}" cy="{y[worst]:.1f}" r="2"/></svg>')
