"""What a feature is: the settings that shape feature values, as one typed object, :class:`FeatureSettings`.

A store records these settings in its manifest and a model file records the settings of the store it was
trained from, both as :meth:`FeatureSettings.to_dict` writes them. Extraction builds them from its
:class:`~pipeline.config.ExtractConfig` and the backbones' weights; scoring turns a model's settings back into
the ExtractConfig that reproduces its features. docs/design.md ("Feature definitions", "Feature store") says
what each setting means.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.config import ClipConfig, ExtractConfig, LevelConfig
from pipeline.errors import SettingsMismatchError
from pipeline.feature_kinds import TEMPORAL_PARTS, select
from pipeline.nss import NSS_DIM, NSS_VERSION
from pipeline.trees import differences

#: Version of the feature definitions (docs/design.md "Feature definitions"); part of every store's settings,
#: so features made under an older definition are never mixed with new ones. Bump on any change.
#: 2: clip frames are scaled from the decoder's pixels to the clip size in one area-averaging swscale call,
#: and key frames are resized to each level in 8 bits on the CPU (docs/design.md says exactly how).
#: 3: every YUV to RGB conversion gives each pixel its own chroma, with exact rounding (the arithmetic the
#: accelerator recipe repeats on the device from the decoder's planes: video/yuv.py).
FEATURE_VERSION = 3
#: What the backbones computed at: float32 on a CPU, bfloat16 autocast on CUDA (backbones/device.py).
PRECISIONS = ("float32", "bf16")
#: Settings in which a model's features and a scorer's may differ: a model trained on bf16 (GPU) features
#: scores float32 (CPU) features too. The scorer then extracts into a store of its own precision.
SCORING_MAY_DIFFER = ("precision",)
#: The ``extract.*`` keys that say how videos are decoded and where the models run, not what the features are
#: (the weights are checked against the model's once built): the only ones a scorer may override.
RUNTIME_KEYS = ("decoder", "device", "weights", "batch_size", "decode_timeout_s", "workers", "shard_videos")
# The keys every extraction's settings hold (those before precision was recorded lack only that one).
_KEYS = ("feature_version", "levels", "clip", "max_chunks", "spatial_weights", "temporal_weights", "nss")


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that shapes the feature values; two runs whose settings differ never share a store."""

    levels: dict[str, int]  # spatial level -> short side in pixels
    clip_frames: int
    clip_size: int
    max_chunks: int  # 0: every second
    spatial_weights: str | None  # the ResNet-50 weights' id (None: no spatial level extracted)
    temporal_weights: str | None  # the SlowFast weights' id (None: no temporal features)
    nss_dim: int | None  # None: no NSS features
    nss_version: int | None
    precision: str | None  # one of PRECISIONS; None in settings recorded before precision was
    feature_version: int = FEATURE_VERSION

    @classmethod
    def from_config(cls, cfg: ExtractConfig, *, spatial_weights: str | None, temporal_weights: str | None,
                    precision: str) -> FeatureSettings:
        """The settings an extraction with ``cfg`` produces, given its backbones' weight ids and precision."""
        return cls(
            levels={name: level.short_side for name, level in sorted(cfg.levels.items())},
            clip_frames=cfg.clip.frames, clip_size=cfg.clip.size, max_chunks=cfg.max_chunks,
            spatial_weights=spatial_weights if cfg.levels else None,
            temporal_weights=temporal_weights if cfg.temporal else None,
            nss_dim=NSS_DIM if cfg.nss else None, nss_version=NSS_VERSION if cfg.nss else None,
            precision=precision,
        )

    def to_config(self, runtime: ExtractConfig, weights: str | None = None) -> ExtractConfig:
        """The ExtractConfig that reproduces these features: the settings from here, how to decode and where to
        run from ``runtime``. ``weights`` (default: ``random`` when these features used random weights, else
        ``pretrained``) must give the same weight ids; the backbones check that once built."""
        return dataclasses.replace(
            runtime,
            weights=weights or ("random" if self.random_weights else "pretrained"),
            levels={name: LevelConfig(side) for name, side in self.levels.items()},
            clip=ClipConfig(size=self.clip_size, frames=self.clip_frames),
            max_chunks=self.max_chunks,
            temporal=self.temporal_weights is not None,
            nss=self.nss_dim is not None,
        )

    @property
    def random_weights(self) -> bool:
        """True when a backbone ran with seeded random weights (tests, demos without the pretrained ones)."""
        return any(str(i).startswith("random") for i in (self.spatial_weights, self.temporal_weights) if i)

    def kinds(self, levels: Iterable[str]) -> tuple[str, ...]:
        """The store's feature kinds a video extracted at ``levels`` holds, in store order."""
        return select(levels, TEMPORAL_PARTS if self.temporal_weights is not None else (), self.nss_dim is not None)

    def with_precision(self, precision: str) -> FeatureSettings:
        """These settings, computed at ``precision`` (what a scorer's own backbones give)."""
        return dataclasses.replace(self, precision=precision)

    def differences(self, other: FeatureSettings, allowed: tuple[str, ...] = ()) -> list[str]:
        """``"key: mine vs. other's"`` for each setting that differs (keys as in :meth:`to_dict`), ``allowed`` aside."""
        return differences(self.to_dict(), other.to_dict(), allowed)

    def to_dict(self) -> dict:
        """The settings as stores and model files record them (their hash names a store)."""
        settings = {
            "feature_version": self.feature_version,
            "levels": {name: {"short_side": side} for name, side in sorted(self.levels.items())},
            "clip": {"frames": self.clip_frames, "size": self.clip_size},
            "max_chunks": self.max_chunks,
            "spatial_weights": self.spatial_weights,
            "temporal_weights": self.temporal_weights,
            "nss": {"dim": self.nss_dim, "version": self.nss_version} if self.nss_dim is not None else None,
        }
        return settings | ({"precision": self.precision} if self.precision is not None else {})

    @staticmethod
    def describes(settings: Mapping) -> bool:
        """True when ``settings`` were written by an extraction (a store may hold features made elsewhere)."""
        return all(key in settings for key in _KEYS)

    @classmethod
    def from_dict(cls, settings: Mapping, where: str = "settings") -> FeatureSettings:
        """The settings :meth:`to_dict` wrote; SettingsMismatchError naming ``where`` for any others."""
        if not cls.describes(settings):
            raise SettingsMismatchError(f"{where}: these features were not made by extract_features.py (settings "
                                        f"{dict(settings)}); only a store holding them already can serve them")
        nss = settings["nss"]
        return cls(
            levels={name: int(level["short_side"]) for name, level in settings["levels"].items()},
            clip_frames=settings["clip"]["frames"], clip_size=settings["clip"]["size"],
            max_chunks=settings["max_chunks"],
            spatial_weights=settings["spatial_weights"], temporal_weights=settings["temporal_weights"],
            nss_dim=nss["dim"] if nss else None, nss_version=nss["version"] if nss else None,
            precision=settings.get("precision"), feature_version=settings["feature_version"],
        )
