"""What a store holds per video: the index record of a video, the rows read back, the check of rows before they
are written (the kinds' widths and dtypes are :mod:`pipeline.feature_kinds`'), and the rule deciding whether a
video must be extracted (again)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import StoreError
from pipeline.feature_kinds import BY_NAME, KIND_NAMES
#: Reasons :func:`extraction_need` gives.
MISSING, CHANGED, LACKING = "missing", "changed", "lacking kinds"
_FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class VideoRecord:
    """One video as a shard indexes it: decoded properties plus the file signature it was extracted from."""

    key: str
    fps: float
    frames: int
    width: int
    height: int
    duration: float
    decoder: str
    size: int
    mtime: float
    kinds: tuple[str, ...] = ()

    def same_file(self, path: str | Path) -> bool:
        """True when ``path`` still has the size and mtime this record was extracted from."""
        try:
            size, mtime = file_signature(path)
        except OSError:
            return False
        return size == self.size and abs(mtime - self.mtime) < 1e-6


@dataclass
class FeatureTable:
    """Features of many videos: one contiguous array per kind, rows of ``keys[i]`` at ``offsets[i]:offsets[i+1]``."""

    keys: list[str]
    offsets: np.ndarray
    features: dict[str, np.ndarray]
    _positions: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def rows(self, key: str) -> slice:
        """The row slice of ``key`` in every array of :attr:`features`."""
        if not self._positions:
            self._positions = {k: i for i, k in enumerate(self.keys)}
        i = self._positions[key]
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


def file_signature(path: str | Path) -> tuple[int, float]:
    """``(size in bytes, mtime in seconds)`` of a file: what tells a replaced video from the one extracted."""
    st = os.stat(path)
    return st.st_size, st.st_mtime


def extraction_need(record: VideoRecord | None, path: str | Path, kinds: Iterable[str] = ()) -> str | None:
    """Why the video at ``path`` must be extracted, given the store's ``record`` of it; None when it need not be.

    :data:`MISSING`: the store holds no copy (never extracted, or every extraction failed); :data:`CHANGED`: the
    file's size or mtime differ from the copy's (replaced since); :data:`LACKING`: the copy lacks some of
    ``kinds``. Extraction, the Dask client and scoring all decide with this function.
    """
    if record is None:
        return MISSING
    if not record.same_file(path):
        return CHANGED
    return LACKING if not set(kinds) <= set(record.kinds) else None


def checked_rows(features: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """``features`` in their on-disk dtypes, after checking what a shard requires of one video's rows.

    Known kinds, (rows, dim) of the right width, the same non-zero row count for every kind, finite values
    within float16 range. Raises StoreError starting with ``where``. Extraction calls this before handing
    rows to the writer, so bad rows fail their video, while a store that cannot be written ends the run.
    """
    if not features:
        raise StoreError(f"{where}: no features given")
    rows = {len(a) for a in features.values()}
    if len(rows) != 1 or 0 in rows:
        raise StoreError(f"{where}: every kind needs the same, non-zero number of rows; got "
                         f"{ {k: np.shape(a) for k, a in features.items()} }")
    arrays: dict[str, np.ndarray] = {}
    for kind, array in features.items():
        if kind not in BY_NAME:
            raise StoreError(f"{where}: unknown feature kind {kind!r}; known: {list(KIND_NAMES)}")
        spec = BY_NAME[kind]
        array = np.asarray(array)
        if array.ndim != 2 or (spec.width is not None and array.shape[1] != spec.width):
            raise StoreError(f"{where}: {kind} must be (rows, {spec.width or 'N'}), got {array.shape}")
        if not np.isfinite(array).all() or (spec.dtype == np.float16 and np.abs(array).max() > _FLOAT16_MAX):
            raise StoreError(f"{where}: {kind} holds non-finite values or values beyond float16 range")
        arrays[kind] = array.astype(spec.dtype, copy=False)
    return arrays
