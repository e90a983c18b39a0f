"""The feature kinds: one registry saying everything a kind of stored feature is.

A :class:`FeatureKind` carries its store name, the backbone that computes it, the spatial level or temporal
pathway it belongs to, its width and its on-disk dtype, the way torchvision's ``Weights`` carries everything a
set of weights means. The store's records and shards, fit's inputs, scoring and the reports ask this registry;
no other module restates a kind's name, width or dtype. Adding a kind or a level is one entry here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: Spatial levels, coarse to fine (``extract.levels``; a phase trains on one: ``features.level``).
LEVELS = ("coarse", "fine")
#: SlowFast's pathways, in input order (``features.temporal``).
TEMPORAL_PARTS = ("slow", "fast")


@dataclass(frozen=True)
class FeatureKind:
    """One kind of per-chunk feature row: what computes it, how wide it is, how the store keeps it."""

    name: str  # the store's name for it: an HDF5 dataset name, a key of FeatureTable.features
    backbone: str  # resnet50 | slowfast | nss (weight-free)
    width: int | None  # None: whatever its extractor gives (NSS: recorded in the store's settings, checked per store)
    dtype: np.dtype  # on disk: the CNN features are float16 (half the bytes to read), NSS keeps float32
    level: str | None = None  # the spatial level of a ResNet-50 kind
    part: str | None = None  # the SlowFast pathway of a temporal kind


_FLOAT16, _FLOAT32 = np.dtype(np.float16), np.dtype(np.float32)
#: Every kind, in store order: the order a shard's arrays and a model's concatenated inputs take.
KINDS = (
    *(FeatureKind(f"spatial_{level}", "resnet50", 7168, _FLOAT16, level=level) for level in LEVELS),
    FeatureKind("temporal_slow", "slowfast", 2048, _FLOAT16, part="slow"),
    FeatureKind("temporal_fast", "slowfast", 256, _FLOAT16, part="fast"),
    FeatureKind("nss", "nss", None, _FLOAT32),
)
BY_NAME = {kind.name: kind for kind in KINDS}
#: The kinds' names, in store order.
KIND_NAMES = tuple(BY_NAME)
NSS = BY_NAME["nss"].name


def spatial_kind(level: str) -> str:
    """The name of the ResNet-50 kind of spatial level ``level``."""
    return next(kind.name for kind in KINDS if kind.level == level)


def temporal_kinds(parts: Iterable[str] = TEMPORAL_PARTS) -> tuple[str, ...]:
    """The names of the SlowFast kinds of ``parts``, in store order."""
    parts = set(parts)
    return tuple(kind.name for kind in KINDS if kind.part in parts)


def in_store_order(names: Iterable[str]) -> tuple[str, ...]:
    """The known kinds among ``names``, in store order."""
    names = set(names)
    return tuple(name for name in KIND_NAMES if name in names)


def select(levels: Iterable[str] = (), parts: Iterable[str] = (), nss: bool = False) -> tuple[str, ...]:
    """The kinds of spatial ``levels``, temporal ``parts`` and NSS (when ``nss``), in store order."""
    levels, parts = set(levels), set(parts)
    return tuple(kind.name for kind in KINDS
                 if (kind.level is not None and kind.level in levels) or (kind.part is not None and kind.part in parts)
                 or (nss and kind.name == NSS))


def held_levels(names: Iterable[str]) -> list[str]:
    """The spatial levels of the kinds ``names``, in their order."""
    return [BY_NAME[name].level for name in names if name in BY_NAME and BY_NAME[name].level is not None]
