"""Nested mappings (configs, store settings, JSON outputs): the one flattener, the one list of differences, and
the one way NaN becomes JSON's null.

Every message that names differing settings or config keys goes through :func:`differences`, so they all read
alike: ``levels.coarse.short_side: 448 vs. 64``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

ABSENT = "<absent>"


def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """``tree`` as ``{dotted.key: value}``; non-empty mappings are descended into, anything else is a value."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def canonical(obj: object) -> str:
    """``obj`` as compact JSON with sorted keys: the same text for equal settings, whatever their key order."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def differences(first: Mapping, second: Mapping, allowed: tuple[str, ...] = ()) -> list[str]:
    """``"key: <first's value> vs. <second's value>"`` for every dotted key whose values differ, sorted by key.

    Values compare as JSON (a tuple equals a list); a key only one side has shows as ``<absent>`` on the other.
    Keys in ``allowed`` (and below them) are not reported.
    """
    a, b = flatten(json.loads(canonical(first))), flatten(json.loads(canonical(second)))
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, ABSENT) != b.get(k, ABSENT)
                  and not any(k == p or k.startswith(p + ".") for p in allowed))
    return [f"{k}: {canonical(a.get(k, ABSENT))} vs. {canonical(b.get(k, ABSENT))}" for k in keys]


def finite(data: object) -> object:
    """``data`` (dicts, lists and tuples nested) with every NaN or infinite float as None: strict JSON's null."""
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data
