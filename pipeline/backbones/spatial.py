"""Spatial features of a key frame: frozen ResNet-50, mean and std over positions of layer2, layer3 and layer4."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.models.resnet import Bottleneck, ResNet

from pipeline.backbones import weights as pretrained
from pipeline.backbones.device import (
    Recipe, forward_batch, freeze, inference, limit_cpu_threads, recipe_for, resolve_device, to_cpu_float32,
)
from pipeline.errors import ArrayError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYER_DIMS = (512, 1024, 2048)  # channels of layer2, layer3, layer4
SPATIAL_DIM = 2 * sum(LAYER_DIMS)  # 7168
STRIDE = 32  # layer4's stride: each side of its map is ceil(side / 32)


class ResNet50Stats(ResNet):
    """torchvision's ResNet-50 read out as ``[mean2, std2, mean3, std3, mean4, std4]`` over positions.

    A subclass, so parameter names are torchvision's and its ImageNet checkpoint loads as it is (``avgpool``
    and ``fc`` stay for that reason; the forward pass stops at layer4). The standard deviation is the
    unbiased one (``correction=1``), as in the SimpleVQA features this project grew from.
    """

    def __init__(self) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (frames - self.pixel_mean) / self.pixel_std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        layer2 = self.layer2(self.layer1(x))
        layer3 = self.layer3(layer2)
        layer4 = self.layer4(layer3)
        return torch.cat([stat for layer in (layer2, layer3, layer4) for stat in mean_and_std(layer)], dim=1)


def mean_and_std(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased std over all positions of a (N, C, H, W) map, in float32."""
    std, mean = torch.std_mean(features.float().flatten(2), dim=2, correction=1)
    return mean, std


class SpatialExtractor:
    """Frozen ResNet-50 (``IMAGENET1K_V1``): float frames (N, 3, H, W) in [0, 1] -> float32 (N, 7168) on the CPU.

    Frames may have any size and aspect ratio (the statistics are global) as long as layer4 keeps at least
    two positions; the ImageNet normalisation happens inside, so callers pass plain [0, 1] pixels.
    """

    def __init__(self, weights: str | Path = pretrained.PRETRAINED, device: str | torch.device = "cpu", seed: int = 0,
                 recipe: Recipe | None = None):
        self.device = resolve_device(str(device))
        self.recipe = recipe or recipe_for(self.device)
        model, self.weights_id = pretrained.build_with_weights(ResNet50Stats, pretrained.RESNET50_IMAGENET1K_V1,
                                                               weights, seed)
        self.model = freeze(model, self.device, self.recipe)
        if self.device.type == "cpu":
            limit_cpu_threads()

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return to_cpu_float32(self.forward_on_device(frames))

    def forward_on_device(self, frames: torch.Tensor) -> torch.Tensor:
        """float32 (N, 7168) features left on the device: no synchronisation, so batches can be pipelined."""
        check_frames(frames)
        # The layout the recipe computes in, whatever the frames came in (key frames come channels last): the
        # kernels, and so the rows' last bits, follow the input's layout.
        layout = torch.channels_last if self.recipe.channels_last else torch.contiguous_format
        x = frames.to(self.device, non_blocking=True).contiguous(memory_format=layout)
        with inference(self.device, self.recipe):
            return forward_batch(self.model, x, self.recipe.batched)


def check_frames(frames: torch.Tensor) -> None:
    """Reject what the extractor cannot honestly read: not (N, 3, H, W) floats, or a layer4 of one position."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ArrayError(f"frames must be a (N, 3, H, W) tensor, got {shape}")
    if not frames.is_floating_point():
        raise ArrayError(f"frames must be floats in [0, 1], got {frames.dtype} (scale uint8 frames by 1/255 first)")
    height, width = frames.shape[2:]
    if math.ceil(height / STRIDE) * math.ceil(width / STRIDE) < 2:
        raise ArrayError(
            f"frames of {height}x{width} are too small: layer4 would hold a single position, whose standard "
            f"deviation is undefined; one side must be longer than {STRIDE} pixels"
        )
