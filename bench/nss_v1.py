"""NSS version 1 (every pixel, all frame differences, numpy/scipy), kept only to compare version 2 against.

``bench/nss.py`` times it and ``bench/nss_probe.py`` ranks with it beside ``pipeline.nss``. The distribution
fits and the names are the pipeline's; what differs is what version 2 samples (``pipeline.nss``'s
docstring): here the 7x7 window replicates the frame's edges and every pixel and frame difference counts.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from pipeline.nss import _LUMA, _SCALES, _aggd_from_moments, _ggd_from_moments, _log_variances

# The 7x7 Gaussian (sigma 7/6) normalised in float32, exactly as version 1 had it.
_TAPS_V1 = np.exp(-0.5 * (np.arange(-3, 4) / (7 / 6)) ** 2).astype(np.float32)
_TAPS_V1 /= _TAPS_V1.sum()
# Smallest side an image is padded up to, so neighbour products exist at every scale.
_MIN_SIDE = 2
_REPEAT_LEVEL = 0.5


def _moments(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """E|x|, E x^2, E[x^2 | x<0], E[x^2 | x>0] over the last two axes, as float64."""
    x = x.reshape(*x.shape[:-2], -1)
    magnitude = np.abs(x)
    total = np.einsum("...i,...i->...", x, x, dtype=np.float64)
    signed = np.einsum("...i,...i->...", x, magnitude, dtype=np.float64)
    left_sum, right_sum = np.maximum(total - signed, 0) / 2, np.maximum(total + signed, 0) / 2
    n_left, n_right = np.count_nonzero(x < 0, axis=-1), np.count_nonzero(x > 0, axis=-1)
    return (
        magnitude.sum(axis=-1, dtype=np.float64) / x.shape[-1],
        total / x.shape[-1],
        np.divide(left_sum, n_left, out=np.zeros_like(left_sum), where=n_left > 0),
        np.divide(right_sum, n_right, out=np.zeros_like(right_sum), where=n_right > 0),
    )


def _blur(y: np.ndarray) -> np.ndarray:
    return ndimage.correlate1d(ndimage.correlate1d(y, _TAPS_V1, axis=-2, mode="nearest"), _TAPS_V1, axis=-1,
                               mode="nearest")


def _scale_stats(y: np.ndarray) -> np.ndarray:
    y = y - y.mean(axis=(-2, -1), keepdims=True)
    mu = _blur(y)
    m = (y - mu) / (np.sqrt(np.abs(_blur(y * y) - mu * mu)) + 1.0)
    products = (m[:, :, :-1] * m[:, :, 1:], m[:, :-1, :] * m[:, 1:, :], m[:, :-1, :-1] * m[:, 1:, 1:],
                m[:, :-1, 1:] * m[:, 1:, :-1])
    mean_abs, mean_sq, _, _ = _moments(m)
    parts = [_ggd_from_moments(mean_abs, mean_sq)] + [_aggd_from_moments(*_moments(p)) for p in products]
    return np.concatenate(parts, axis=-1)


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
    return _log_variances(stats).reshape(-1)


def luma(rgb: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) uint8 RGB tensor -> (..., H, W) float32 luma on the 0-255 scale."""
    return np.einsum("c,...chw->...hw", np.array(_LUMA, dtype=np.float32), rgb.cpu().numpy().astype(np.float32))


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
    """The version-1 descriptor of one chunk: float32 (NSS_DIM,), in the order of ``pipeline.nss.NSS_NAMES``."""
    return np.concatenate([spatial_nss(key_frame), temporal_nss(clip)]).astype(np.float32)
