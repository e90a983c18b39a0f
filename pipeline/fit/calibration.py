"""The map from a model's raw prediction to the score a person reads: strictly increasing, linear beyond its data.

A 4-parameter logistic fitted on a few validation videos comes out as a step: every unseen video on one side
of it gets the same score, and the model's ranking is lost. This calibration is a monotone piecewise-linear
function instead, fitted by least squares on the out-of-fold predictions of every training video
(:mod:`pipeline.fit.train`), with every segment's slope at least :data:`MIN_SLOPE_SHARE` of the average
slope. So two different predictions never share a score, and ``SROCC(score, score_raw) = 1`` on any input.

Beyond the fitted range the function continues with the average slope over that range (linear tails): a
video predicted past the best or worst training video scores past the training MOS range, by as much as its
prediction passes the range. VQEG's logistic stays what it is for: the ``plcc``/``rmse`` of an evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear

MIN_SLOPE_SHARE = 0.1  # no segment flatter than this share of the average slope: an order-keeping map
MAX_SEGMENTS = 8  # knots at quantiles of the predictions; more would follow the noise of a small data set
VIDEOS_PER_SEGMENT = 20  # fewer videos than this per segment: fewer segments (one segment: a line)


@dataclass(frozen=True)
class Calibration:
    """A strictly increasing piecewise-linear map: ``knots`` (increasing) to ``values`` (increasing), with the
    outer segments extended by ``tail_slope`` on both sides."""

    knots: tuple[float, ...]
    values: tuple[float, ...]
    tail_slope: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        knots, values = np.asarray(self.knots), np.asarray(self.values)
        inside = np.interp(x, knots, values)
        below = values[0] + (x - knots[0]) * self.tail_slope
        above = values[-1] + (x - knots[-1]) * self.tail_slope
        return np.where(x < knots[0], below, np.where(x > knots[-1], above, inside))

    @property
    def fitted_range(self) -> tuple[float, float]:
        """The predictions the map was fitted on span ``knots[0]..knots[-1]``; outside them it is a line."""
        return self.knots[0], self.knots[-1]

    def to_dict(self) -> dict:
        return {"kind": "monotone", "knots": list(self.knots), "values": list(self.values),
                "tail_slope": self.tail_slope}

    @classmethod
    def from_dict(cls, values: dict) -> Calibration:
        return cls(tuple(map(float, values["knots"])), tuple(map(float, values["values"])),
                   float(values["tail_slope"]))


def fit_calibration(pred: np.ndarray, mos: np.ndarray) -> Calibration:
    """The monotone piecewise-linear least-squares map from ``pred`` to ``mos`` (same length, finite).

    Knots sit at quantiles of ``pred`` (one segment per :data:`VIDEOS_PER_SEGMENT` videos, at most
    :data:`MAX_SEGMENTS`); the slopes are bounded below by :data:`MIN_SLOPE_SHARE` of the average slope of
    the least-squares line (or of the MOS spread over the prediction spread, when that line is flat or falls).
    """
    pred, mos = np.asarray(pred, np.float64).ravel(), np.asarray(mos, np.float64).ravel()
    if pred.shape != mos.shape or len(pred) < 2 or not (np.isfinite(pred).all() and np.isfinite(mos).all()):
        raise ValueError(f"expected two finite arrays of one length >= 2, got {pred.shape} and {mos.shape}")
    low, high = float(pred.min()), float(pred.max())
    if high - low <= 1e-12 * max(1.0, abs(low)):  # no spread to fit: a unit-slope line through the mean
        centre = float(mos.mean())
        return Calibration((low, low + 1.0), (centre, centre + 1.0), 1.0)
    segments = int(np.clip(len(pred) // VIDEOS_PER_SEGMENT, 1, MAX_SEGMENTS))
    knots = np.unique(np.quantile(pred, np.linspace(0, 1, segments + 1)))
    floor = MIN_SLOPE_SHARE * _average_slope(pred, mos)
    # g(x) = a + sum_j s_j * clip(x - k_j, 0, k_{j+1} - k_j): linear in (a, s), slopes s_j >= floor
    widths = np.diff(knots)
    design = np.column_stack([np.ones_like(pred), np.clip(pred[:, None] - knots[None, :-1], 0, widths)])
    bounds = ([-np.inf, *[floor] * len(widths)], [np.inf] * (len(widths) + 1))
    solution = lsq_linear(design, mos, bounds=bounds).x
    values = solution[0] + np.concatenate([[0.0], np.cumsum(solution[1:] * widths)])
    tail = (values[-1] - values[0]) / (knots[-1] - knots[0])
    return Calibration(tuple(map(float, knots)), tuple(map(float, values)), float(tail))


def _average_slope(pred: np.ndarray, mos: np.ndarray) -> float:
    """The least-squares slope from ``pred`` to ``mos`` when it rises, else the spread ratio (always > 0)."""
    centred = pred - pred.mean()
    slope = float(centred @ (mos - mos.mean())) / float(centred @ centred)
    if slope > 0:
        return slope
    return max(float(np.std(mos)), 1e-6) / float(np.std(pred))
