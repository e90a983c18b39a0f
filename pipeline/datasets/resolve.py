"""Finding each video under ``--videos DIR``: by its relative path, else by its file name alone when unique.

Data sets are shipped flat in one copy and nested in folders in another (LSVQ's batches, YouTube-UGC's
categories, CVD2014's test folders whose spelling differs from the file names), and some copies rename files.
Each record lists the names its video may have; the first that exists wins.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path, PurePosixPath


class VideoIndex:
    """The files under one folder, by relative path and by file name (walked once, on first need)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._by_name: dict[str, list[str]] | None = None

    def find(self, names: tuple[str, ...]) -> str | None:
        """The relative path of the first of ``names`` found: as a path under the root, else as a unique file name."""
        for name in names:
            if (self.root / name).is_file():
                return Path(name).as_posix()
        for name in names:
            matches = self.by_name().get(PurePosixPath(name).name, [])
            if len(matches) == 1:  # two files of that name: neither can be chosen safely
                return matches[0]
        return None

    def by_name(self) -> dict[str, list[str]]:
        if self._by_name is None:
            index: dict[str, list[str]] = defaultdict(list)
            for folder, _, files in os.walk(self.root, followlinks=True):
                relative = Path(folder).relative_to(self.root)
                for file in files:
                    index[file].append((relative / file).as_posix())
            self._by_name = dict(index)
        return self._by_name


def resolve(candidates: list[tuple[str, ...]], root: str | Path) -> list[str | None]:
    """Each record's video as a POSIX path relative to ``root`` (None: not found); see ``VideoIndex.find``."""
    index = VideoIndex(root)
    return [index.find(names) for names in candidates]
