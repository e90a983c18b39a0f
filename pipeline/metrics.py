"""Quality-prediction metrics: SROCC, KROCC, PLCC, RMSE, pairwise ranking accuracy.

PLCC and RMSE are reported twice, raw and after the 4-parameter logistic of the VQEG practice,
``f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))``, fitted from predictions to MOS, so a result always
says which one it is. The fitted logistic is returned too: it maps raw model outputs onto the MOS scale.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats


@dataclass(frozen=True)
class Logistic4:
    """The 4-parameter logistic from raw predictions to MOS (the identity when ``linear`` is set)."""

    b1: float
    b2: float
    b3: float
    b4: float
    linear: bool = False  # the fit failed: an affine least-squares map stands in (b1 = slope, b2 = intercept)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.linear:
            return self.b1 * x + self.b2
        z = np.clip(-(x - self.b3) / abs(self.b4), -500.0, 500.0)
        return self.b2 + (self.b1 - self.b2) / (1.0 + np.exp(z))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Logistic4":
        return cls(**values)


def fit_logistic(pred: np.ndarray, mos: np.ndarray, asymptotes: tuple[float, float] | None = None) -> Logistic4:
    """Return the logistic that best maps ``pred`` onto ``mos``; an affine map, with a warning, if the fit fails.

    ``asymptotes`` (low, high) bounds both plateaus: a calibration fitted on a few validation videos must not
    send unseen videos far outside the MOS scale it was trained on.
    """
    pred, mos = _validate(pred, mos)
    if np.ptp(pred) == 0:
        return _affine(pred, mos)
    start = [float(mos.max()), float(mos.min()), float(np.mean(pred)), float(np.std(pred)) or 1.0]
    bounds = (-np.inf, np.inf)
    if asymptotes is not None and asymptotes[1] > asymptotes[0]:
        low, high = map(float, asymptotes)
        bounds = ([low, low, -np.inf, -np.inf], [high, high, np.inf, np.inf])
        start[:2] = np.clip(start[:2], low, high)
    try:  # least_squares, not curve_fit: the parameter covariance curve_fit also computes overflows, unused
        result = optimize.least_squares(
            lambda b: Logistic4(*b)(pred) - mos, start, jac=lambda b: _logistic_jacobian(pred, *b), bounds=bounds,
            method="lm" if asymptotes is None else "trf", max_nfev=20000,
        )
        fitted = Logistic4(*map(float, result.x))
        if np.all(np.isfinite(fitted(pred))):
            return fitted
    except (RuntimeError, ValueError):  # ValueError: fewer points than parameters
        pass
    warnings.warn(
        f"4-parameter logistic fit did not converge on {len(pred)} points; using an affine map instead", RuntimeWarning
    )
    return _affine(pred, mos)


def _affine(pred: np.ndarray, mos: np.ndarray) -> Logistic4:
    """The least-squares line from ``pred`` to ``mos``, or their mean where the predictions' spread is too small
    for one (a spread whose square underflows: numpy's polyfit fails to converge there)."""
    centred = pred - pred.mean()
    spread = float(centred @ centred)
    slope = float(centred @ (mos - mos.mean())) / spread if spread > 0 else 0.0
    slope = slope if np.isfinite(slope) else 0.0
    return Logistic4(slope, float(mos.mean() - slope * pred.mean()), 0.0, 1.0, linear=True)


def evaluate(mos: np.ndarray, pred: np.ndarray, logistic: Logistic4 | None = None) -> dict[str, float]:
    """Return ``srocc``, ``krocc``, ``plcc``, ``rmse`` (after the logistic), ``plcc_raw``, ``rmse_raw``,
    ``pair_accuracy`` and ``n``.

    The logistic is fitted on these predictions unless one is given (e.g. the training split's, for a test
    split). Correlations of constant predictions or constant MOS are NaN, with a warning, not an error.
    """
    mos, pred = _validate(mos, pred)
    mapped = (logistic or fit_logistic(pred, mos))(pred)
    constant = np.ptp(pred) == 0 or np.ptp(mos) == 0
    if constant:
        warnings.warn("constant predictions or MOS: correlations are undefined (NaN)", RuntimeWarning)
    return {
        "srocc": _correlation(stats.spearmanr, mos, pred, constant),
        "krocc": _correlation(stats.kendalltau, mos, pred, constant),
        "plcc": _correlation(stats.pearsonr, mos, mapped, constant or np.ptp(mapped) == 0),
        "rmse": _rmse(mos, mapped),
        "plcc_raw": _correlation(stats.pearsonr, mos, pred, constant),
        "rmse_raw": _rmse(mos, pred),
        "pair_accuracy": pair_accuracy(mos, pred),
        "n": int(len(mos)),
    }


def pair_accuracy(mos: np.ndarray, pred: np.ndarray) -> float:
    """Return the fraction of pairs with different MOS whose predictions are in the same order (ties count half).

    From Kendall's tau-b and the tie counts, in O(n log n) time and O(n) memory: listing the pairs took
    gigabytes at tens of thousands of videos (the out-of-fold validation of a large training set).
    """
    mos, pred = _validate(mos, pred)
    pairs = len(mos) * (len(mos) - 1) // 2
    mos_ties, pred_ties = _tied_pairs(mos), _tied_pairs(pred)
    both_ties = _tied_pairs(np.stack([mos, pred], axis=1))
    differing = pairs - mos_ties  # pairs with different MOS: concordant + discordant + tied in pred only
    if differing == 0:
        return float("nan")
    pred_only_ties = pred_ties - both_ties
    ordered = differing - pred_only_ties  # concordant + discordant
    if pairs == pred_ties or ordered == 0:  # constant predictions: every pair a tie
        return 0.5
    tau = stats.kendalltau(mos, pred).statistic  # (C - D) / sqrt((pairs - mos_ties) (pairs - pred_ties))
    balance = round(float(tau) * math.sqrt(float(differing) * float(pairs - pred_ties)))  # C - D, an integer
    concordant = (ordered + balance) / 2
    return float((concordant + 0.5 * pred_only_ties) / differing)


def _tied_pairs(values: np.ndarray) -> int:
    """The number of pairs of rows of ``values`` that are equal (rows of a 2-D array compared whole)."""
    _, counts = np.unique(values, axis=0, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def _logistic_jacobian(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """Analytic derivatives: finite differences stall when a parameter starts at (almost) zero."""
    scale = abs(b4)
    s = 1.0 / (1.0 + np.exp(np.clip(-(x - b3) / scale, -500.0, 500.0)))
    slope = (b1 - b2) * s * (1.0 - s)
    return np.stack([s, 1.0 - s, -slope / scale, -slope * (x - b3) / scale**2 * np.sign(b4)], axis=1)


def _correlation(func, a: np.ndarray, b: np.ndarray, undefined: bool) -> float:
    if undefined or len(a) < 2:
        return float("nan")
    return float(func(a, b)[0])


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def _validate(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"expected two arrays of equal length, got {a.size} and {b.size}")
    if a.size == 0:
        raise ValueError("expected at least one value, got empty arrays")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("expected finite values, got NaN or infinity")
    return a, b
