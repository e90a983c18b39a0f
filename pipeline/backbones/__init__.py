"""Frozen backbones: ResNet-50 spatial statistics of key frames and SlowFast-R50 features of clips."""

from pipeline.backbones.device import resolve_device
from pipeline.backbones.models import Backbones
from pipeline.backbones.slowfast import FAST_DIM, SLOW_DIM
from pipeline.backbones.spatial import SPATIAL_DIM, SpatialExtractor
from pipeline.backbones.temporal import TemporalExtractor

__all__ = ["FAST_DIM", "SLOW_DIM", "SPATIAL_DIM", "Backbones", "SpatialExtractor", "TemporalExtractor",
           "resolve_device"]
