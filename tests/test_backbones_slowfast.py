"""SlowFast-R50: checkpoint names, parity with pytorchvideo's reference model, and the extractor's wiring."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.backbones import FAST_DIM, SLOW_DIM, TemporalExtractor
from pipeline.backbones.slowfast import SlowFast, split_pathways
from pipeline.errors import WeightsError

torch.set_num_threads(1)

CLIP = (2, 32, 3, 48, 48)  # N, T, C, H, W: small, but res5 keeps 2x2 positions


def random_state_dict(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A random state dict with well-scaled weights and non-trivial BN statistics (so a swapped or
    mis-ordered tensor changes the output, which identity BN layers would hide)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value.clone()
        elif key.endswith("running_var") or (key.endswith(".weight") and value.ndim == 1):
            state[key] = 0.5 + torch.rand(value.shape, generator=g)
        elif key.endswith(("running_mean", ".bias")):
            state[key] = 0.1 * torch.randn(value.shape, generator=g)
        else:
            fan_in = value[0].numel()
            state[key] = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
    return state


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return random_state_dict(SlowFast(), seed=7)


@pytest.fixture(scope="module")
def model(state) -> SlowFast:
    model = SlowFast().eval()
    model.load_state_dict(state, strict=True)
    return model


@pytest.fixture(scope="module")
def random_extractor() -> TemporalExtractor:
    return TemporalExtractor(weights="random", seed=0)


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return torch.rand(CLIP, generator=torch.Generator().manual_seed(3))


def channels_first(clips: torch.Tensor) -> torch.Tensor:
    return clips.permute(0, 2, 1, 3, 4)  # (N, T, 3, H, W) -> (N, 3, T, H, W)


def normalised_pathways(clips: torch.Tensor) -> list[torch.Tensor]:
    """The design's input: mean 0.45, std 0.225; fast = all 32 frames, slow = frames 0, 4, 8, 13, ... 31."""
    x = (channels_first(clips) - 0.45) / 0.225
    return [x[:, :, [0, 4, 8, 13, 17, 22, 26, 31]], x]


def test_slow_pathway_takes_evenly_spaced_frames():
    clip = torch.arange(32.0).view(1, 1, 32, 1, 1)
    slow, fast = split_pathways(clip)
    assert slow.flatten().tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert fast.shape[2] == 32


def test_checkpoint_layout(model):
    """Names and shapes the official checkpoint holds (as pytorchvideo's create_slowfast names them)."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(shapes) == 662
    assert shapes["blocks.0.multipathway_blocks.0.conv.weight"] == (64, 3, 1, 7, 7)
    assert shapes["blocks.0.multipathway_blocks.1.conv.weight"] == (8, 3, 5, 7, 7)
    assert shapes["blocks.0.multipathway_fusion.conv_fast_to_slow.weight"] == (16, 8, 7, 1, 1)
    assert shapes["blocks.1.multipathway_blocks.0.res_blocks.0.branch1_conv.weight"] == (256, 80, 1, 1, 1)
    assert shapes["blocks.3.multipathway_blocks.0.res_blocks.0.branch2.conv_a.weight"] == (256, 640, 3, 1, 1)
    assert shapes["blocks.4.multipathway_blocks.1.res_blocks.2.branch2.conv_c.weight"] == (256, 64, 1, 1, 1)
    assert shapes["blocks.6.proj.weight"] == (400, SLOW_DIM + FAST_DIM)
    assert not any(k.startswith("blocks.4.multipathway_fusion") for k in shapes)


def test_matches_pytorchvideo(state, model, clips):
    """Same random weights in both: pooled pathway features and Kinetics logits agree to float tolerance.
    The reference gets the design's input built by hand, so our normalisation and frame split are covered.

    Checked once at full size too (32x224x224 against the unmodified upstream model with its fixed
    pooling windows): largest difference 4e-7 of the largest value.
    """
    hub = pytest.importorskip("pytorchvideo.models.hub.slowfast")
    # Upstream pools with fixed (8, 7, 7) / (32, 7, 7) windows, i.e. globally at 224x224; adaptive pooling
    # is the same global average at the small test size.
    reference = hub.slowfast_r50(pretrained=False, head_pool=nn.AdaptiveAvgPool3d).eval()
    reference.load_state_dict(state, strict=True)
    slow, fast = normalised_pathways(clips)
    with torch.inference_mode():
        x = [slow, fast]
        for block in reference.blocks[:6]:  # stem, res2..res5, pool-and-concatenate
            x = block(x)
        pooled, logits = x.flatten(1), reference.blocks[6](x)
        ours_slow, ours_fast = model(channels_first(clips))
        ours_logits = model.blocks[6]((ours_slow, ours_fast))
    torch.testing.assert_close(ours_slow, pooled[:, :SLOW_DIM], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours_fast, pooled[:, SLOW_DIM:], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours_logits, logits, rtol=1e-4, atol=1e-4)
    assert pooled.std() > 0.1  # the comparison is not between two near-zero tensors


def test_extractor_loads_checkpoint_directory(tmp_path, state, model, clips):
    """weights=DIR: the upstream file name, the state dict under "model_state", loaded strictly (the
    extractor's own seed-0 init differs from the file's weights, so equal features prove the file was used)."""
    torch.save({"model_state": state, "epoch": 196}, tmp_path / "SLOWFAST_8x8_R50.pyth")
    extractor = TemporalExtractor(weights=tmp_path, device="cpu")
    assert extractor.weights_id.startswith("SLOWFAST_8x8_R50 sha256:")
    slow, fast = extractor(clips)
    with torch.inference_mode():
        expected_slow, expected_fast = model(channels_first(clips))
    assert slow.dtype == fast.dtype == torch.float32 and slow.device.type == "cpu"
    assert slow.shape == (2, SLOW_DIM) and fast.shape == (2, FAST_DIM)
    torch.testing.assert_close(slow, expected_slow, rtol=1e-3, atol=1e-3)  # float rounding of batch 2 vs 1
    torch.testing.assert_close(fast, expected_fast, rtol=1e-3, atol=1e-3)
    # On a CPU each clip runs on its own: a clip's features do not depend on the clips batched with it.
    alone_slow, alone_fast = extractor(clips[1:])
    assert torch.equal(alone_slow, slow[1:])
    assert torch.equal(alone_fast, fast[1:])
    assert not slow.requires_grad and not torch.is_inference(slow) and not torch.is_inference(fast)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    wrong = {"blocks.6.proj.weight": torch.zeros(600, SLOW_DIM + FAST_DIM)}  # e.g. a Kinetics-600 head alone
    torch.save({"model_state": wrong}, tmp_path / "SLOWFAST_8x8_R50.pyth")
    with pytest.raises(WeightsError, match="does not fit the SLOWFAST_8x8_R50 architecture"):
        TemporalExtractor(weights=tmp_path)


def test_checkpoint_without_model_state_is_refused(tmp_path):
    torch.save({"blocks.6.proj.bias": torch.zeros(400)}, tmp_path / "SLOWFAST_8x8_R50.pyth")
    with pytest.raises(WeightsError, match="model_state"):
        TemporalExtractor(weights=tmp_path)


@pytest.mark.parametrize(
    ("clips", "error"),
    [
        (torch.rand(1, 30, 3, 48, 48), ValueError),  # not a multiple of alpha
        (torch.rand(1, 32, 48, 48, 3), ValueError),  # channels last
        (torch.zeros(1, 32, 3, 48, 48, dtype=torch.uint8), TypeError),
    ],
)
def test_bad_clips_are_refused(random_extractor, clips, error):
    with pytest.raises(error):
        random_extractor(clips)


def test_random_weights_are_seeded(random_extractor, clips):
    slow, fast = random_extractor(clips)
    assert random_extractor.weights_id == "random seed=0"
    assert torch.isfinite(slow).all() and torch.isfinite(fast).all()
    assert not torch.allclose(slow[0], slow[1])  # different clips, different features
    again = TemporalExtractor(weights="random", seed=0)
    torch.testing.assert_close(again(clips), (slow, fast), rtol=0, atol=0)
    other = TemporalExtractor(weights="random", seed=1).model.state_dict()
    assert not torch.equal(
        other["blocks.0.multipathway_blocks.0.conv.weight"],
        again.model.state_dict()["blocks.0.multipathway_blocks.0.conv.weight"],
    )
