"""Which store a scorer reads and extends, and the check that it holds features made as the model's were.

The store has the model's settings at the precision this machine's backbones compute at (the one difference
allowed, :data:`~pipeline.features.SCORING_MAY_DIFFER`), so float32 and bf16 features never share a store.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.backbones import resolve_device
from pipeline.backbones.device import feature_precision
from pipeline.config import ExtractConfig
from pipeline.errors import SettingsMismatchError, StoreError
from pipeline.features import FeatureSettings
from pipeline.fit.model import ModelSpec
from pipeline.store import FeatureStore, StoreSettings


def scoring_settings(spec: ModelSpec, extract: ExtractConfig | None) -> StoreSettings:
    """The settings of the store a scorer extracting with ``extract`` reads: the model's, at the precision of
    ``extract.device``; the model's as they are when its features were not made by extraction (``extract`` None)."""
    if extract is None:
        return spec.store
    precision = feature_precision(resolve_device(extract.device))
    return StoreSettings.of(FeatureSettings.from_dict(spec.store.values).with_precision(precision).to_dict())


def default_store(settings: StoreSettings, trained: str | Path) -> Path:
    """The store a scorer whose store has ``settings`` uses by default: ``trained`` (the one its model was trained
    from) when that is here with the same settings; otherwise ``features/scores-<first 12 digits of their hash>``."""
    try:
        if FeatureStore.open(trained).settings.hash == settings.hash:
            return Path(trained)
    except StoreError:
        pass
    return Path("features") / f"scores-{settings.hash[:12]}"


def open_matching(root: Path, settings: StoreSettings, model_path: Path) -> FeatureStore:
    """The existing store at ``root``, opened read-only; SettingsMismatchError naming the differing keys when it
    was made with other settings than ``settings`` (those of the model at ``model_path``, at this precision)."""
    store = FeatureStore.open(root)
    if store.settings.hash != settings.hash:
        raise SettingsMismatchError(
            f"{root}: this store was made with other extraction settings than the features {model_path} "
            "was trained on (at the precision this machine extracts at); pass another --store (a new directory "
            "is fine). Differing (model here vs. store): " + "; ".join(settings.differences(store.settings)))
    return store
