"""The reports' plots, drawn with matplotlib and returned as PNG data URIs to embed.

Figures are made with ``matplotlib.figure.Figure`` and its Agg canvas directly, not pyplot: no global figure
state, no GUI backend, nothing to close, safe in worker processes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.fit.calibration import Calibration
from pipeline.metrics import Logistic4
from pipeline.report.html import data_uri

_DPI = 100
_BLUE, _ORANGE, _RED, _GREY = "#2b6cb0", "#dd8a2e", "#c0392b", "#5b6475"


def _figure(width: float, height: float, columns: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    axes = fig.subplots(1, columns)
    for ax in np.atleast_1d(axes):
        ax.grid(True, color="#e5e8ee", lw=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, axes


def _png(fig) -> str:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return data_uri(buffer.getvalue(), "image/png")


def histogram(scores: np.ndarray, label: str = "score") -> str:
    """Histogram of the video scores."""
    fig, ax = _figure(4.6, 2.8)
    ax.hist(scores, bins=min(40, max(5, int(np.sqrt(len(scores))))), color=_BLUE, edgecolor="white", lw=0.5)
    ax.set_xlabel(label)
    ax.set_ylabel("videos")
    return _png(fig)


def scatter(predicted: np.ndarray, mos: np.ndarray, logistic: Logistic4, title: str) -> str:
    """Predicted score against MOS, one dot per video, with the logistic fitted from the one to the other."""
    fig, ax = _figure(4.2, 3.8)
    few = len(mos) < 2000  # thousands of dots: smaller and fainter, so dense regions still read as dense
    ax.scatter(predicted, mos, s=16 if few else 3, alpha=0.7 if few else 0.3, color=_BLUE, lw=0,
               label=f"videos (n={len(mos)})")
    x = np.linspace(float(np.min(predicted)), float(np.max(predicted)), 200)
    ax.plot(x, logistic(x), color="black", lw=1.4, label="fitted logistic")
    ax.set_xlabel("predicted score")
    ax.set_ylabel("MOS")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return _png(fig)


def calibration_curve(calibration: Calibration, points: tuple[np.ndarray, np.ndarray] | None = None,
                      extend: float = 0.25) -> str:
    """The calibration from raw prediction to score over its fitted range and ``extend`` of that range beyond
    each end, where it is a line (the tails): how a video predicted past every training video is scored.
    ``points`` (raw predictions, MOS), the out-of-fold videos it was fitted on, are drawn behind it."""
    fig, ax = _figure(4.6, 3.6)
    low, high = calibration.fitted_range
    margin = extend * (high - low)
    ax.axvspan(low, high, color=_GREY, alpha=0.08, lw=0, label="fitted range")
    if points is not None:
        ax.scatter(*points, s=8, alpha=0.35, color=_GREY, lw=0,
                   label=f"training videos, out of fold (n={len(points[0])})")
    inside = np.linspace(low, high, 200)
    ax.plot(inside, calibration(inside), color=_BLUE, lw=1.6, label="calibration")
    for start, stop in ((low - margin, low), (high, high + margin)):
        tail = np.array([start, stop])
        ax.plot(tail, calibration(tail), color=_ORANGE, lw=1.6, ls="--",
                label="linear tails (extrapolated)" if start < low else None)
    ax.set_xlabel("raw prediction (MOS scale)")
    ax.set_ylabel("score (points: MOS)")
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return _png(fig)


def training_curves(history: pd.DataFrame, best_epoch: int | None, phase: str) -> str:
    """One phase's training loss (and its terms) and validation SROCC/PLCC per epoch; the kept epoch marked."""
    fig, (loss, val) = _figure(9.0, 3.0, columns=2)
    trained = history[history["epoch"] > 0]
    loss.plot(trained["epoch"], trained["train_loss"], color=_BLUE, marker="o", ms=3, label="loss")
    for column, colour in (("train_mse", _ORANGE), ("train_rank", _GREY)):
        if column in trained:
            loss.plot(trained["epoch"], trained[column], color=colour, lw=1, ls="--", label=column[6:])
    loss.set_title(f"{phase}: training loss", fontsize=10)
    validated = history[history["val_srocc"].notna()]  # large fits that keep their last epoch validate less often
    val.plot(validated["epoch"], validated["val_srocc"], color=_BLUE, marker="o", ms=3, label="out-of-fold SROCC")
    if "val_plcc" in validated:
        val.plot(validated["epoch"], validated["val_plcc"], color=_ORANGE, lw=1, ls="--", label="out-of-fold PLCC")
    val.set_title(f"{phase}: out-of-fold validation", fontsize=10)
    from matplotlib.ticker import MaxNLocator

    for ax in (loss, val):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            ax.axvline(best_epoch, color=_RED, lw=1, ls=":", label=f"kept epoch {best_epoch}")
        ax.legend(fontsize=8, frameon=False)
    if best_epoch is not None:
        best = history[history["epoch"] == best_epoch]["val_srocc"]
        val.plot([best_epoch] * len(best), best, marker="*", ms=12, color=_RED, lw=0)
    return _png(fig)


def curves_by_phase(history: pd.DataFrame, best_epochs: Mapping[str, int]) -> dict[str, str]:
    """:func:`training_curves` of every phase in ``history`` (a run's ``history.csv``), in its order."""
    return {phase: training_curves(rows, best_epochs.get(phase), phase)
            for phase, rows in history.groupby("phase", sort=False)}
