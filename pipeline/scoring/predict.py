"""Inference: a model's members on chunk feature arrays, through its calibration, intervals and domain check."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.errors import ArrayError, UsageError
from pipeline.fit.model import ChunkRegressor, ModelSpec

# Chunk rows converted to float32 and scored at once: enough for an efficient matrix product, a bounded
# scratch buffer; smaller and larger blocks were slower (BENCHMARKS.md, "Prediction throughput").
_BLOCK_ROWS = 1024


@dataclass
class Predictions:
    """Scores of videos and of their chunks; rows of ``keys[i]`` are ``offsets[i]:offsets[i+1]``.

    Interval bounds and novelty are NaN for a model file of version 1, which has neither.
    """

    keys: list[str]
    offsets: np.ndarray  # int64 (videos + 1,)
    score: np.ndarray  # float64 (videos,): calibrated, on the training data's MOS scale
    score_raw: np.ndarray  # float64 (videos,): the same before calibration (mean of the chunks' raw scores)
    score_low: np.ndarray  # float64 (videos,): the interval around ``score``
    score_high: np.ndarray
    novelty: np.ndarray  # float64 (videos,): distance to the training videos over the domain's edge (<= 1: in domain)
    trained_on: np.ndarray  # bool (videos,): a training video, scored by the member that left it out
    chunk_score: np.ndarray  # float64 (rows,): each chunk's score, calibrated
    chunk_score_raw: np.ndarray  # float64 (rows,)
    chunk_low: np.ndarray  # float64 (rows,)
    chunk_high: np.ndarray


class Predictor:
    """A model ready to predict: its layers with the input standardisation folded in, on the model's device."""

    def __init__(self, model: ChunkRegressor, spec: ModelSpec, interval: float):
        if not 0 < interval < 1:
            raise UsageError(f"the interval level must be between 0 and 1 (0.8: an 80 % interval), got {interval}")
        self.spec = spec
        self.interval = interval
        self.members = model.members
        self.device = next(model.parameters()).device
        self._layers = folded_layers(model)

    def predict(self, features: Mapping[str, np.ndarray], offsets: Sequence[int] | None = None,
                keys: Sequence[str] | None = None) -> Predictions:
        """Predictions of chunk feature arrays, ``{kind: (rows, width)}`` for every kind the model reads.

        ``offsets`` (``videos + 1`` increasing row numbers from 0 to rows) cut the rows into videos; None: all
        rows are one video. ``keys`` name the videos (default ``"0", "1", ...``).
        """
        rows = self._check_features(features)
        offsets = np.asarray([0, rows] if offsets is None else offsets, dtype=np.int64)
        counts = np.diff(offsets)
        if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != rows or (counts < 1).any():
            raise ArrayError(f"offsets must rise strictly from 0 to the row count {rows}, got {offsets.tolist()[:8]}")
        keys = [str(i) for i in range(len(counts))] if keys is None else list(keys)
        if len(keys) != len(counts):
            raise ArrayError(f"{len(keys)} keys for {len(counts)} videos")
        spec = self.spec
        chunk_members, sums = self._chunk_outputs(features, offsets)
        chunk_members = chunk_members * spec.mos_std + spec.mos_mean  # (rows, members), MOS scale
        trained_on = np.array([key in spec.held_out_by for key in keys], dtype=bool)
        # a training video's rows: only the member that left it out (the others trained on it)
        video_of_row = np.repeat(np.arange(len(counts)), counts)
        held_out = np.array([spec.held_out_by.get(key, -1) for key in keys])[video_of_row]  # (rows,), -1: any
        own = held_out >= 0
        chunk_raw = chunk_members.mean(1)
        chunk_raw[own] = chunk_members[own, held_out[own]]
        video_raw = np.add.reduceat(chunk_raw, offsets[:-1]) / counts
        calibrate = spec.calibration
        chunk_score, video_score = calibrate(chunk_raw), calibrate(video_raw)
        if spec.legacy:
            nan_rows, nan_videos = np.full(rows, np.nan), np.full(len(counts), np.nan)
            return Predictions(keys, offsets, video_score, video_raw, nan_videos, nan_videos, nan_videos, trained_on,
                               chunk_score, chunk_raw, nan_rows, nan_rows)
        member_scores = calibrate(chunk_members)  # (rows, members)
        video_members = calibrate(np.add.reduceat(chunk_members, offsets[:-1], axis=0) / counts[:, None])
        chunk_low, chunk_high = self._interval(member_scores, own, held_out, chunk_score)
        video_held_out = held_out[offsets[:-1]]
        low, high = self._interval(video_members, trained_on, video_held_out, video_score)
        novelty = spec.domain.novelty(sums / counts[:, None].astype(np.float32))
        return Predictions(keys, offsets, video_score, video_raw, low, high, novelty, trained_on,
                           chunk_score, chunk_raw, chunk_low, chunk_high)

    def _interval(self, member_scores: np.ndarray, own: np.ndarray, held_out: np.ndarray,
                  score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interval bounds of rows scored by all members (``member_scores`` ``(rows, members)``), or, where ``own``,
        by the one member ``held_out``; widened to hold ``score`` itself."""
        residuals = self.spec.residuals
        low, high = residuals.interval(member_scores, self.interval)
        if own.any():
            chosen = member_scores[own, held_out[own]][:, None]
            low[own], high[own] = residuals.interval(chosen, self.interval)
        return np.minimum(low, score), np.maximum(high, score)

    def _check_features(self, features: Mapping[str, np.ndarray]) -> int:
        """The row count of ``features``, once each kind is checked present with the model's width."""
        widths = self.spec.widths
        kinds = self.spec.features.kinds
        missing = [kind for kind in kinds if kind not in features]
        if missing:
            raise ArrayError(f"features lack {missing}; this model reads {widths} (kind: width)")
        shapes = {kind: np.shape(features[kind]) for kind in kinds}
        if any(len(s) != 2 or s[1] != widths[kind] for kind, s in shapes.items()) or \
                len({s[0] for s in shapes.values()}) != 1 or not next(iter(shapes.values()))[0]:
            raise ArrayError(f"features must be (rows, width) arrays with one row count and widths {widths}; "
                             f"got shapes {shapes}")
        return next(iter(shapes.values()))[0]

    @torch.no_grad()
    def _chunk_outputs(self, features: Mapping[str, np.ndarray], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every member's output (standardised MOS, float64 ``(rows, members)``) of every row, and each video's sum
        of its features (``(videos, width)``, for the domain check); a block at a time into one float32 buffer."""
        rows = int(offsets[-1])
        kinds = self.spec.features.kinds
        widths = [self.spec.widths[kind] for kind in kinds]
        columns = np.cumsum([0, *widths])
        buffer = torch.empty((min(rows, _BLOCK_ROWS), int(columns[-1])), dtype=torch.float32, device=self.device)
        out = torch.empty((rows, self.members), dtype=torch.float32, device=self.device)
        video_of_row = torch.from_numpy(np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))).to(self.device)
        sums = torch.zeros((len(offsets) - 1, int(columns[-1])), dtype=torch.float32, device=self.device)
        for start in range(0, rows, _BLOCK_ROWS):
            stop = min(rows, start + _BLOCK_ROWS)
            x = buffer[: stop - start]
            for kind, left, right in zip(kinds, columns[:-1], columns[1:]):
                x[:, left:right].copy_(torch.as_tensor(features[kind][start:stop]))  # casts float16 in place
            out[start:stop] = self._layers(x).squeeze(-1)
            videos, counts = torch.unique_consecutive(video_of_row[start:stop], return_counts=True)
            sums[videos] += torch.segment_reduce(x, "sum", lengths=counts, axis=0)  # faster than index_add_ (BENCHMARKS.md)
        return out.double().cpu().numpy(), sums.cpu().numpy()


def folded_layers(model: ChunkRegressor) -> nn.Sequential:
    """The model's layers with its input standardisation folded into the first layer: the same chunk scores as
    ``model.chunk_scores``, without two passes of ``(x - mean) / std`` over every input row."""
    layers = [copy.deepcopy(layer) for layer in (*model.body, model.head)]
    first = layers[0]
    with torch.no_grad():
        first.weight.div_(model.input_std[:, None, None])  # (in, members, out)
        first.bias.sub_(torch.einsum("i,iko->ko", model.input_mean, first.weight))
    return nn.Sequential(*layers).eval()
