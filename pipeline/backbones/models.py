"""The backbones of one extraction config: built once, reused for every video (and by score and Dask runs), and
the :class:`~pipeline.features.FeatureSettings` their features are made under."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from pipeline.backbones.device import Recipe, recipe_for, resolve_device
from pipeline.backbones.spatial import SpatialExtractor
from pipeline.backbones.temporal import TemporalExtractor
from pipeline.config import ExtractConfig
from pipeline.features import FeatureSettings
from pipeline.video import resize_short_side


class Backbones:
    """The models of one extraction config, built once and reused for every video (and by score/Dask runs)."""

    def __init__(self, cfg: ExtractConfig, recipe: Recipe | None = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.recipe = recipe or recipe_for(self.device)  # another recipe: tests of the GPU path on a CPU
        self.short_sides = {name: level.short_side for name, level in cfg.levels.items()}
        self.spatial = SpatialExtractor(cfg.weights, self.device, recipe=self.recipe) if cfg.levels else None
        self.temporal = TemporalExtractor(cfg.weights, self.device, recipe=self.recipe) if cfg.temporal else None
        # Everything that shapes the feature values: a store refuses to mix runs where any of it differs.
        self.settings = FeatureSettings.from_config(
            cfg, spatial_weights=self.spatial.weights_id if self.spatial else None,
            temporal_weights=self.temporal.weights_id if self.temporal else None,
            precision=self.recipe.precision)

    def kinds(self, levels: Iterable[str]) -> tuple[str, ...]:
        """The store kinds a video extracted at ``levels`` holds."""
        return self.settings.kinds(levels)

    def spatial_batch(self, key_frames: torch.Tensor, level: str) -> torch.Tensor:
        """float32 rows (N, the spatial kinds' width), left on the device, of uint8 key frames (N, 3, H, W)
        already there."""
        return self.spatial.forward_on_device(resize_short_side(key_frames, self.short_sides[level]))

    def temporal_batch(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (slow, fast) rows, left on the device, of uint8 clips (N, T, 3, S, S) already there."""
        return self.temporal.forward_on_device(clips.float().div_(255))

