"""What a store holds per video: the feature kinds and their on-disk form, the index record of a video, the rows
read back, and the rule deciding whether a video must be extracted (again)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import StoreError

FEATURE_KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast", "nss")
#: Width of each fixed-size kind; ``nss`` has whatever width its extractor gives (checked per store).
FEATURE_DIMS = {"spatial_coarse": 7168, "spatial_fine": 7168, "temporal_slow": 2048, "temporal_fast": 256}
#: On-disk dtype of each kind: the CNN features are float16 (half the bytes to read), nss keeps float32.
FEATURE_DTYPES = {kind: np.dtype(np.float16) for kind in FEATURE_DIMS} | {"nss": np.dtype(np.float32)}
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
        if kind not in FEATURE_KINDS:
            raise StoreError(f"{where}: unknown feature kind {kind!r}; known: {list(FEATURE_KINDS)}")
        array = np.asarray(array)
        if array.ndim != 2 or (kind in FEATURE_DIMS and array.shape[1] != FEATURE_DIMS[kind]):
            raise StoreError(f"{where}: {kind} must be (rows, {FEATURE_DIMS.get(kind, 'N')}), got {array.shape}")
        if not np.isfinite(array).all() or (FEATURE_DTYPES[kind] == np.float16 and np.abs(array).max() > _FLOAT16_MAX):
            raise StoreError(f"{where}: {kind} holds non-finite values or values beyond float16 range")
        arrays[kind] = array.astype(FEATURE_DTYPES[kind], copy=False)
    return arrays
