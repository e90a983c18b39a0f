"""Prediction intervals from cross-fitting (CV+, Barber et al. 2021): how far a score can be from the MOS.

Each member of a fitted model was trained without one fold of the training videos (grouped by source
content), and its errors on that fold are errors on content it never saw. For a new video the interval is
spread from each member's own calibrated prediction by the errors of the videos that member did not train
on: ``[q_lo{g(mu_k(x)) - R_i}, q_hi{g(mu_k(x)) + R_i}]`` over every training video ``i`` of fold ``k``.
Members that disagree on a video widen its interval, so unfamiliar content gets wider intervals than the
residuals alone would give.

The level is chosen when scoring (default :data:`DEFAULT_LEVEL`): the model keeps each fold's residual
distribution as :data:`QUANTILES` quantiles, a fixed size whatever the data set's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_LEVEL = 0.8  # an 80 % prediction interval: the share of videos whose MOS it should hold
QUANTILES = 101  # per fold: residual quantiles kept in the model file (0, 1, ..., 100 %)


@dataclass(frozen=True)
class Residuals:
    """Absolute out-of-fold errors on the score scale: per member, ``QUANTILES`` quantiles of its fold's, and
    the fold's size (the quantiles' weight)."""

    quantiles: np.ndarray  # float64 (members, QUANTILES)
    counts: np.ndarray  # int64 (members,)

    @classmethod
    def of(cls, errors: np.ndarray, folds: np.ndarray, members: int) -> Residuals:
        """From each training video's absolute error ``|MOS - score|`` and the member ``folds`` left it out of."""
        errors = np.abs(np.asarray(errors, np.float64))
        grid = np.linspace(0, 1, QUANTILES)
        counts = np.bincount(folds, minlength=members)
        quantiles = np.stack([np.quantile(errors[folds == k], grid) if counts[k] else np.zeros(QUANTILES)
                              for k in range(members)])
        return cls(quantiles, counts.astype(np.int64))

    def interval(self, member_scores: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` per row of ``member_scores`` ``(rows, members)`` (calibrated scores of each member), or
        ``(rows, 1)``: one score for every member's residuals (a training video, scored by the member that left it
        out, which the other members' folds then judge as well).

        The residuals are absolute errors, so each side is taken at the whole miscoverage ``1 - level`` (with all
        members agreeing, the interval is the score plus or minus the ``level`` quantile of the errors); the
        upper level carries the finite-sample correction of conformal prediction, ``(1 + 1/n)``. A member
        without a held-out fold (weight 0) does not count.
        """
        if not 0 < level < 1:
            raise ValueError(f"an interval level must be between 0 and 1, got {level}")
        member_scores = np.broadcast_to(np.asarray(member_scores, np.float64), (len(member_scores), len(self.counts)))
        n = int(self.counts.sum())
        weights = np.repeat(self.counts / QUANTILES, QUANTILES)  # (members * QUANTILES,)
        upper = min(1.0, level * (1 + 1 / n)) if n else 1.0
        spread = self.quantiles.reshape(-1)  # (members * QUANTILES,) aligned with weights
        centres = np.repeat(member_scores, QUANTILES, axis=1)  # (rows, members * QUANTILES)
        low = _weighted_quantile(centres - spread, weights, 1 - upper)
        high = _weighted_quantile(centres + spread, weights, upper)
        return low, high

    def to_dict(self) -> dict:
        return {"quantiles": self.quantiles.tolist(), "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, values: dict) -> Residuals:
        return cls(np.asarray(values["quantiles"], np.float64), np.asarray(values["counts"], np.int64))


def coverage(mos: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """The share of videos whose MOS lies inside its interval (NaN for none, or for bounds that are NaN: a model
    without intervals)."""
    mos, low, high = (np.asarray(a, np.float64) for a in (mos, low, high))
    if not len(mos) or np.isnan(low).any() or np.isnan(high).any():
        return float("nan")
    return float(np.mean((low <= mos) & (mos <= high)))


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of each row of ``values`` with the same ``weights`` per column (lower value on ties)."""
    order = np.argsort(values, axis=1, kind="stable")
    cumulative = np.cumsum(weights[order], axis=1)
    cumulative /= cumulative[:, -1:]
    at = np.minimum((cumulative < q).sum(axis=1), values.shape[1] - 1)
    return np.take_along_axis(values, order, axis=1)[np.arange(len(values)), at]
