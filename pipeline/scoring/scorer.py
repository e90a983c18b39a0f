"""The scorer: a trained model put together with the store it reads and extends, loaded once, scoring many.

Each job is a piece of its own: :mod:`.runtime` (the overrides a model allows, its features as an
ExtractConfig), :mod:`.store_choice` (which store, and that it holds the model's features), :mod:`.missing`
(extracting what the store lacks), :mod:`.predict` (the model on feature arrays) and :mod:`.table` (the rows
``score.py`` writes).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.backbones import resolve_device
from pipeline.config import ExtractConfig
from pipeline.errors import DamagedShardError
from pipeline.fit.intervals import DEFAULT_LEVEL, coverage
from pipeline.fit.model import ChunkRegressor, ModelSpec, load_model
from pipeline.labels import read_labels
from pipeline.metrics import evaluate
from pipeline.scoring.missing import MissingVideos
from pipeline.scoring.predict import Predictions, Predictor
from pipeline.scoring.runtime import check_overrides, extraction_config, runtime_config
from pipeline.scoring.store_choice import default_store, open_matching, scoring_settings
from pipeline.scoring.table import scores_table
from pipeline.store import MANIFEST, FeatureStore, FeatureTable, StoreSettings


class Scorer:
    """A trained model, the backbones that make its inputs (built on first need), and a feature store."""

    def __init__(self, model: ChunkRegressor, spec: ModelSpec, path: Path, extract: ExtractConfig | None,
                 store: str | Path | None = None, interval: float = DEFAULT_LEVEL):
        self.model = model
        self.spec = spec
        self.path = path
        self.extract = extract
        self.predictor = Predictor(model, spec, interval)
        self.device = self.predictor.device
        self.store = Path(store) if store is not None else default_store(self.settings, spec.config.data.store)
        self.missing = MissingVideos(path, spec, extract, self.store)

    @functools.cached_property
    def settings(self) -> StoreSettings:
        """The settings of the store this scorer reads and extends (:func:`.store_choice.scoring_settings`); made
        when first needed, so that scoring features held in memory needs none."""
        return scoring_settings(self.spec, self.extract)

    @classmethod
    def load(cls, model_path: str | Path, *, device: str | None = None, weights: str | None = None,
             store: str | Path | None = None, overrides: Sequence[str] = (), interval: float = DEFAULT_LEVEL) -> Scorer:
        """Load ``RUN_DIR/best_model.pth`` once; score with it as often as needed.

        ``device``: where the backbones and the model run (default: the model config's ``extract.device``).
        ``weights``: backbone weights for videos not in the store yet (``pretrained``, ``random`` or a directory;
        default: ``random`` when the model's features were made with random weights, else ``pretrained``).
        ``store``: the feature store to read and extend (default: :func:`.store_choice.default_store`).
        ``overrides``: ``extract.*`` ``KEY=VALUE`` items for how to extract (decoder, batch size, workers...).
        ``interval``: the share of MOS the ``score_low``..``score_high`` intervals should hold.
        """
        path = Path(model_path)
        check_overrides(overrides)
        model, spec = load_model(path)
        if spec.legacy:
            warnings.warn(f"{path} was written before models had intervals and an order-keeping calibration: its "
                          "scores go through its logistic (ties where it flattens) and get no score_low/score_high, "
                          "novelty or in_domain; refit it with fit.py for those", UserWarning, stacklevel=2)
        runtime = runtime_config(spec, overrides, device)
        model.to(resolve_device(runtime.device))
        return cls(model, spec, path, extraction_config(spec, runtime, weights), store, interval)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The store's feature kinds the model reads, in input order."""
        return self.spec.features.kinds

    def score_csv(self, csv: str | Path, video_root: str | Path | None = None, *,
                  progress: bool = False) -> tuple[pd.DataFrame, dict | None]:
        """Score every row of a label CSV; return the table (with a ``mos`` column) and metrics when MOS is given.

        Metrics are those of :func:`pipeline.metrics.evaluate` over the rows scored ``ok`` that have a MOS:
        ``plcc``/``rmse`` after a logistic fitted on these rows, ``plcc_raw``/``rmse_raw`` of ``score`` as is, and
        ``coverage``, the share of MOS inside ``score_low``..``score_high`` (NaN without intervals).
        """
        labels = read_labels(csv, video_root, require_mos=False, missing="keep")
        table = self.score_paths(dict(zip(labels["filename"], labels["path"])), progress=progress)
        table.insert(1, "mos", labels["mos"].to_numpy())
        rated = table[(table["status"] == "ok") & table["mos"].notna()]
        if not len(rated):
            return table, None
        metrics = evaluate(rated["mos"], rated["score"])
        metrics["coverage"] = coverage(rated["mos"], rated["score_low"], rated["score_high"])
        return table, metrics

    def score_paths(self, videos: Sequence[str | Path] | Mapping[str, str | Path], *,
                    progress: bool = False) -> pd.DataFrame:
        """Score video files: extract those the store lacks, then predict; one row per video, in input order.

        ``videos``: paths (each path, as given, is its key) or ``{key: path}``. Columns: those of
        :func:`.table.scores_table` (``filename`` the key, ``score``, ``score_raw``, ``status`` ``ok`` | ``error``,
        ``error`` the reason, ``score_low``, ``score_high``, ``in_domain``, ``novelty``, ``trained_on``, then
        ``seconds``, ``chunk_scores``, ``chunk_low`` and ``chunk_high``: arrays, the second each chunk starts at,
        its score and interval). A video that cannot be read fails its own row; nothing is raised for it.
        """
        paths = {str(k): str(v) for k, v in videos.items()} if isinstance(videos, Mapping) else \
            {str(v): str(v) for v in videos}
        errors = {key: f"{path}: video file not found" for key, path in paths.items() if not Path(path).exists()}
        present = {key: path for key, path in paths.items() if key not in errors}
        while True:  # each damaged shard found is set aside and its videos extracted again, or it ends the run
            try:
                return self._score_present(list(paths), present, dict(errors), progress)
            except DamagedShardError as damage:
                FeatureStore.open(self.store).set_aside(damage)  # ReadOnlyStoreError (naming it) if it cannot be

    def _score_present(self, keys: list[str], present: Mapping[str, str], errors: dict[str, str],
                       progress: bool) -> pd.DataFrame:
        """:meth:`score_paths` of the videos whose files are ``present``; ``errors`` holds the others' reasons."""
        store = self._open_store() if (self.store / MANIFEST).exists() else None  # opened once: indexes read once
        errors.update(self.missing.extract_into(present, store, progress=progress))
        scored = [key for key in present if key not in errors]
        if not scored:
            return scores_table(keys, errors, None, {})
        store = store or self._open_store()  # created by the extraction when there was none
        predictions = self.score_table(store.read(self.kinds, scored))
        return scores_table(keys, errors, predictions, store.chunk_seconds(scored))

    def _open_store(self) -> FeatureStore:
        return open_matching(self.store, self.settings, self.path)

    def score_table(self, table: FeatureTable) -> Predictions:
        """Score features read from a store (``FeatureStore.read(scorer.kinds, keys)``)."""
        return self.predictor.predict(table.features, table.offsets, table.keys)

    def score_features(self, features: Mapping[str, np.ndarray], offsets: Sequence[int] | None = None,
                       keys: Sequence[str] | None = None) -> Predictions:
        """Score chunk feature arrays: ``{kind: (rows, width)}`` for every kind in :attr:`kinds`
        (:meth:`.predict.Predictor.predict`)."""
        return self.predictor.predict(features, offsets, keys)
