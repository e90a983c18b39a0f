"""Sweep files: which fits to run, as ``--set`` overrides, and the table that ranks them.

A sweep YAML holds a ``grid`` (every combination of the listed values) and/or ``runs`` (a list of override
mappings). With both, each run is combined with every grid point::

    grid: {optimizer.lr: [1.0e-3, 3.0e-4], loss.rank_weight: [0, 1]}
    runs:
      - {features.temporal: [slow, fast]}
      - {features.temporal: [slow], model.hidden: [256]}

Keys are config paths as for ``--set``; nested mappings are accepted and flattened to dotted keys.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.trees import flatten

SWEEP_KEYS = ("grid", "runs")


def read_sweep(path: str | Path) -> list[dict[str, Any]]:
    """Return the sweep's fits, each a mapping of dotted config key -> value, in file order."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: sweep file not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(tree, dict) or not tree or set(tree) - set(SWEEP_KEYS):
        raise ConfigError(f"{path}: expected a mapping with 'grid' and/or 'runs', got {tree!r}")
    grid = _flat_overrides(tree.get("grid") or {}, f"{path}: grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid {key} must be a non-empty list of values, got {values!r}")
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    runs = tree.get("runs") or [{}]
    if not isinstance(runs, list):
        raise ConfigError(f"{path}: runs must be a list of override mappings, got {runs!r}")
    entries = [{**_flat_overrides(run, f"{path}: runs[{i}]"), **point} for i, run in enumerate(runs) for point in points]
    if entries == [{}]:
        raise ConfigError(f"{path}: the sweep lists no overrides")
    return entries


def as_overrides(entry: dict[str, Any]) -> list[str]:
    """``--set`` strings for one sweep entry (values as JSON, which YAML reads back unchanged)."""
    return [f"{key}={json.dumps(value)}" for key, value in entry.items()]


def _flat_overrides(tree: Any, where: str) -> dict[str, Any]:
    """A mapping of overrides (nested or dotted) as ``{dotted.key: value}``; ConfigError naming ``where`` otherwise."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: expected a mapping of config keys, got {tree!r}")
    return flatten(tree)
