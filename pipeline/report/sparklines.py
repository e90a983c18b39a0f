"""Per-second score strips and per-video interval whiskers as inline SVG: small enough that 10,000 of each stay cheap.

Every strip of a report shares one vertical scale (``low``..``high``), so a dip in one row compares with a dip
in the next. Long videos are drawn from the lowest score of each of at most ``_MAX_POINTS`` bins: a drop
that lasts one second still shows, where an average would hide it. The shaded band around the line is each
drawn second's prediction interval (clipped to the strip), so a dip inside a wide band reads as uncertain.

Coordinates are integers on a grid twice the drawn size (half-pixel precision), each point a step from the one
before: short to write, which keeps a strip with its band near a kilobyte and a whisker near a hundred bytes.
"""

from __future__ import annotations

import numpy as np

_SCALE = 2  # grid units per CSS pixel
_WIDTH, _HEIGHT, _PAD = 160 * _SCALE, 28 * _SCALE, 3 * _SCALE
_MAX_POINTS = 80
_WHISKER_WIDTH, _WHISKER_HEIGHT = 64 * _SCALE, 12 * _SCALE


def sparkline(scores: np.ndarray, low: float, high: float, band: tuple[np.ndarray, np.ndarray] | None = None) -> str:
    """An ``<svg>`` line of a video's chunk scores on the shared scale, its worst chunk marked with a dot.

    ``band`` (each chunk's interval bounds, as long as ``scores``) is shaded around the line when all of it is
    finite; a model without intervals (NaN bounds) gets the line alone.
    """
    scores = np.asarray(scores, dtype=np.float64)
    picked = _lowest_per_bin(scores)
    x = np.linspace(_PAD, _WIDTH - _PAD, len(picked)) if len(picked) > 1 else np.array([_PAD, _WIDTH - _PAD])
    picked = picked if len(picked) > 1 else np.repeat(picked, 2)

    def y(values: np.ndarray) -> np.ndarray:
        return _height(np.asarray(values, dtype=np.float64)[picked], low, high)

    line = y(scores)
    worst = int(np.argmax(line))  # the lowest score is drawn lowest
    shade = ""
    if band is not None and np.isfinite(band[0]).all() and np.isfinite(band[1]).all():
        shade = f'<path class="band" d="{_path(np.r_[x, x[::-1]], np.r_[y(band[1]), y(band[0])[::-1]])}Z"/>'
    return (f'<svg class="spark" viewBox="0 0 {_WIDTH} {_HEIGHT}">{shade}<path d="{_path(x, line)}"/>'
            f'<circle cx="{x[worst]:.0f}" cy="{line[worst]:.0f}" r="{2 * _SCALE}"/></svg>')


def whisker(score: float, interval: tuple[float, float], low: float, high: float) -> str:
    """An ``<svg>`` of a video's interval as a capped bar on the shared scale ``low``..``high``, a dot at its score."""
    span = (high - low) or 1.0
    a, s, b = (round(_PAD + (_WHISKER_WIDTH - 2 * _PAD) * (np.clip(v, low, high) - low) / span)
               for v in (interval[0], score, interval[1]))
    mid, cap = _WHISKER_HEIGHT // 2, _WHISKER_HEIGHT // 4
    return (f'<svg class="ci" viewBox="0 0 {_WHISKER_WIDTH} {_WHISKER_HEIGHT}">'
            f'<path d="M{a} {mid}H{b}M{a} {cap}V{_WHISKER_HEIGHT - cap}M{b} {cap}V{_WHISKER_HEIGHT - cap}"/>'
            f'<circle cx="{s}" cy="{mid}" r="{2 * _SCALE}"/></svg>')


def _lowest_per_bin(scores: np.ndarray) -> np.ndarray:
    """The index of the lowest score in each of at most ``_MAX_POINTS`` equal stretches (every index if fewer)."""
    if len(scores) <= _MAX_POINTS:
        return np.arange(len(scores))
    edges = np.linspace(0, len(scores), _MAX_POINTS + 1).astype(int)
    bins = np.repeat(np.arange(_MAX_POINTS), np.diff(edges))
    lowest = np.flatnonzero(scores == np.minimum.reduceat(scores, edges[:-1])[bins])
    return lowest[np.unique(bins[lowest], return_index=True)[1]]  # the first lowest of each bin


def _height(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """The strip's y of ``values`` (higher scores higher), clipped to the shared scale."""
    span = (high - low) or 1.0
    return _PAD + (_HEIGHT - 2 * _PAD) * (1 - (np.clip(values, low, high) - low) / span)


def _path(x: np.ndarray, y: np.ndarray) -> str:
    """SVG path data through the points: the first absolute, then each a step from the one before (short numbers)."""
    grid = np.rint(np.column_stack([x, y])).astype(int)
    steps = " ".join(f"{dx},{dy}" for dx, dy in np.diff(grid, axis=0))
    return f"M{grid[0, 0]},{grid[0, 1]}l{steps}"
