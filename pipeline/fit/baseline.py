"""Classical baselines beside the MLP: ridge regression and an RBF SVR on per-video mean features.

On small data sets a linear model on pooled features is hard to beat, and papers list such baselines beside
their networks; every ``--folds`` / ``--repeats`` table shows them, so a user sees what the MLP adds.

Each baseline learns from the run's training part only: its ``train`` and ``val`` splits, what the MLP trains
and selects on. Its hyper-parameters are searched by a grouped K-fold inside that part (source content never
on both sides), the best ones are refitted on all of it, and only then are the test splits scored.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from pipeline.fit.data import ChunkFeatures, Log, Split, training_part
from pipeline.fit.protocols import is_test
from pipeline.metrics import evaluate

# name -> (model, hyper-parameter grid) for inputs of a given width; SVR gamma around 1 / width, sklearn's
# "scale" for standardised inputs.
_MODELS: dict[str, Callable[[int], tuple[Any, dict[str, Any]]]] = {
    "ridge": lambda width: (Ridge(), {"alpha": np.logspace(-3, 4, 8)}),
    "svr": lambda width: (SVR(kernel="rbf"), {"C": [0.1, 1.0, 10.0, 100.0], "gamma": np.array([0.1, 1.0, 10.0]) / width}),
}
INNER_FOLDS = 5  # grouped folds of the hyper-parameter search (fewer when the training part has fewer groups)


def run_baselines(names: list[str], features: ChunkFeatures, splits: dict[str, Split], kinds: tuple[str, ...],
                  log: Log = print) -> dict[str, dict[str, dict]]:
    """Fit each baseline of ``names`` on ``train`` + ``val``; return its metrics on every test split."""
    tests = [name for name in splits if is_test(name)]
    part = training_part(splits)
    groups = part.groups.astype(str)
    n_groups = len(set(groups))
    if not names or not tests or n_groups < 2:
        return {}
    x = features.video_means(features.videos(part.keys), kinds)
    y = part.mos
    inputs = {name: features.video_means(features.videos(splits[name].keys), kinds) for name in tests}
    results = {}
    for name in names:
        search = search_baseline(name, x, y, groups)
        params = {key.rsplit("__", 1)[-1]: value for key, value in search.best_params_.items()}
        results[name] = {split: evaluate(splits[split].mos, search.predict(inputs[split])) for split in tests}
        log(f"baseline {name}: {len(y)} training videos, {search.n_splits_}-fold grouped search chose "
            + ", ".join(f"{key}={value:.3g}" for key, value in params.items()))
    return results


def search_baseline(name: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> GridSearchCV:
    """The baseline ``name`` with its hyper-parameters picked by a grouped K-fold of ``x``, refitted on all of it.

    Inputs and targets are standardised inside each fit, so a penalty or an SVR epsilon means the same on any
    MOS scale. Selection is by mean squared error, the loss the models minimise.
    """
    model, grid = _MODELS[name](x.shape[1])
    step = type(model).__name__.lower()
    estimator = TransformedTargetRegressor(make_pipeline(StandardScaler(), model), transformer=StandardScaler())
    search = GridSearchCV(estimator, {f"regressor__{step}__{key}": list(values) for key, values in grid.items()},
                          scoring="neg_mean_squared_error", cv=GroupKFold(n_splits=min(INNER_FOLDS, len(set(groups)))))
    return search.fit(x, y, groups=groups)
