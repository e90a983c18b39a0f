"""NSS features: the distribution fits recover known parameters, and the descriptor behaves on odd input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage, special, stats

from pipeline import nss
from pipeline.nss import NSS_DIM, NSS_NAMES, fit_aggd, fit_ggd, mscn, nss_features, nss_features_batch, patch_statistics

# Many small tensor ops: intra-op threads only wait for each other on a busy machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def _unit_variance_ggd(shape: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """GGD samples of this shape scaled to unit variance (gennorm's variance is Gamma(3/b) / Gamma(1/b))."""
    scale = np.sqrt(special.gamma(1 / shape) / special.gamma(3 / shape))
    return stats.gennorm.rvs(shape, size=n, random_state=rng) * scale


def _texture(size: int = 96, seed: int = 0) -> np.ndarray:
    """A 1/f (natural-image-like) texture on the 0-255 scale."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    radius = np.maximum(np.hypot(*np.meshgrid(f, f)), 1 / size)
    img = np.real(np.fft.ifft2(np.exp(2j * np.pi * rng.random((size, size))) / radius))
    return (img - img.min()) / (img.max() - img.min()) * 255


def _rgb(gray: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.clip(np.rint(gray), 0, 255).astype(np.uint8)).expand(3, *gray.shape).contiguous()


def _clip(frames: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (frames, 3, size, size), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("shape", [0.6, 1.0, 2.0, 3.0])
def test_fit_ggd_recovers_shape_and_variance(shape: float) -> None:
    x = 3.0 * _unit_variance_ggd(shape, 100_000, np.random.default_rng(1))
    fitted_shape, variance = fit_ggd(x)
    assert fitted_shape == pytest.approx(shape, rel=0.05)
    assert variance == pytest.approx(9.0, rel=0.05)


@pytest.mark.parametrize(("shape", "left", "right"), [(0.8, 1.0, 2.0), (2.0, 1.5, 0.5), (1.2, 1.0, 1.0)])
def test_fit_aggd_recovers_shape_and_side_variances(shape: float, left: float, right: float) -> None:
    rng = np.random.default_rng(2)
    n = 200_000
    # An AGGD is two half-GGDs of one shape glued at 0; each side carries mass proportional to its scale.
    negative = rng.random(n) < left / (left + right)
    magnitude = np.abs(_unit_variance_ggd(shape, n, rng))
    x = np.where(negative, -left * magnitude, right * magnitude)
    fitted_shape, mean, left_var, right_var = fit_aggd(x)
    assert fitted_shape == pytest.approx(shape, rel=0.05)
    assert left_var == pytest.approx(left**2, rel=0.05)
    assert right_var == pytest.approx(right**2, rel=0.05)
    assert mean == pytest.approx(x.mean(), abs=0.02)


def test_fits_of_degenerate_samples_are_finite() -> None:
    assert fit_ggd(np.zeros(100)) == (0.2, 0.0)
    for sample in (np.zeros(100), np.ones(100), -np.ones(100)):
        assert np.isfinite(fit_aggd(sample)).all()


def _luma(gray: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(gray.astype(np.float32))


def test_mscn_of_a_natural_texture_is_roughly_unit_scale_and_centred() -> None:
    m = mscn(_luma(_texture())[None])
    assert m.shape == (1, 90, 90)  # valid part: the 7x7 window inside the image
    assert abs(float(m.mean())) < 0.1
    assert 0.1 < float(m.var()) < 2.0


def test_mscn_of_a_patch_is_the_frame_mscn_there() -> None:
    """Why sampling patches estimates the frame's statistics: each patch coefficient is the frame's own."""
    frame = _luma(_texture(96))[None]
    whole = mscn(frame)
    np.testing.assert_allclose(mscn(frame[:, 20:60, 30:76]), whole[:, 20:54, 30:70], atol=1e-4)


def test_statistics_of_a_stack_are_those_of_each_patch() -> None:
    patches = torch.stack([_luma(_texture(40, seed=s)) for s in range(3)])
    stack = patch_statistics(patches)
    assert stack.shape == (3, 2, 18)
    for i, patch in enumerate(patches):
        np.testing.assert_allclose(stack[i], patch_statistics(patch[None])[0], rtol=1e-5, atol=1e-7)
    assert not np.allclose(stack[0], stack[1])


def test_sampled_key_frame_statistics_estimate_the_whole_frame() -> None:
    """On a frame larger than the patch grid covers, the sampled spatial values stay close to the whole frame's."""
    texture = _texture(768)
    whole = patch_statistics(_luma(texture)[None])[0]
    spatial = nss_features(_rgb(texture), _clip())[: 2 * 18].reshape(2, 18)
    shapes = [0, 2, 6, 10, 14]  # GGD and the four AGGD shapes
    np.testing.assert_allclose(spatial[:, shapes], whole[:, shapes], rtol=0.1)
    np.testing.assert_allclose(spatial[:, 1], np.log(whole[:, 1] + 1e-6), atol=0.1)


@pytest.mark.parametrize(
    ("key_frame", "clip"),
    [
        (torch.full((3, 48, 64), 128, dtype=torch.uint8), torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)),
        (torch.zeros((3, 16, 16), dtype=torch.uint8), torch.zeros((2, 3, 16, 16), dtype=torch.uint8)),
        (torch.full((3, 1, 3), 255, dtype=torch.uint8), torch.full((2, 3, 1, 1), 255, dtype=torch.uint8)),
        (_clip(1, 16, seed=3)[0], _clip(3, 16, seed=4)),
        (_clip(1, 64, seed=5)[0], _clip(4, 32, seed=6)),
        (_clip(1, 77, seed=12)[0][:, :, :53], _clip(3, 15, seed=13)),
        (torch.zeros((3, 2, 500), dtype=torch.uint8), _clip(2, 7, seed=14)),
    ],
    ids=["flat", "tiny-flat", "one-pixel", "tiny-noise", "noise", "odd", "sliver"],
)
def test_features_are_finite_float32_of_the_declared_size(key_frame: torch.Tensor, clip: torch.Tensor) -> None:
    features = nss_features(key_frame, clip)
    assert features.dtype == np.float32
    assert features.shape == (NSS_DIM,) == (len(NSS_NAMES),)
    assert np.isfinite(features).all()


def test_features_are_deterministic_and_batch_matches_single() -> None:
    key_frames = [_rgb(_texture(64, seed=0)), _rgb(_texture(200, seed=1)[:150])]  # sizes may differ in a batch
    clips = [_clip(seed=7), _clip(frames=6, seed=8)]
    first = nss_features(key_frames[0], clips[0])
    assert np.array_equal(first, nss_features(key_frames[0].clone(), clips[0].clone()))
    batch = nss_features_batch(key_frames, clips)
    assert batch.shape == (2, NSS_DIM)
    np.testing.assert_allclose(batch[0], first, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batch[1], nss_features(key_frames[1], clips[1]), rtol=1e-6, atol=1e-6)
    assert not np.array_equal(batch[0], batch[1])
    assert nss_features_batch([], []).shape == (0, NSS_DIM)


@pytest.mark.cuda
def test_cuda_matches_cpu_in_float32() -> None:
    key_frames = [_rgb(_texture(300, seed=2)), _rgb(_texture(96, seed=3))]
    clips = [_clip(8, 64, seed=15), _clip(8, 64, seed=16)]
    cpu = nss_features_batch(key_frames, clips)
    cuda = nss_features_batch([k.cuda() for k in key_frames], [c.cuda() for c in clips])
    np.testing.assert_allclose(cuda, cpu, rtol=1e-3, atol=1e-4)


def test_blur_makes_mscn_peakier_and_noise_makes_it_flatter() -> None:
    """BRISQUE's central observation: blur lowers the MSCN GGD shape and variance, white noise raises them."""
    texture = _texture()
    clip = _clip()
    shape, logvar = NSS_NAMES.index("spatial_s0_ggd_shape"), NSS_NAMES.index("spatial_s0_ggd_logvar")

    def spatial(gray: np.ndarray) -> np.ndarray:
        return nss_features(_rgb(gray), clip)[[shape, logvar]]

    sharp = spatial(texture)
    blurred = spatial(ndimage.gaussian_filter(texture, 1.5))
    noisy = spatial(texture + np.random.default_rng(9).normal(0, 20, texture.shape))
    assert (blurred < sharp).all()
    assert (noisy > sharp).all()


def test_temporal_features_see_motion_and_repeated_frames() -> None:
    key_frame = _rgb(_texture(32))
    frames = [_texture(32, seed=s) for s in range(6)]
    moving = torch.stack([_rgb(f) for f in frames])
    # Each frame shown twice, as judder or a halved frame rate would do.
    repeated = torch.stack([_rgb(frames[i // 2]) for i in range(6)])
    static = torch.stack([_rgb(frames[0])] * 6)
    names = ("motion_logenergy_mean", "motion_repeat_fraction")
    idx = [NSS_NAMES.index(n) for n in names]
    energy_moving, repeats_moving = nss_features(key_frame, moving)[idx]
    energy_repeated, repeats_repeated = nss_features(key_frame, repeated)[idx]
    energy_static, repeats_static = nss_features(key_frame, static)[idx]
    assert repeats_moving == 0.0 and repeats_repeated == pytest.approx(0.6) and repeats_static == 1.0
    assert energy_moving > energy_repeated > energy_static == 0.0


def test_key_frame_part_ignores_the_clip() -> None:
    key_frame = _rgb(_texture(48))
    a, b = nss_features(key_frame, _clip(seed=10)), nss_features(key_frame, _clip(seed=11))
    spatial = [i for i, n in enumerate(NSS_NAMES) if n.startswith("spatial_")]
    assert len(spatial) == 36  # 18 statistics at each of 2 scales
    assert np.array_equal(a[spatial], b[spatial])
    assert not np.array_equal(a, b)


def test_temporal_statistics_use_every_frame_pair_at_a_quarter_of_the_clip() -> None:
    key_frame, clip = _rgb(_texture(32)), _clip(frames=32, size=96, seed=3)
    temporal = [i for i, n in enumerate(NSS_NAMES) if n.startswith("temporal_")]
    reference = nss_features(key_frame, clip)[temporal]
    for frame in (0, 5, 11, 29, 31):
        changed = clip.clone()
        changed[frame] = _clip(frames=1, size=96, seed=100 + frame)[0]
        assert not np.array_equal(nss_features(key_frame, changed)[temporal], reference), frame
    # Only the 4x4 block means of the clip's luma count: detail inside a block leaves the statistics alone.
    blocks = clip.float().reshape(32, 3, 24, 4, 24, 4).mean(dim=(3, 5), keepdim=True)
    detail = torch.tensor([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, -2.0], [0.0, 0.0, -2.0, 2.0]])
    textured = (blocks.round() + 3 * detail[:, None, :]).clamp(0, 255).reshape(32, 3, 96, 96).to(torch.uint8)
    flat = blocks.round().expand(-1, -1, -1, 4, -1, 4).reshape(32, 3, 96, 96).to(torch.uint8)
    np.testing.assert_allclose(nss_features(key_frame, textured)[temporal], nss_features(key_frame, flat)[temporal],
                               rtol=1e-5, atol=1e-5)


def test_repeated_frames_weigh_in_as_their_share_of_the_clip() -> None:
    """Judder's repeated frames add all-zero differences: the pooled differences look smaller and peakier."""
    key_frame = _rgb(_texture(32))
    frames = [_texture(96, seed=s) for s in range(12)]
    moving = torch.stack([_rgb(f) for f in frames])
    repeated = torch.stack([_rgb(frames[i // 3 * 3]) for i in range(12)])  # every third frame, shown 3 times
    shape, logvar = NSS_NAMES.index("temporal_s0_ggd_shape"), NSS_NAMES.index("temporal_s0_ggd_logvar")
    smooth, judder = nss_features(key_frame, moving), nss_features(key_frame, repeated)
    assert judder[shape] < smooth[shape] and judder[logvar] < smooth[logvar]


@pytest.mark.parametrize(("frames", "size"), [(19, 96), (9, 40)])  # pieces of unequal length; a clip padded to 64
def test_a_clip_made_in_pieces_gives_the_same_bits_as_made_whole(
        monkeypatch: pytest.MonkeyPatch, frames: int, size: int) -> None:
    key_frame, clip = _rgb(_texture(32)), _clip(frames=frames, size=size, seed=4)
    in_pieces = nss_features(key_frame, clip)
    monkeypatch.setattr(nss, "_CPU_FRAMES_PER_PIECE", frames)
    assert np.array_equal(in_pieces.view(np.uint32), nss_features(key_frame, clip).view(np.uint32))


def test_a_batch_of_clips_of_different_sizes_is_rejected() -> None:
    with pytest.raises(ValueError, match="share their size"):
        nss_features_batch([_rgb(_texture(32))] * 2, [_clip(size=32), _clip(size=64)])


@pytest.mark.parametrize(
    ("key_frame", "clip", "message"),
    [
        (torch.zeros((3, 8, 8)), _clip(), "key_frame must be a uint8"),
        (torch.zeros((8, 8), dtype=torch.uint8), _clip(), "key_frame must be a uint8"),
        (torch.zeros((3, 8, 8), dtype=torch.uint8), _clip(frames=1), "clip must be a uint8"),
        (torch.zeros((3, 8, 8), dtype=torch.uint8), torch.zeros((4, 1, 8, 8), dtype=torch.uint8), "clip must be"),
        (torch.zeros((3, 8, 8), dtype=torch.uint8), torch.zeros((4, 3, 8, 9), dtype=torch.uint8), "clip must be"),
    ],
)
def test_bad_input_is_rejected_with_what_was_given(key_frame: torch.Tensor, clip: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        nss_features(key_frame, clip)
