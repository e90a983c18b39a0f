"""Extracting the videos a scorer's store lacks, with backbones that make exactly the model's features."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pipeline.backbones import Backbones
from pipeline.config import ExtractConfig
from pipeline.errors import SettingsMismatchError
from pipeline.extract.run import extract_videos
from pipeline.features import SCORING_MAY_DIFFER, FeatureSettings
from pipeline.fit.model import ModelSpec
from pipeline.store import FeatureStore, extraction_need


class MissingVideos:
    """What extracts the videos a store lacks for one model; its backbones are built on first need, once."""

    def __init__(self, model_path: Path, spec: ModelSpec, extract: ExtractConfig | None, store: Path):
        self.model_path = model_path
        self.spec = spec
        # The model's feature settings with this machine's decoder, device, workers and weights; None: the model's
        # features were not made by extract_features.py, so they cannot be made here.
        self.extract = extract
        self.store = store
        self._backbones: Backbones | None = None

    def extract_into(self, videos: Mapping[str, str], store: FeatureStore | None, *,
                     progress: bool = False) -> dict[str, str]:
        """Extract the ``{key: path}`` videos ``store`` (the one at :attr:`store`, opened; None: not made yet) does
        not hold (from that same file); return failures. A store this process cannot write fails them, naming it."""
        kinds = self.spec.features.kinds
        cached = store.cached() if store is not None else {}
        needed = [(key, path) for key, path in videos.items() if extraction_need(cached.get(key), path, kinds)]
        if not needed:
            return {}
        if store is not None and store.read_only:
            return {key: f"{path}: not in the feature store {self.store}, which is read-only here; to extract it, "
                         "score with --store DIR, a writable directory (which then holds every video scored)"
                    for key, path in needed}
        level = self.spec.features.level
        backbones = self.backbones()
        summary = extract_videos(needed, self.store, backbones.cfg, levels=[] if level is None else [level],
                                 backbones=backbones, progress=progress)
        return summary.failed

    def backbones(self) -> Backbones:
        """The backbones that make the model's inputs, built once; refused if they would make other features."""
        if self._backbones is None:
            trained = FeatureSettings.from_dict(self.spec.store.values, str(self.model_path))
            backbones = Backbones(self.extract)
            differing = trained.differences(backbones.settings, allowed=SCORING_MAY_DIFFER)
            if differing:
                raise SettingsMismatchError(
                    f"{self.model_path}: this model was trained on features extracted with other settings than "
                    f"these backbones give (weights {self.extract.weights!r}); score from a store that holds the "
                    "videos already, or refit on features extracted now. Differing (model vs. now): "
                    + "; ".join(differing))
            self._backbones = backbones
        return self._backbones
