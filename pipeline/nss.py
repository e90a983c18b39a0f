"""Weight-free quality features: natural-scene statistics (NSS) of a chunk's key frame and clip.

Pristine natural images, once each pixel is normalised by its local mean and contrast, have
coefficients that follow a near-Gaussian law with a characteristic shape; blur, noise, blocking and
ringing bend that law in distortion-specific ways. Fitting a few parametric laws to those coefficients
gives a compact quality descriptor that needs no learned weights, which is why this module exists: the
pipeline can give a meaningful score on machines where the pretrained backbones cannot be downloaded.

What is computed (``NSS_NAMES`` lists every value in order):

* **Spatial, per key frame** (BRISQUE, Mittal, Moorthy & Bovik, "No-reference image quality assessment
  in the spatial domain", IEEE TIP 2012): on the luma at native resolution and at half resolution,
  the mean-subtracted contrast-normalised (MSCN) coefficients get a generalised-Gaussian (GGD) fit
  (shape, variance), and their products with the horizontal, vertical and two diagonal neighbours get
  asymmetric-GGD (AGGD) fits (shape, mean, left variance, right variance): 18 values per scale.
* **Temporal, per clip** (frame-difference NSS as in RAPIQUE, Tu, Yu, Wang, Birkbeck, Adsumilli & Bovik,
  "RAPIQUE: Rapid and accurate video quality prediction of user generated content", IEEE OJSP 2021;
  the frame-difference statistics of V-BLIINDS, Saad, Bovik & Charrier 2014 and TLVQM, Korhonen 2019
  follow the same idea): the same 18 statistics per scale of the luma differences of consecutive
  clip frames, averaged over the clip; plus three motion values (mean and spread of the log
  frame-difference energy, fraction of repeated frames), which the normalised statistics cannot see.

Variances are given as logarithms: they span decades, are 0 on flat content, and a regressor on
standardised inputs handles their logs far better. Chroma statistics (the same fits on Cb and Cr) were
tried and did not improve the grouped ridge probe on vqa-dev (BENCHMARKS.md), so luma only.

Fits use moment matching: the GGD shape from the ratio E[|x|]^2 / E[x^2] (Sharifi & Leon-Garcia,
"Estimation of shape parameter for generalized Gaussian distributions in subband decompositions of
video", IEEE TCSVT 1995), the AGGD shape and side variances as in Lasmar, Stitou & Berthoumieu,
"Multiscale skewed heavy tailed model for texture analysis", ICIP 2009. Everything is vectorised
numpy/scipy in float32 with float64 moment sums; the result is deterministic and finite for any
input, including flat frames, frames of a few pixels, and pure noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage, special

from pipeline.errors import ArrayError

__all__ = [
    "NSS_DIM", "NSS_NAMES", "NSS_VERSION", "fit_aggd", "fit_ggd", "log_variances", "mscn", "nss_features",
    "nss_features_batch", "nss_statistics", "spatial_nss", "temporal_nss",
]

# Shape parameters are looked up on this grid, as in the BRISQUE reference code (0.2:0.001:10).
_SHAPES = np.arange(0.2, 10.0 + 1e-9, 0.001)
# rho(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)): increasing in a, from ~0 to 0.75.
_RHO = np.exp(2 * special.gammaln(2 / _SHAPES) - special.gammaln(1 / _SHAPES) - special.gammaln(3 / _SHAPES))
# Local statistics window of BRISQUE: 7x7 Gaussian, sigma 7/6 (separable).
_TAPS = np.exp(-0.5 * (np.arange(-3, 4) / (7 / 6)) ** 2).astype(np.float32)
_TAPS /= _TAPS.sum()
# Contrast stabiliser for 8-bit pixel values (BRISQUE's C = 1).
_C = 1.0
# Luma of RGB, BT.601 weights (MATLAB rgb2gray, used by the BRISQUE and RAPIQUE reference code).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Smallest side an image is padded up to, so neighbour products exist at every scale.
_MIN_SIDE = 2
_SCALES = 2
_PAIRS = ("h", "v", "d1", "d2")
# Variances span decades and hit 0 on flat content: a log with this floor keeps them finite and linear-friendly.
_LOG_EPS = 1e-6
# A frame difference whose mean absolute value is below this (8-bit levels) counts as a repeated frame.
_REPEAT_LEVEL = 0.5
_MOTION = ("motion_logenergy_mean", "motion_logenergy_std", "motion_repeat_fraction")


def _names() -> tuple[str, ...]:
    per_scale = ["ggd_shape", "ggd_logvar"]
    for pair in _PAIRS:
        per_scale += [f"{pair}_shape", f"{pair}_mean", f"{pair}_loglvar", f"{pair}_logrvar"]
    domains = ("spatial", "temporal")
    nss = [f"{domain}_s{scale}_{name}" for domain in domains for scale in range(_SCALES) for name in per_scale]
    return (*nss, *_MOTION)


NSS_NAMES: tuple[str, ...] = _names()
NSS_DIM: int = len(NSS_NAMES)
# Identifies this definition of the descriptor: bump it whenever any value would change, so a store's
# manifest can tell features of another definition apart even when their width is the same.
NSS_VERSION: int = 1
# Positions of the variances inside one scale's 18 statistics; stored as log(variance + _LOG_EPS).
_VARIANCES = np.array([1] + [2 + 4 * p + k for p in range(len(_PAIRS)) for k in (2, 3)])


def _shape_from_rho(rho: np.ndarray) -> np.ndarray:
    """Inverse of rho(a) on the lookup grid, linearly interpolated and clipped to [0.2, 10]."""
    return np.interp(rho, _RHO, _SHAPES)


def _ggd_from_moments(mean_abs: np.ndarray, mean_sq: np.ndarray) -> np.ndarray:
    """(shape, variance) of zero-mean GGDs with these moments; (..., 2) float64."""
    rho = np.divide(mean_abs**2, mean_sq, out=np.zeros_like(mean_sq), where=mean_sq > 0)
    return np.stack([_shape_from_rho(rho), mean_sq], axis=-1)


def _aggd_from_moments(
    mean_abs: np.ndarray, mean_sq: np.ndarray, left_sq: np.ndarray, right_sq: np.ndarray
) -> np.ndarray:
    """(shape, mean, left variance, right variance) of AGGDs with these moments; (..., 4) float64.

    ``left_sq`` and ``right_sq`` are E[x^2 | x < 0] and E[x^2 | x > 0] (0 where a side is empty).
    """
    left, right = np.sqrt(left_sq), np.sqrt(right_sq)
    # gamma = sigma_l / sigma_r; a missing side makes the law one-sided, clipped to stay finite.
    one_sided = np.where(left > 0, np.inf, 1.0)
    gamma = np.clip(np.divide(left, right, out=one_sided, where=right > 0), 1e-3, 1e3)
    r_hat = np.divide(mean_abs**2, mean_sq, out=np.zeros_like(mean_sq), where=mean_sq > 0)
    rho = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma**2 + 1) ** 2
    shape = _shape_from_rho(rho)
    log_ratio = special.gammaln(2 / shape) - 0.5 * (special.gammaln(1 / shape) + special.gammaln(3 / shape))
    mean = (right - left) * np.exp(log_ratio)
    return np.stack([shape, mean, left_sq, right_sq], axis=-1)


def _moments(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """E|x|, E x^2, E[x^2 | x<0], E[x^2 | x>0] over the last two axes, as float64."""
    x = x.reshape(*x.shape[:-2], -1)
    magnitude = np.abs(x)
    # The one-sided sums follow from the total and the signed total: sum x|x| = right - left.
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


def fit_ggd(x: np.ndarray) -> tuple[float, float]:
    """(shape, variance) of the zero-mean generalised Gaussian fitted to samples ``x`` by moment matching.

    Shape 2 is Gaussian, 1 Laplacian; a constant-zero sample gives the smallest shape on the grid (0.2).
    """
    mean_abs, mean_sq, _, _ = _moments(np.asarray(x, dtype=np.float64).reshape(1, 1, -1))
    shape, var = _ggd_from_moments(mean_abs, mean_sq)[0]
    return float(shape), float(var)


def fit_aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """(shape, mean, left variance, right variance) of the asymmetric GGD fitted to samples ``x``."""
    moments = _moments(np.asarray(x, dtype=np.float64).reshape(1, 1, -1))
    shape, mean, left_var, right_var = _aggd_from_moments(*moments)[0]
    return float(shape), float(mean), float(left_var), float(right_var)


def _blur(y: np.ndarray) -> np.ndarray:
    """7x7 Gaussian filter of each image in a (N, H, W) stack, edges replicated."""
    return ndimage.correlate1d(ndimage.correlate1d(y, _TAPS, axis=-2, mode="nearest"), _TAPS, axis=-1, mode="nearest")


def mscn(y: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a (N, H, W) float32 stack of 8-bit-scale images."""
    # Local variance as E[y^2] - E[y]^2 loses precision in float32 far from 0: centre each image first.
    y = y - y.mean(axis=(-2, -1), keepdims=True)
    mu = _blur(y)
    sigma = np.sqrt(np.abs(_blur(y * y) - mu * mu))
    return (y - mu) / (sigma + _C)


def _scale_stats(y: np.ndarray) -> np.ndarray:
    """The 18 BRISQUE statistics of each image of a (N, H, W) stack; (N, 18) float64."""
    m = mscn(y)
    products = (
        m[:, :, :-1] * m[:, :, 1:],  # horizontal neighbour
        m[:, :-1, :] * m[:, 1:, :],  # vertical
        m[:, :-1, :-1] * m[:, 1:, 1:],  # main diagonal
        m[:, :-1, 1:] * m[:, 1:, :-1],  # anti-diagonal
    )
    mean_abs, mean_sq, _, _ = _moments(m)
    parts = [_ggd_from_moments(mean_abs, mean_sq)]
    parts += [_aggd_from_moments(*_moments(p)) for p in products]
    return np.concatenate(parts, axis=-1)


def _halve(y: np.ndarray) -> np.ndarray:
    """2x2 block mean (antialiased half resolution) of a (N, H, W) stack; an odd last row/column is dropped.

    A stack too small to halve into at least ``_MIN_SIDE`` pixels a side is returned as it is.
    """
    n, h, w = y.shape
    if h < 2 * _MIN_SIDE or w < 2 * _MIN_SIDE:
        return y
    y = y[:, : h - h % 2, : w - w % 2]
    return y.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def nss_statistics(y: np.ndarray, scales: int = _SCALES) -> np.ndarray:
    """The 18 BRISQUE statistics of each plane of a (N, H, W) float32 stack at ``scales`` dyadic scales.

    Returns (N, scales, 18) float64 with plain variances (``log_variances`` gives the descriptor's form).
    The building block of the descriptor, public so other planes (chroma) or scales can be probed.
    """
    pad = ((0, 0), (0, max(0, _MIN_SIDE - y.shape[1])), (0, max(0, _MIN_SIDE - y.shape[2])))
    y = np.pad(y, pad, mode="edge")
    stats = []
    for scale in range(scales):
        if scale:
            y = _halve(y)
        stats.append(_scale_stats(y))
    return np.stack(stats, axis=1)


def log_variances(stats: np.ndarray) -> np.ndarray:
    """(..., 18) statistics with their variances replaced by log(variance + _LOG_EPS), flattened to 1-D."""
    stats = stats.copy()
    stats[..., _VARIANCES] = np.log(stats[..., _VARIANCES] + _LOG_EPS)
    return stats.reshape(-1)


def _motion(diffs: np.ndarray) -> np.ndarray:
    """Mean and spread of log frame-difference energy, and the fraction of repeated frames, of a (T-1, H, W) stack.

    Normalised differences discard how much changes; these three keep it (as TLVQM's motion features
    do), and the repeat fraction exposes dropped or duplicated frames (judder), which NSS cannot see.
    """
    energy = np.log1p(np.mean(diffs * diffs, axis=(1, 2), dtype=np.float64))
    repeated = np.mean(np.abs(diffs), axis=(1, 2), dtype=np.float64) < _REPEAT_LEVEL
    return np.array([energy.mean(), energy.std(), repeated.mean()])


def _luma(rgb: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) uint8 RGB tensor on any device -> (..., H, W) float32 luma on the 0-255 scale."""
    x = rgb.detach().cpu().numpy().astype(np.float32)
    return np.einsum("c,...chw->...hw", _LUMA, x)


def spatial_nss(key_frame: torch.Tensor) -> np.ndarray:
    """The key-frame part of the descriptor: float64 (36,), the ``spatial_*`` entries of ``NSS_NAMES``."""
    if key_frame.dtype != torch.uint8 or key_frame.ndim != 3 or key_frame.shape[0] != 3:
        got = f"{key_frame.dtype} {tuple(key_frame.shape)}"
        raise ArrayError(f"key_frame must be a uint8 (3, H, W) tensor, got {got}")
    return log_variances(nss_statistics(_luma(key_frame)[None])[0])


def temporal_nss(clip: torch.Tensor) -> np.ndarray:
    """The clip part of the descriptor: float64 (39,), the ``temporal_*`` and ``motion_*`` entries of NSS_NAMES."""
    if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[1] != 3 or clip.shape[0] < 2:
        raise ArrayError(f"clip must be a uint8 (T >= 2, 3, S, S) tensor, got {clip.dtype} {tuple(clip.shape)}")
    y = _luma(clip)
    diffs = y[1:] - y[:-1]
    # Averaged over the clip before the log, so a few repeated (all-zero) differences do not dominate.
    temporal = nss_statistics(diffs).mean(axis=0)
    return np.concatenate([log_variances(temporal), _motion(diffs)])


def nss_features(key_frame: torch.Tensor, clip: torch.Tensor) -> np.ndarray:
    """The NSS descriptor of one chunk: float32 (NSS_DIM,), values in the order of ``NSS_NAMES``.

    ``key_frame`` is the chunk's uint8 (3, H, W) RGB key frame at native size, ``clip`` its uint8
    (T, 3, S, S) RGB clip; both may live on any device.
    """
    return np.concatenate([spatial_nss(key_frame), temporal_nss(clip)]).astype(np.float32)


def nss_features_batch(key_frames: Sequence[torch.Tensor], clips: Sequence[torch.Tensor]) -> np.ndarray:
    """``nss_features`` of several chunks; float32 (len(key_frames), NSS_DIM). Key frames may differ in size."""
    if len(key_frames) != len(clips):
        raise ArrayError(f"got {len(key_frames)} key frames but {len(clips)} clips")
    rows = [nss_features(k, c) for k, c in zip(key_frames, clips)]
    return np.stack(rows) if rows else np.zeros((0, NSS_DIM), dtype=np.float32)
