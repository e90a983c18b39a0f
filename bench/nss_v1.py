"""NSS version 1 (every pixel, all frame differences, numpy/scipy), kept only to compare later versions against.

``bench/nss.py`` times it and ``bench/nss_probe.py`` ranks with it beside ``pipeline.nss``. The distribution
fits are the pipeline's public ``fit_ggd`` and ``fit_aggd``; the 75 values, in the order of ``NSS_V1_NAMES``:
on the luma of the key frame and of each of the clip's consecutive-frame differences, at native and half
resolution (2x2 block mean), the GGD fit of the MSCN coefficients (shape, log variance) and the AGGD fits of
their products with the four neighbours (shape, mean, log left and right variance), the 7x7 window
replicating the frame's edges; the differences' statistics averaged over the clip (variances before the log);
then the mean and spread of the log frame-difference energy and the fraction of repeated frames.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from pipeline.nss import fit_aggd, fit_ggd

_SCALES = 2
_PAIRS = ("h", "v", "d1", "d2")
_PER_SCALE = ("ggd_shape", "ggd_logvar", *(f"{p}_{s}" for p in _PAIRS for s in ("shape", "mean", "loglvar", "logrvar")))
NSS_V1_NAMES: tuple[str, ...] = (
    *(f"{domain}_s{scale}_{name}" for domain in ("spatial", "temporal") for scale in range(_SCALES)
      for name in _PER_SCALE),
    "motion_logenergy_mean", "motion_logenergy_std", "motion_repeat_fraction",
)
# Positions of the variances among one scale's 18 statistics, logged as log(variance + 1e-6).
_VARIANCES = [i for i, name in enumerate(_PER_SCALE) if "logvar" in name or name.endswith(("loglvar", "logrvar"))]
_LOG_EPS = 1e-6
# The 7x7 Gaussian (sigma 7/6) normalised in float32, exactly as version 1 had it.
_TAPS = np.exp(-0.5 * (np.arange(-3, 4) / (7 / 6)) ** 2).astype(np.float32)
_TAPS /= _TAPS.sum()
# Luma of RGB, BT.601 weights.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Smallest side an image is padded up to, so neighbour products exist at every scale.
_MIN_SIDE = 2
_REPEAT_LEVEL = 0.5


def _blur(y: np.ndarray) -> np.ndarray:
    return ndimage.correlate1d(ndimage.correlate1d(y, _TAPS, axis=-2, mode="nearest"), _TAPS, axis=-1, mode="nearest")


def _plane_stats(m: np.ndarray) -> np.ndarray:
    """The 18 statistics of one MSCN plane (H, W), plain variances."""
    products = (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[:-1, 1:] * m[1:, :-1])
    return np.concatenate([fit_ggd(m.ravel()), *(fit_aggd(p.ravel()) for p in products)])


def _scale_stats(y: np.ndarray) -> np.ndarray:
    y = y - y.mean(axis=(-2, -1), keepdims=True)
    mu = _blur(y)
    m = (y - mu) / (np.sqrt(np.abs(_blur(y * y) - mu * mu)) + 1.0)
    return np.stack([_plane_stats(plane) for plane in m])


def nss_statistics(y: np.ndarray, scales: int = _SCALES) -> np.ndarray:
    """The 18 statistics of each plane of a (N, H, W) float32 stack at ``scales`` dyadic scales: (N, scales, 18)."""
    y = np.pad(y, ((0, 0), (0, max(0, _MIN_SIDE - y.shape[1])), (0, max(0, _MIN_SIDE - y.shape[2]))), mode="edge")
    stats = []
    for scale in range(scales):
        n, h, w = y.shape
        if scale and h >= 2 * _MIN_SIDE and w >= 2 * _MIN_SIDE:
            y = y[:, : h - h % 2, : w - w % 2].reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
        stats.append(_scale_stats(y))
    return np.stack(stats, axis=1)


def log_variances(stats: np.ndarray) -> np.ndarray:
    """(..., 18) statistics with logged variances, flattened to 1-D."""
    stats = stats.copy()
    stats[..., _VARIANCES] = np.log(stats[..., _VARIANCES] + _LOG_EPS)
    return stats.reshape(-1)


def luma(rgb: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) uint8 RGB tensor -> (..., H, W) float32 luma on the 0-255 scale."""
    return np.einsum("c,...chw->...hw", _LUMA, rgb.cpu().numpy().astype(np.float32))


def spatial_nss(key_frame: torch.Tensor) -> np.ndarray:
    """The version-1 ``spatial_*`` entries: float64 (36,)."""
    return log_variances(nss_statistics(luma(key_frame)[None])[0])


def temporal_nss(clip: torch.Tensor) -> np.ndarray:
    """The version-1 ``temporal_*`` and ``motion_*`` entries: float64 (39,)."""
    y = luma(clip)
    diffs = y[1:] - y[:-1]
    energy = np.log1p(np.mean(diffs * diffs, axis=(1, 2), dtype=np.float64))
    repeated = np.mean(np.abs(diffs), axis=(1, 2), dtype=np.float64) < _REPEAT_LEVEL
    motion = np.array([energy.mean(), energy.std(), repeated.mean()])
    return np.concatenate([log_variances(nss_statistics(diffs).mean(axis=0)), motion])


def nss_features(key_frame: torch.Tensor, clip: torch.Tensor) -> np.ndarray:
    """The version-1 descriptor of one chunk: float32 (75,), in the order of ``NSS_V1_NAMES``."""
    return np.concatenate([spatial_nss(key_frame), temporal_nss(clip)]).astype(np.float32)
