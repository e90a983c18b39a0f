"""ResNet-50 spatial features: layout, normalisation, any aspect ratio, batching, weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from pipeline.backbones import SPATIAL_DIM, SpatialExtractor
from pipeline.backbones import weights as pretrained
from pipeline.errors import WeightsError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def extractor() -> SpatialExtractor:
    return SpatialExtractor(weights="random", device="cpu", seed=0)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return torch.rand(3, 3, 64, 96, generator=torch.Generator().manual_seed(1))


def reference_features(state: dict[str, torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
    """The design's definition, written independently: torchvision's own ResNet-50 and its layer outputs."""
    net = torchvision.models.resnet50(weights=None).eval()
    net.load_state_dict(state)
    layers = create_feature_extractor(net, return_nodes=["layer2", "layer3", "layer4"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        outputs = layers((frames - mean) / std)
    stats = []
    for name in ("layer2", "layer3", "layer4"):
        flat = outputs[name].flatten(2)
        stats += [flat.mean(dim=2), flat.std(dim=2)]
    return torch.cat(stats, dim=1)


def test_features_follow_the_design(extractor, frames):
    features = extractor(frames)
    assert features.shape == (3, SPATIAL_DIM) == (3, 7168)
    assert features.dtype == torch.float32 and features.device.type == "cpu"
    assert not features.requires_grad and not torch.is_inference(features)  # an ordinary tensor for callers
    torch.testing.assert_close(features, reference_features(extractor.model.state_dict(), frames), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [(64, 96), (96, 64), (33, 200), (37, 41)])
def test_any_size_and_aspect_ratio(extractor, size):
    features = extractor(torch.rand(1, 3, *size))
    assert features.shape == (1, SPATIAL_DIM)
    assert torch.isfinite(features).all()


def test_frames_do_not_mix_within_a_batch(extractor, frames):
    together = extractor(frames)
    alone = torch.cat([extractor(frame[None]) for frame in frames])
    assert torch.equal(together, alone)  # on a CPU each frame runs on its own: no batch-neighbour effects
    assert not torch.allclose(together[0], together[1])


def test_random_weights_are_seeded(extractor, frames):
    assert extractor.weights_id == "random seed=0"
    torch.testing.assert_close(SpatialExtractor(weights="random", seed=0)(frames), extractor(frames), rtol=0, atol=0)
    assert not torch.allclose(SpatialExtractor(weights="random", seed=1)(frames), extractor(frames))


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError),  # 0-255 pixels: lesson 1 of the design
        (torch.rand(3, 64, 64), ValueError),
        (torch.rand(1, 64, 64, 3), ValueError),
        (torch.rand(1, 3, 32, 32), ValueError),  # layer4 would be 1x1: no standard deviation
    ],
)
def test_bad_frames_are_refused(extractor, bad, error):
    with pytest.raises(error):
        extractor(bad)


def test_checkpoint_directory(tmp_path, monkeypatch, extractor, frames):
    """weights=DIR loads torchvision's file by its upstream name, checked against the published digest."""
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(extractor.model.state_dict(), path)  # torchvision's names: the model is a torchvision ResNet
    with pytest.raises(WeightsError, match="0676ba61"):  # a random file cannot carry torchvision's digest
        SpatialExtractor(weights=tmp_path)
    digest = pretrained.file_sha256(path)
    published = dataclasses.replace(pretrained.RESNET50_IMAGENET1K_V1, sha256=digest[:12])
    monkeypatch.setattr(pretrained, "RESNET50_IMAGENET1K_V1", published)
    loaded = SpatialExtractor(weights=tmp_path, seed=1)  # another seed: equal features prove the file was used
    assert loaded.weights_id == f"IMAGENET1K_V1 sha256:{digest}"
    torch.testing.assert_close(loaded(frames), extractor(frames), rtol=0, atol=0)
