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
  follow the same idea): the same 18 statistics per scale of the luma differences of every pair of
  consecutive clip frames, at a quarter and an eighth of the clip's side (56 and 28 px for the 224 px
  clip), pooled over the clip into one fit; plus three motion values (mean and spread of the log
  frame-difference energy, fraction of repeated frames), which the normalised statistics cannot see.

**Sampled, so a chunk costs the same at any resolution (``NSS_VERSION`` 3).** Version 1 filtered every
pixel of the key frame and all 31 frame differences at the clip's size, which cost about as much as
decoding (0.2-0.3 CPU-s a 1080p chunk). Since version 2 the key frame's statistics come from fixed-size
samples of the same MSCN field:

* an evenly spread grid of ``_KEY_GRID`` x ``_KEY_GRID`` patches of ``_PATCH`` native pixels (the whole of
  a frame up to about 560 px a side, overlapping where it is smaller; about 12% of a 1080p frame's
  coefficients). Half resolution is the 2x2 block mean of each patch.
* MSCN coefficients exist only where the whole 7x7 window lies inside a patch (valid filtering), so a
  sampled coefficient at native resolution equals the full frame's at that pixel (at half resolution the
  2x2 blocks start at the patch's corner); version 1 replicated the frame's edges instead. A frame
  smaller than a patch (plus a pixel per grid step) is padded by replicating its last row and column.

**Every frame pair, at coarse scales (version 3).** Version 2 took the temporal statistics from 4 frame
pairs spread over the clip at the clip's own scale. 4 pairs alias with a periodic repeat pattern: judder
repeats each frame 2-3 times, and 4 pairs catch whatever share of the repeats their positions happen to hit.
Version 3 takes every pair again, as version 1 did, at a quarter of the clip's side (the 4x4 block mean of
its luma, the same field as two 2x2 halvings) and an eighth. Of the variants tried (every pair at the
clip's size, a half, a quarter and an eighth of it; per-pair fits averaged or one pooled fit), this one
ranked best on vqa-dev with a distortion family or the sources left out of training (BENCHMARKS.md, "NSS
features"). The pairs are pooled (their moment sums added before one fit), so a repeated frame's all-zero
difference weighs in as the share of the clip it is. Version 3 reads the whole clip's luma, a few frames at a
time, at version 2's cost a chunk (BENCHMARKS.md, "NSS features"). The motion values use every frame
difference, on every ``_MOTION_STRIDE``-th pixel in each direction of the clip. A clip smaller than 64 px a
side is first padded to 64 by replicating its last row and column.

Variances are given as logarithms: they span decades, are 0 on flat content, and a regressor on
standardised inputs handles their logs far better. Chroma statistics (the same fits on Cb and Cr) were
tried and did not improve the grouped ridge probe on vqa-dev (BENCHMARKS.md), so luma only.

Fits use moment matching: the GGD shape from the ratio E[|x|]^2 / E[x^2] (Sharifi & Leon-Garcia,
"Estimation of shape parameter for generalized Gaussian distributions in subband decompositions of
video", IEEE TCSVT 1995), the AGGD shape and side variances as in Lasmar, Stitou & Berthoumieu,
"Multiscale skewed heavy tailed model for texture analysis", ICIP 2009. The pixel work is torch in
float32 with separable filters on whatever device the frames are on (one host transfer per batch); the
fits to the pooled moments are float64 numpy. The result is finite for any input, including flat
frames, frames of a few pixels, and pure noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import special

from pipeline.errors import ArrayError

__all__ = [
    "NSS_DIM", "NSS_NAMES", "NSS_VERSION", "fit_aggd", "fit_ggd", "mscn", "nss_features", "nss_features_batch",
    "patch_statistics",
]

# Shape parameters are looked up on this grid, as in the BRISQUE reference code (0.2:0.001:10).
_SHAPES = np.arange(0.2, 10.0 + 1e-9, 0.001)
# rho(a) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)): increasing in a, from ~0 to 0.75.
_RHO = np.exp(2 * special.gammaln(2 / _SHAPES) - special.gammaln(1 / _SHAPES) - special.gammaln(3 / _SHAPES))
# Local statistics window of BRISQUE: 7x7 Gaussian, sigma 7/6 (separable).
_TAPS = np.exp(-0.5 * (np.arange(-3, 4) / (7 / 6)) ** 2)
_TAPS = tuple(float(t) for t in _TAPS / _TAPS.sum())
_HALO = len(_TAPS) // 2
# Contrast stabiliser for 8-bit pixel values (BRISQUE's C = 1).
_C = 1.0
# Luma of RGB, BT.601 weights (MATLAB rgb2gray, used by the BRISQUE and RAPIQUE reference code).
_LUMA = (0.299, 0.587, 0.114)
_SCALES = 2
_PAIRS = ("h", "v", "d1", "d2")
# Sampling (module docstring): MSCN side of a patch at half resolution, and the native patch that yields it.
_SIDE = 32
_PATCH = 2 * (_SIDE + 2 * _HALO)
_KEY_GRID = 8
# The temporal statistics' native scale: the clip halved this many times (a quarter of its side).
_CLIP_HALVINGS = 2
# Smallest side at that scale (clips are padded up to it): both of its scales keep a few MSCN coefficients a side.
_MIN_DIFFERENCE_SIDE = 16
_MOTION_STRIDE = 4
# On a CPU a clip's luma is made this many frames at a time (``_clip_lumas``); elsewhere all at once.
_CPU_FRAMES_PER_PIECE = 8
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
# 1: every pixel, all frame differences; 2: sampled patches and frame pairs, valid filtering; 3: every frame
# difference at a quarter of the clip's side, pooled (docstring).
NSS_VERSION: int = 3
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


def _sums(x: torch.Tensor) -> torch.Tensor:
    """Sums over the last two axes of |x|, x^2, x|x|, sign(x), |sign(x)|; (..., 5) in x's dtype.

    Sums rather than means, so patches pool by adding. The one-sided squares follow from x^2 and x|x|,
    the counts of each side from the signs; one sign pass costs half of two comparisons.
    """
    x = x.flatten(-2)
    sign = torch.sign(x)
    magnitude = x * sign
    parts = (magnitude.sum(-1), torch.linalg.vecdot(x, x), torch.linalg.vecdot(x, magnitude), sign.sum(-1),
             sign.abs_().sum(-1))
    return torch.stack(parts, dim=-1)


def _moments(sums: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, ...]:
    """E|x|, E x^2, E[x^2 | x<0], E[x^2 | x>0] from ``_sums`` over ``n`` samples, as float64."""
    magnitude, total, signed, sign_sum, nonzero = np.moveaxis(np.asarray(sums, dtype=np.float64), -1, 0)
    n_left, n_right = (nonzero - sign_sum) / 2, (nonzero + sign_sum) / 2
    left_sum, right_sum = np.maximum(total - signed, 0) / 2, np.maximum(total + signed, 0) / 2
    return (
        magnitude / n,
        total / n,
        np.divide(left_sum, n_left, out=np.zeros_like(left_sum), where=n_left > 0),
        np.divide(right_sum, n_right, out=np.zeros_like(right_sum), where=n_right > 0),
    )


def _sample_moments(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """``_moments`` of one 1-D sample, each as a 0-d array."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(1, -1)
    return _moments(_sums(x).numpy(), x.shape[-1])


def fit_ggd(x: np.ndarray) -> tuple[float, float]:
    """(shape, variance) of the zero-mean generalised Gaussian fitted to samples ``x`` by moment matching.

    Shape 2 is Gaussian, 1 Laplacian; a constant-zero sample gives the smallest shape on the grid (0.2).
    """
    mean_abs, mean_sq, _, _ = _sample_moments(x)
    shape, var = _ggd_from_moments(mean_abs, mean_sq)
    return float(shape), float(var)


def fit_aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """(shape, mean, left variance, right variance) of the asymmetric GGD fitted to samples ``x``."""
    shape, mean, left_var, right_var = _aggd_from_moments(*_sample_moments(x))
    return float(shape), float(mean), float(left_var), float(right_var)


def _blur(y: torch.Tensor) -> torch.Tensor:
    """7x7 Gaussian filter of the last two axes, valid part only: (..., H, W) -> (..., H - 6, W - 6).

    Shifted slices added in place: on a CPU core about twice as fast as conv2d with one channel.
    """
    width, height = y.shape[-1] - 2 * _HALO, y.shape[-2] - 2 * _HALO
    rows = y[..., :width] * _TAPS[0]
    for i, tap in enumerate(_TAPS[1:], 1):
        rows.add_(y[..., i : i + width], alpha=tap)
    out = rows[..., :height, :] * _TAPS[0]
    for i, tap in enumerate(_TAPS[1:], 1):
        out.add_(rows[..., i : i + height, :], alpha=tap)
    return out


def mscn(y: torch.Tensor) -> torch.Tensor:
    """MSCN coefficients of a (..., H, W) float stack of 8-bit-scale images; (..., H - 6, W - 6), valid part.

    Each coefficient needs its whole 7x7 window, so a patch's coefficients equal the full frame's there.
    """
    # Local variance as E[y^2] - E[y]^2 loses precision in float32 far from 0: centre each image first.
    y = y - y.mean(dim=(-2, -1), keepdim=True)
    mu = _blur(y)
    sigma = (_blur(y * y) - mu * mu).abs_().sqrt_()
    return (y[..., _HALO:-_HALO, _HALO:-_HALO] - mu) / (sigma + _C)


def _scale_sums(y: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """``_sums`` of the MSCN field and its four neighbour products per image of (N, H, W): (N, 5, 5), and counts (5,)."""
    m = mscn(y)
    arrays = (
        m,
        m[:, :, :-1] * m[:, :, 1:],  # horizontal neighbour
        m[:, :-1, :] * m[:, 1:, :],  # vertical
        m[:, :-1, :-1] * m[:, 1:, 1:],  # main diagonal
        m[:, :-1, 1:] * m[:, 1:, :-1],  # anti-diagonal
    )
    return torch.stack([_sums(a) for a in arrays], dim=1), np.array([a[0].numel() for a in arrays])


def _halve(y: torch.Tensor) -> torch.Tensor:
    """2x2 block mean (antialiased half resolution) of a (N, H, W) stack; an odd last row/column is dropped."""
    h, w = y.shape[-2] - y.shape[-2] % 2, y.shape[-1] - y.shape[-1] % 2
    return (y[:, 0:h:2, 0:w:2] + y[:, 1:h:2, 0:w:2] + y[:, 0:h:2, 1:w:2] + y[:, 1:h:2, 1:w:2]) * 0.25


def _patch_sums(y: torch.Tensor) -> tuple[torch.Tensor, list[np.ndarray]]:
    """``_scale_sums`` of each (L, L) patch of (N, L, L) at both scales: (N, 2, 5, 5), and counts per scale.

    Native scale: the centre region whose MSCN side is twice the half-resolution one, so both scales see
    the same part of the frame; half resolution: the 2x2 block mean of the whole patch.
    """
    crop = (y.shape[-1] - (2 * (y.shape[-1] // 2 - 2 * _HALO) + 2 * _HALO)) // 2
    native = y[:, crop : y.shape[-2] - crop, crop : y.shape[-1] - crop]
    (fine, fine_n), (coarse, coarse_n) = _scale_sums(native), _scale_sums(_halve(y))
    return torch.stack([fine, coarse], dim=1), [fine_n, coarse_n]


def _fit(sums: np.ndarray, counts: list[np.ndarray]) -> np.ndarray:
    """The 18 statistics per scale from pooled sums (..., 2, 5, 5); (..., 2, 18) float64 with plain variances."""
    per_scale = []
    for scale, n in enumerate(counts):
        mean_abs, mean_sq, left_sq, right_sq = _moments(sums[..., scale, :, :], n)
        ggd = _ggd_from_moments(mean_abs[..., 0], mean_sq[..., 0])
        aggd = _aggd_from_moments(mean_abs[..., 1:], mean_sq[..., 1:], left_sq[..., 1:], right_sq[..., 1:])
        per_scale.append(np.concatenate([ggd, aggd.reshape(*aggd.shape[:-2], -1)], axis=-1))
    return np.stack(per_scale, axis=-2)


def _log_variances(stats: np.ndarray) -> np.ndarray:
    """(..., 18) statistics with their variances replaced by log(variance + _LOG_EPS)."""
    stats = stats.copy()
    stats[..., _VARIANCES] = np.log(stats[..., _VARIANCES] + _LOG_EPS)
    return stats


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) uint8 RGB -> (..., H, W) float32 luma on the 0-255 scale, on rgb's device."""
    red = rgb.select(-3, 0).float()  # green and blue are added as they are: no float copies of them
    return red.mul_(_LUMA[0]).add_(rgb.select(-3, 1), alpha=_LUMA[1]).add_(rgb.select(-3, 2), alpha=_LUMA[2])


def _replicate_to(rgb: torch.Tensor, side: int) -> torch.Tensor:
    """(..., H, W) grown to at least ``side`` pixels a side by repeating its last row and column."""
    if min(rgb.shape[-2:]) >= side:
        return rgb
    rows, cols = (torch.arange(max(n, side), device=rgb.device).clamp_(max=n - 1) for n in rgb.shape[-2:])
    return rgb[..., rows[:, None], cols[None, :]]


def _patches(rgb: torch.Tensor, grid: int) -> torch.Tensor:
    """Luma of a grid x grid set of (_PATCH, _PATCH) patches of (..., 3, H, W) uint8: (..., grid^2, _PATCH, _PATCH).

    Evenly spaced by a whole step (a view, no gather); a few last rows or columns may go unsampled.
    """
    rgb = _replicate_to(rgb, _PATCH + grid - 1)
    steps = [(n - _PATCH) // (grid - 1) for n in rgb.shape[-2:]]
    windows = rgb.unfold(-2, _PATCH, steps[0]).unfold(-2, _PATCH, steps[1])[..., :grid, :grid, :, :]
    return _luma(windows.movedim(-5, -3)).flatten(-4, -3)


def _motion(samples: torch.Tensor) -> torch.Tensor:
    """Mean and spread of log frame-difference energy, and the fraction of repeated frames, of a clip's luma.

    Normalised differences discard how much changes; these three keep it (as TLVQM's motion features
    do), and the repeat fraction exposes dropped or duplicated frames (judder), which NSS cannot see.
    Every difference, on a sparse pixel grid (``samples``: the (T, S', S') luma on every ``_MOTION_STRIDE``-th
    pixel): a mean over 1/16 of the pixels is a close estimate of it.
    """
    diffs = samples[1:] - samples[:-1]
    energy = torch.log1p((diffs * diffs).mean(dim=(1, 2)))
    repeated = (diffs.abs().mean(dim=(1, 2)) < _REPEAT_LEVEL).float()
    return torch.stack([energy.mean(), energy.std(correction=0), repeated.mean()])


def _check(key_frame: torch.Tensor, clip: torch.Tensor) -> None:
    if key_frame.dtype != torch.uint8 or key_frame.ndim != 3 or key_frame.shape[0] != 3:
        got = f"{key_frame.dtype} {tuple(key_frame.shape)}"
        raise ArrayError(f"key_frame must be a uint8 (3, H, W) tensor, got {got}")
    if clip.dtype != torch.uint8 or clip.ndim != 4 or clip.shape[1] != 3 or clip.shape[0] < 2 \
            or clip.shape[2] != clip.shape[3]:
        raise ArrayError(f"clip must be a uint8 (T >= 2, 3, S, S) tensor, got {clip.dtype} {tuple(clip.shape)}")


def _clip_lumas(clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A (T, 3, S, S) uint8 clip's luma at a quarter of its side and on the motion grid: two (T, S', S') stacks.

    Only these small stacks are kept. On a CPU the full-size luma is made ``_CPU_FRAMES_PER_PIECE`` frames at
    a time (1.6 MB of floats at 224 px): the whole clip's 6.4 MB went through memory several times, beside the
    decoder's data (BENCHMARKS.md, "The CPU feed"). The values are the same bits either way (elementwise work).
    """
    quarters, samples = [], []
    for piece in clip.split(_CPU_FRAMES_PER_PIECE) if clip.device.type == "cpu" else (clip,):
        y = _luma(piece)
        samples.append(y[..., ::_MOTION_STRIDE, ::_MOTION_STRIDE])
        y = _replicate_to(y, _MIN_DIFFERENCE_SIDE << _CLIP_HALVINGS)
        for _ in range(_CLIP_HALVINGS):
            y = _halve(y)
        quarters.append(y)
    return torch.cat(quarters), torch.cat(samples)


def _to_host(*tensors: torch.Tensor) -> tuple[np.ndarray, ...]:
    """The tensors as float64 numpy arrays, in one copy to the host (one synchronisation on a GPU)."""
    host = torch.cat([t.flatten() for t in tensors]).cpu().numpy().astype(np.float64)
    pieces = np.split(host, np.cumsum([t.numel() for t in tensors[:-1]]))
    return tuple(piece.reshape(t.shape) for piece, t in zip(pieces, tensors))


def nss_features_batch(key_frames: Sequence[torch.Tensor], clips: Sequence[torch.Tensor]) -> np.ndarray:
    """The NSS descriptors of several chunks: float32 (len(key_frames), NSS_DIM), in the order of ``NSS_NAMES``.

    Each key frame is a chunk's uint8 (3, H, W) RGB key frame at native size (sizes may differ), each clip
    its uint8 (T, 3, S, S) RGB clip (one S for the batch); all on one device, where the pixel work then runs
    in two passes. On a CPU one chunk per call is faster (a batch's tensors outgrow the caches); on a GPU,
    batches are.
    """
    if len(key_frames) != len(clips):
        raise ArrayError(f"got {len(key_frames)} key frames but {len(clips)} clips")
    if not key_frames:
        return np.zeros((0, NSS_DIM), dtype=np.float32)
    for key_frame, clip in zip(key_frames, clips):
        _check(key_frame, clip)
    sizes = sorted({tuple(c.shape[2:]) for c in clips})
    if len(sizes) > 1:
        raise ArrayError(f"the clips of one batch must share their size, got {sizes}")
    key_patches = [_patches(k, _KEY_GRID) for k in key_frames]
    # Each clip's luma is computed once, for its differences and its motion values.
    lumas = [_clip_lumas(c) for c in clips]
    differences = [quarter[1:] - quarter[:-1] for quarter, _ in lumas]
    # One pass over every key-frame patch of the batch, one over every frame difference.
    key_sums, counts = _patch_sums(torch.cat(key_patches))
    difference_sums, difference_counts = _patch_sums(torch.cat(differences))
    motion = torch.stack([_motion(samples) for _, samples in lumas])
    key_sums, difference_sums, motion = _to_host(key_sums, difference_sums, motion)
    per_chunk = zip(np.split(key_sums, len(key_frames)),  # _KEY_GRID^2 patches each
                    np.split(difference_sums, np.cumsum([len(d) for d in differences])[:-1]), motion)
    rows = []
    for keys, diffs, moving in per_chunk:
        spatial = _fit(keys.sum(axis=0), [n * len(keys) for n in counts])
        # Pooled over the clip: a repeated frame's all-zero difference counts as its share of the clip.
        temporal = _fit(diffs.sum(axis=0), [n * len(diffs) for n in difference_counts])
        rows.append(np.concatenate([_log_variances(np.stack([spatial, temporal])).ravel(), moving]))
    return np.stack(rows).astype(np.float32)


def nss_features(key_frame: torch.Tensor, clip: torch.Tensor) -> np.ndarray:
    """The NSS descriptor of one chunk: float32 (NSS_DIM,), values in the order of ``NSS_NAMES``.

    ``key_frame`` is the chunk's uint8 (3, H, W) RGB key frame at native size, ``clip`` its uint8
    (T, 3, S, S) RGB clip; both on one device (CPU or CUDA), where the pixel work runs.
    """
    return nss_features_batch([key_frame], [clip])[0]


def patch_statistics(y: torch.Tensor) -> np.ndarray:
    """The 18 statistics at both scales of each (L, L) luma patch of a (N, L, L) float32 stack: (N, 2, 18).

    Plain variances (not logged); the building block of the descriptor, public so tests and probes can
    check what one patch gives.
    """
    sums, counts = _patch_sums(y)
    return _fit(sums.cpu().numpy().astype(np.float64), counts)
