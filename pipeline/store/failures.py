"""``failures.csv``: the videos whose latest extraction failed, with the reason, until they succeed.

Rewritten whole under the store's lock, so concurrent writers (other processes, other machines) never lose
each other's rows and a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.files import write_atomic
from pipeline.store.manifest import locked

FAILURES = "failures.csv"


def read_failures(root: Path) -> dict[str, str]:
    """``key -> error`` of the videos whose latest extraction failed."""
    path = root / FAILURES
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {row["key"]: row["error"] for row in csv.DictReader(f)}


def record_failures(root: Path, errors: Mapping[str, str], succeeded: Sequence[str] = ()) -> None:
    """Set the latest error of the keys in ``errors`` and drop the keys that ``succeeded``, atomically."""
    if not errors and not read_failures(root).keys() & set(succeeded):
        return  # nothing to change: skip the lock and the rewrite (the common case after a clean shard)
    with locked(root):
        current = read_failures(root)
        for key in succeeded:
            current.pop(key, None)
        current.update({key: " ".join(str(error).split()) for key, error in errors.items()})  # one line each
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["key", "error"])
        w.writerows(sorted(current.items()))
        write_atomic(root / FAILURES, out.getvalue())
