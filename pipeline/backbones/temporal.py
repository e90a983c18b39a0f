"""Temporal features of a clip: frozen SlowFast-R50 (Kinetics-400), each pathway average-pooled."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.backbones import weights as pretrained
from pipeline.backbones.device import (
    Recipe, forward_batch, freeze, inference, limit_cpu_threads, recipe_for, resolve_device, to_cpu_float32,
)
from pipeline.backbones.slowfast import ALPHA, SlowFast
from pipeline.errors import ArrayError


class TemporalExtractor:
    """Frozen SlowFast-R50 (``SLOWFAST_8x8_R50``): clips (N, T, 3, S, S) in [0, 1] -> slow (N, 2048), fast (N, 256).

    The fast pathway sees all T frames (32 in this project), the slow one T / 4 evenly spaced; the
    checkpoint's normalisation (mean 0.45, std 0.225) happens inside. ``weights``:
    ``"pretrained"`` (the official Kinetics checkpoint; ``"imagenet"`` is accepted too), ``"random"`` or a directory
    holding ``SLOWFAST_8x8_R50.pyth``. Outputs are float32 on the CPU.
    """

    def __init__(self, weights: str | Path = pretrained.PRETRAINED, device: str | torch.device = "cpu", seed: int = 0,
                 recipe: Recipe | None = None):
        self.device = resolve_device(str(device))
        self.recipe = recipe or recipe_for(self.device)
        model, self.weights_id = pretrained.build_with_weights(SlowFast, pretrained.SLOWFAST_8X8_R50, weights, seed)
        self.model = freeze(model, self.device, self.recipe)
        if self.device.type == "cpu":
            limit_cpu_threads()

    def __call__(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slow, fast = self.forward_on_device(clips)
        return to_cpu_float32(slow), to_cpu_float32(fast)

    def forward_on_device(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (slow, fast) features left on the device: no synchronisation, so batches can be pipelined."""
        check_clips(clips)
        x = clips.to(self.device, non_blocking=True).permute(0, 2, 1, 3, 4)  # (N, 3, T, S, S), as Conv3d wants
        if self.recipe.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with inference(self.device, self.recipe):
            return forward_batch(self.model, x, self.recipe.batched)


def check_clips(clips: torch.Tensor) -> None:
    """Reject what SlowFast cannot read: not (N, T, 3, H, W) floats, or T not a positive multiple of alpha."""
    if not isinstance(clips, torch.Tensor) or clips.ndim != 5 or clips.shape[2] != 3:
        shape = tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
        raise ArrayError(f"clips must be a (N, T, 3, H, W) tensor, got {shape}")
    if not clips.is_floating_point():
        raise ArrayError(f"clips must be floats in [0, 1], got {clips.dtype} (scale uint8 frames by 1/255 first)")
    frames = clips.shape[1]
    if frames < ALPHA or frames % ALPHA:
        raise ArrayError(
            f"clips of {frames} frames: the fast pathway's frame count must be a positive multiple of "
            f"alpha={ALPHA}, so the lateral connections meet the slow pathway's {frames // ALPHA} frames"
        )
