"""How a scorer extracts on this machine: the overrides a model allows, and its features as an ExtractConfig.

A model fixes what its features are; scoring may change only how they are made here (decoder, device, weights,
workers...: :data:`~pipeline.features.RUNTIME_KEYS`).
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.config import ExtractConfig, load_config
from pipeline.errors import UsageError
from pipeline.extract.run import check_config
from pipeline.features import RUNTIME_KEYS, FeatureSettings
from pipeline.fit.model import ModelSpec


def check_overrides(overrides: Sequence[str]) -> None:
    """UsageError naming the keys scoring may change for the first ``KEY=VALUE`` item that is not an ``extract.*``
    key of RUNTIME_KEYS; checked before the model is loaded."""
    allowed = [f"extract.{key}" for key in RUNTIME_KEYS]
    fixed = [item for item in overrides if item.split("=", 1)[0].strip() not in allowed]
    if fixed:
        raise UsageError(f"--set {fixed[0]!r}: the model fixes what its features are (and everything but how to "
                         "extract them); scoring may change only " + ", ".join(allowed))


def runtime_config(spec: ModelSpec, overrides: Sequence[str], device: str | None) -> ExtractConfig:
    """The model config's ``extract`` section with the ``overrides`` (checked by :func:`check_overrides`) and
    ``device`` (None: the config's) applied; ConfigError for values no extraction can run with."""
    runtime = load_config(None, overrides, base=spec.config).extract
    runtime.device = device or runtime.device
    check_config(runtime)
    return runtime


def extraction_config(spec: ModelSpec, runtime: ExtractConfig, weights: str | None) -> ExtractConfig | None:
    """The ExtractConfig that reproduces the model's features (:meth:`FeatureSettings.to_config`) with ``runtime``'s
    decoder, device and workers and ``weights``; None when its features were not made by extract_features.py, so
    that only a store holding them already can be scored from."""
    settings = spec.store.values
    return FeatureSettings.from_dict(settings).to_config(runtime, weights) \
        if FeatureSettings.describes(settings) else None
