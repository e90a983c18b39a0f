"""Fitting the regressor on cached features: two phases (coarse, then fine), folds and sweeps.

``data`` (splits, features as tensors) -> ``calibration``, ``intervals``, ``novelty`` (what makes a score
trustworthy) -> ``model`` (the cross-fitted members and their file) -> ``losses`` -> ``train`` (one phase's
loop) -> ``outputs`` (the run directory) -> ``jobs`` (one fit, many in parallel) -> ``sweep`` (sweep files) ->
``run`` (what fit.py calls). score.py needs only ``model.load_model``.
"""
