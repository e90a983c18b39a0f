"""The domain check: how far a video's features lie from the training videos', against what new content shows.

A score is a guess from the training data; a video unlike all of it (a test pattern, a cartoon for a model
fitted on camera footage) gets a number, but no reason to trust it. Each video is its mean feature vector,
standardised like the model's inputs and projected on the training videos' principal components; the
residual off those components is kept as one more coordinate, so a video that differs in a direction the
training data never varied in is far too. Its distance is the mean distance to its :data:`NEIGHBOURS`
nearest training videos.

What "far" means is measured, not assumed: in cross-fitting, each fold's videos (whole sources the rest
never saw) are measured against the other folds' videos, and the :data:`QUANTILE` quantile of those
distances is the threshold. ``novelty`` is a video's distance over that threshold: below 1 it is as close
to the training data as most new sources are (``in_domain``); 2 means twice as far as that edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils.extmath import randomized_svd

COMPONENTS = 32  # principal components kept (fewer with fewer training videos)
NEIGHBOURS = 5  # nearest training videos a distance is averaged over
QUANTILE = 0.95  # of held-out sources' distances: the edge of the domain
MAX_REFERENCE = 5000  # training videos the domain is fitted on and kept to measure against (a seeded sample beyond)


@dataclass(frozen=True)
class Projection:
    """Standardise, project on principal components, and append the residual norm (one more coordinate)."""

    mean: np.ndarray  # (dim,)
    scale: np.ndarray  # (dim,)
    components: np.ndarray  # (components, dim), orthonormal rows

    @classmethod
    def fit(cls, x: np.ndarray) -> Projection:
        mean, scale = x.mean(0), x.std(0)
        scale = np.where(scale < 1e-6, 1.0, scale)
        z = ((x - mean) / scale).astype(np.float32)  # directions, not digits: float32 halves the passes' cost
        rank = max(1, min(COMPONENTS, len(x) - 1, x.shape[1]))
        _, _, vt = randomized_svd(z, rank, n_iter=4, random_state=0)  # a full SVD at LSVQ's size takes minutes
        return cls(mean, scale, vt.astype(np.float64))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)  # float32 passes over the wide inputs: the distances need no more
        z = (x - self.mean.astype(np.float32)) * (1 / self.scale).astype(np.float32)
        coordinates = (z @ self.components.T.astype(np.float32)).astype(np.float64)
        # the components are orthonormal: |z|^2 = |coordinates|^2 + |residual|^2, without forming the residual
        squares = np.einsum("ij,ij->i", z, z, dtype=np.float64)
        residual = np.sqrt(np.maximum(squares - (coordinates**2).sum(1), 0.0))
        return np.column_stack([coordinates, residual])


@dataclass(frozen=True)
class DomainCheck:
    """The training videos' projected points and the distance threshold that held-out sources set."""

    projection: Projection
    reference: np.ndarray  # (videos, components + 1): projected training videos
    threshold: float

    def novelty(self, video_means: np.ndarray) -> np.ndarray:
        """Each video's distance to the training data over the threshold (float64 ``(videos,)``)."""
        return nearest_distance(self.projection(video_means), self.reference) / self.threshold

    def to_dict(self) -> dict:
        p = self.projection
        return {"mean": p.mean.tolist(), "scale": p.scale.tolist(), "components": p.components.tolist(),
                "reference": self.reference.tolist(), "threshold": self.threshold}

    @classmethod
    def from_dict(cls, values: dict) -> DomainCheck:
        projection = Projection(*(np.asarray(values[k], np.float64) for k in ("mean", "scale", "components")))
        return cls(projection, np.asarray(values["reference"], np.float64), float(values["threshold"]))


def reference_sample(videos: int, seed: int) -> np.ndarray:
    """Which training videos (indices, in order) the domain is fitted on: all, or a seeded :data:`MAX_REFERENCE`
    of them; their mean features then stay small at any data-set size (5,000 x 10,000 float64 is 400 MB)."""
    if videos <= MAX_REFERENCE:
        return np.arange(videos)
    return np.sort(np.random.default_rng(seed).choice(videos, MAX_REFERENCE, replace=False))


def fit_domain(video_means: np.ndarray, folds: np.ndarray) -> DomainCheck:
    """The domain of training videos ``video_means`` ``(videos, dim)`` (:func:`reference_sample` of them),
    thresholded by their ``folds``.

    For each fold, a projection fitted on the other folds measures the fold's videos against them; the
    threshold is the :data:`QUANTILE` quantile of all those held-out distances.
    """
    x = np.asarray(video_means, np.float64)
    held_out = []
    for k in np.unique(folds):
        rest = x[folds != k]
        projection = Projection.fit(rest)
        held_out.append(nearest_distance(projection(x[folds == k]), projection(rest)))
    threshold = float(np.quantile(np.concatenate(held_out), QUANTILE)) or 1.0
    projection = Projection.fit(x)
    return DomainCheck(projection, projection(x), threshold)


def nearest_distance(points: np.ndarray, reference: np.ndarray, block: int = 1024) -> np.ndarray:
    """Mean Euclidean distance of each point to its :data:`NEIGHBOURS` nearest ``reference`` points."""
    k = min(NEIGHBOURS, len(reference))
    out = np.empty(len(points))
    squared_ref = (reference**2).sum(1)
    for start in range(0, len(points), block):
        chunk = points[start:start + block]
        d2 = (chunk**2).sum(1)[:, None] + squared_ref[None, :] - 2 * chunk @ reference.T
        nearest = np.partition(np.maximum(d2, 0), k - 1, axis=1)[:, :k]
        out[start:start + block] = np.sqrt(nearest).mean(1)
    return out
