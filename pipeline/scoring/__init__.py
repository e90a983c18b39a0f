"""Scoring: a trained model applied to videos, to cached features, or to feature arrays. Load once, score many.

    scorer = Scorer.load("runs/demo/best_model.pth")
    table = scorer.score_paths(["a.mp4", "b.mp4"])     # extracts what its store lacks, then predicts

A model file names the extraction settings of the features it was trained on (``ModelSpec.store``). Videos
are extracted with exactly those settings (levels, clip, max_chunks, weights, NSS), and a store made with any
other settings is refused, so a model never scores features it was not trained on. The one allowed
difference is the precision the backbones compute at (:data:`~pipeline.features.SCORING_MAY_DIFFER`): a model
trained on bf16 GPU features scores on a CPU-only machine, from float32 features in a store of that precision
(docs/design.md, "Feature store"). Only the spatial level the model reads is extracted.

Scores: each of the model's cross-fitted members predicts standardised MOS per chunk; a video's ``score_raw``
is the members' mean over its chunks, mapped back to the training data's MOS scale, and its ``score`` is that
value through the model's calibration, a strictly increasing map (:mod:`pipeline.fit.calibration`), so
``score`` ranks videos exactly as ``score_raw`` does. ``score_low``/``score_high`` bound an interval that
holds the MOS of ``interval`` (default 80 %) of videos from new sources (:mod:`pipeline.fit.intervals`);
``novelty`` says how far the video's features lie from the training videos', ``in_domain`` whether that is
within what new sources showed (:mod:`pipeline.fit.novelty`). A video the model trained on (``trained_on``)
is scored by the member that did not train on it: its score is as honest as a new video's. Per-chunk scores
and intervals go through the same maps.

:class:`Scorer` (:mod:`.scorer`) puts together the pieces, one module per job.
"""

from pipeline.scoring.predict import Predictions
from pipeline.scoring.scorer import Scorer
from pipeline.scoring.table import SCORE_COLUMNS, write_per_second, write_scores

__all__ = ["SCORE_COLUMNS", "Predictions", "Scorer", "write_per_second", "write_scores"]
