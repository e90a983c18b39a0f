"""Finding each video under ``--videos DIR``: by its relative path, else by its file name alone when unique.

Data sets are shipped flat in one copy and nested in folders in another (LSVQ's batches, YouTube-UGC's
categories, CVD2014's test folders whose spelling differs from the file names), and some copies rename files.
Each record lists the names its video may have; the first that exists wins. A file name is only trusted when
it picks one file for one row: LSVQ has 343 names that occur in two batches, and a flat copy holds only one
of each pair, which could be either video.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Missing:
    """A row whose video could not be chosen, and why."""

    why: str


class VideoIndex:
    """The files under one folder, by relative path and by file name (walked once, on first need)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._by_name: dict[str, list[str]] | None = None

    def find(self, names: tuple[str, ...]) -> str | Missing:
        """The relative path of the first of ``names`` found: as a path under the root, else as a unique file name."""
        for name in names:
            if (self.root / name).is_file():
                return Path(name).as_posix()
        why = "no such file"
        for name in names:
            matches = self.by_name().get(PurePosixPath(name).name, [])
            if len(matches) == 1:
                return matches[0]
            if matches and why == "no such file":
                why = f"{len(matches)} files are named {PurePosixPath(name).name}: {', '.join(matches[:3])}"
        return Missing(why)

    def by_name(self) -> dict[str, list[str]]:
        if self._by_name is None:
            index: dict[str, list[str]] = defaultdict(list)
            for folder, _, files in os.walk(self.root, followlinks=True):
                relative = Path(folder).relative_to(self.root)
                for file in files:
                    index[file].append((relative / file).as_posix())
            self._by_name = dict(index)
        return self._by_name


def resolve(candidates: list[tuple[str, ...]], root: str | Path) -> list[str | Missing]:
    """Each record's video as a POSIX path relative to ``root``, or why it is missing (``VideoIndex.find``;
    a file that several rows found by its name alone belongs to none of them)."""
    index = VideoIndex(root)
    found = [index.find(names) for names in candidates]
    shared = Counter(path for path in found if isinstance(path, str))
    return [Missing(f"{path} is the only file of that name for {shared[path]} rows")
            if isinstance(path, str) and shared[path] > 1 else path for path in found]
