"""What a fit trains on: labelled splits, and per-chunk features held in memory as tensors.

Features are read from the store once per process (one read per feature kind) into flat row arrays, one per
kind, kept in the store's float16. A batch of videos is then pure tensor indexing: the rows of each video,
padded to the batch's longest video, gathered and concatenated into one float32 ``(videos, chunks, dim)``
tensor plus a ``(videos, chunks)`` mask. No per-sample reads, no DataLoader.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GroupShuffleSplit

from pipeline.config import Config
from pipeline.errors import ConfigError, StoreError, UsageError
from pipeline.fit.protocols import Holdout, check_holdout, is_test, names_of_test_csvs, split_role
from pipeline.labels import read_labels
from pipeline.feature_kinds import TEMPORAL_PARTS, select
from pipeline.store import FeatureStore

Log = Callable[[str], None]

_MEAN_ROWS = 4096  # chunk rows per block when pooling features per video
_STATS_BLOCK_ROWS = 256  # rows per block when computing input moments: scratch of a few MB, no page faults


@dataclass(frozen=True)
class FeatureSpec:
    """Which per-chunk features a model reads: one spatial level, temporal parts, NSS; in store-kind order."""

    level: str | None  # coarse | fine | None (no spatial level)
    temporal: tuple[str, ...]  # any of slow, fast
    nss: bool

    @classmethod
    def from_config(cls, cfg: Config) -> FeatureSpec:
        spec = cls(cfg.features.level, tuple(sorted(set(cfg.features.temporal), key=TEMPORAL_PARTS.index)),
                   cfg.features.nss)
        if not spec.kinds:
            raise ConfigError(f"{cfg.name}: features select no input (level null, temporal [], nss false)")
        return spec

    @property
    def kinds(self) -> tuple[str, ...]:
        """The store's feature kinds this spec reads, in the order they are concatenated."""
        return select([self.level] if self.level else [], self.temporal, self.nss)

    def to_dict(self) -> dict:
        return {"level": self.level, "temporal": list(self.temporal), "nss": self.nss}

    @classmethod
    def from_dict(cls, values: dict) -> FeatureSpec:
        """The spec :meth:`to_dict` wrote; ``level: "none"`` (model files written before it became null) is None."""
        level = None if values["level"] == "none" else values["level"]
        return cls(level, tuple(values["temporal"]), bool(values["nss"]))


@dataclass
class Split:
    """One labelled split: video keys, their MOS and their source-content groups, in CSV order."""

    name: str  # train | val | test
    keys: list[str]
    mos: np.ndarray  # float64
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, mask: np.ndarray) -> Split:
        return Split(self.name, [k for k, keep in zip(self.keys, mask) if keep], self.mos[mask], self.groups[mask])


def training_part(splits: dict[str, Split]) -> Split:
    """The videos the members train on: the ``train`` and ``val`` splits together."""
    train, val = splits["train"], splits["val"]
    return Split("train", [*train.keys, *val.keys], np.concatenate([train.mos, val.mos]),
                 np.concatenate([train.groups, val.groups]))


def read_splits(cfg: Config, holdout: Holdout | None = None, log: Log = print) -> dict[str, Split]:
    """Return the ``train``, ``val`` and test splits of ``cfg.data`` (test names: :mod:`pipeline.fit.protocols`).

    Validation is ``data.val_csv`` when given, else the ``val`` rows of ``data.split_column``, else a grouped
    ``GroupShuffleSplit`` of the training rows with ``data.val_fraction`` and the seed. The test splits are
    ``data.test_csv`` (one CSV or a list), the test values of ``data.split_column``, or, with ``holdout`` (a
    fold or a repeat), the train CSV's held-out rows: validation then comes from the other rows, so the test
    split never picks the epoch it is scored on. Grouping by source content keeps versions of one clip on one
    side.
    """
    data = cfg.data
    check_holdout(data, holdout)
    table = _labels(data.train_csv, cfg)
    if data.val_csv is None and data.group_column not in _columns(data.train_csv):
        log(f"{data.train_csv}: no {data.group_column!r} column; splitting by filename")
    tests: dict[str, Split] = {}
    val = _split(_labels(data.val_csv, cfg), "val") if data.val_csv is not None else None
    if holdout is not None:
        rest, held = holdout.held_out(table["group"].to_numpy(), data.train_csv)
        table, tests["test"] = table.iloc[rest], _split(table.iloc[held], "test")
    if data.split_column is not None:
        table, val, tests = _official_split(table, val, cfg)
    if val is None:
        train_rows, val_rows = _group_split(table, cfg)
        table, val = table.iloc[train_rows], _split(table.iloc[val_rows], "val")
    tests.update(_test_csvs(cfg, taken=set(tests)))
    splits = {"train": _split(table, "train"), "val": val, **tests}
    for name, split in splits.items():
        if len(split) < 2:
            raise UsageError(f"{data.train_csv}: the {name} split has {len(split)} video(s); at least 2 are needed")
        shared = set(splits["train"].groups) & set(split.groups) if name != "train" else set()
        if shared:
            log(f"warning: {len(shared)} group(s) of {data.train_csv} also in the {name} split, e.g. "
                f"{sorted(shared)[:3]}; its scores will be optimistic")
    return splits


def drop_uncached(splits: dict[str, Split], store: FeatureStore, log: Log = print) -> dict[str, Split]:
    """Return ``splits`` without the videos the store does not hold, logging how many and why."""
    cached, failures = store.cached(), store.failures()
    kept = {}
    for name, split in splits.items():
        present = np.array([key in cached for key in split.keys], dtype=bool)
        if not present.all():
            missing = [key for key, ok in zip(split.keys, present) if not ok]
            reasons = "; ".join(f"{key}: {failures.get(key, 'not extracted')}" for key in missing[:3])
            log(f"warning: {len(missing)} {name} video(s) not in the store {store.root} are left out ({reasons})")
        kept[name] = split.subset(present)
        if len(kept[name]) < 2:
            raise StoreError(f"{store.root}: only {len(kept[name])} of the {len(split)} {name} videos have features; "
                             "at least 2 are needed (run extract_features.py on them)")
    return kept


class ChunkFeatures:
    """Per-chunk features of a fixed list of videos: one flat ``(rows, dim)`` tensor per kind, on one device."""

    def __init__(self, store: FeatureStore, keys: Sequence[str], device: torch.device):
        self.store = store
        self.keys = list(keys)
        self.device = device
        self.position = {key: i for i, key in enumerate(self.keys)}
        self.arrays: dict[str, torch.Tensor] = {}
        self.offsets: np.ndarray | None = None
        self.starts = self.counts = torch.empty(0, dtype=torch.long)
        self._derived: dict[tuple, Any] = {}  # see derived()

    def load(self, kinds: Sequence[str]) -> None:
        """Read the ``kinds`` not held yet, in one store read."""
        missing = [kind for kind in kinds if kind not in self.arrays]
        if not missing:
            return
        table = self.store.read(missing, self.keys)
        if self.offsets is None:
            self.offsets = table.offsets
            offsets = torch.from_numpy(table.offsets).to(self.device)
            self.starts, self.counts = offsets[:-1], offsets[1:] - offsets[:-1]
        elif not np.array_equal(self.offsets, table.offsets):
            raise StoreError(f"{self.store.root}: row counts changed between reads; the store was modified")
        for kind in missing:
            self.arrays[kind] = torch.from_numpy(table.features[kind]).to(self.device)

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    @property
    def nbytes(self) -> int:
        return sum(array.numel() * array.element_size() for array in self.arrays.values())

    def videos(self, keys: Sequence[str]) -> torch.Tensor:
        """Indices of ``keys`` into this table, as a long tensor on the device."""
        return torch.tensor([self.position[key] for key in keys], dtype=torch.long, device=self.device)

    def width(self, kinds: Sequence[str]) -> int:
        return sum(self.arrays[kind].shape[1] for kind in kinds)

    def batch(self, videos: torch.Tensor, kinds: Sequence[str],
              chunks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return features ``(B, C, dim)`` of ``videos`` and the bool mask ``(B, C)`` of real chunks.

        ``chunks`` ``(B, C)`` picks chunks of each video (an index at or past a video's count is padding); by default
        every chunk, padded to the longest video. The features keep the store's dtype (float16 for the CNN kinds):
        the model standardises them into float32 in the same pass, which saves a conversion pass over every batch.
        """
        counts = self.counts[videos]  # (B,)
        if chunks is None:
            chunks = torch.arange(int(counts.max()), device=self.device).expand(len(videos), -1)
        mask = chunks < counts[:, None]  # (B, C)
        rows = (self.starts[videos][:, None] + torch.where(mask, chunks, 0)).flatten()  # padding: the first row
        x = torch.cat([self.arrays[kind].index_select(0, rows) for kind in kinds], dim=1)  # (B * C, dim)
        return x.view(*mask.shape, -1), mask

    def sample_chunks(self, videos: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """``k`` different chunks of each video, uniformly at random: indices ``(B, k)`` for :meth:`batch` (a video
        with fewer chunks gets all of them, then padding)."""
        counts = self.counts[videos].cpu()
        width = int(counts.max())
        draws = torch.rand(len(videos), width, generator=generator)
        draws[torch.arange(width)[None, :] >= counts[:, None]] = 2.0  # padding sorts after every real chunk
        return draws.argsort(1)[:, :k].to(self.device)

    def moments(self, videos: torch.Tensor, kinds: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-input mean and standard deviation (float32, ``(dim,)``) over every chunk of ``videos``."""
        return self.derived("moments", lambda: self._moments(videos, kinds), kinds, videos)

    def _moments(self, videos: torch.Tensor, kinds: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        counts = self.counts[videos]
        first = torch.cumsum(counts, 0) - counts  # where each video's rows begin in ``rows``
        rows = (torch.repeat_interleave(self.starts[videos] - first, counts)
                + torch.arange(int(counts.sum()), device=self.device))  # every chunk row of ``videos``
        moments = [_moments(self.arrays[kind], rows) for kind in kinds]
        return torch.cat([m for m, _ in moments]).float(), torch.cat([s for _, s in moments]).float()

    def video_means(self, videos: torch.Tensor, kinds: Sequence[str]) -> np.ndarray:
        """The mean over each video's chunks of its ``kinds`` features, float64 ``(videos, dim)``."""
        return self.derived("video_means", lambda: self._video_means(videos, kinds), kinds, videos)

    def derived(self, what: str, compute: Callable[[], Any], *inputs: Any) -> Any:
        """``compute()``, once per ``what`` and ``inputs`` (tensors, arrays or plain values): what follows from
        these features alone is computed once for every fit that shares them (a sweep's, in one process)."""
        key = (what, *(_digest(value) for value in inputs))
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    @torch.no_grad()
    def _video_means(self, videos: torch.Tensor, kinds: Sequence[str]) -> np.ndarray:
        per_block = max(1, _MEAN_ROWS // int(self.counts[videos].max()))
        means = []
        for block in videos.split(per_block):
            x, mask = self.batch(block, kinds)  # (B, C, D), (B, C)
            weights = mask.to(torch.float64)
            means.append((x.double() * weights[..., None]).sum(1) / weights.sum(1, keepdim=True))
        return torch.cat(means).cpu().numpy()


_shared: dict[tuple, ChunkFeatures] = {}


def shared_features(store: FeatureStore, keys: Sequence[str], device: torch.device) -> ChunkFeatures:
    """Return this process's in-memory features of ``keys``, reused by every fit on the same store and videos.

    Only the latest table is kept: a sweep's fits share one, and memory is not held for stores no longer used.
    The key includes the shard names, so a store that gained or replaced shards is read again.
    """
    key = (str(store.root.resolve()), tuple(p.name for p in store.shards()), tuple(keys), str(device))
    if key not in _shared:
        _shared.clear()
        _shared[key] = ChunkFeatures(store, keys, device)
    return _shared[key]


def _digest(value: Any) -> Any:
    """A hashable stand-in for ``value``: the SHA-256 of an array's or tensor's bytes, else the value itself."""
    if isinstance(value, torch.Tensor):
        value = value.cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.dtype.str, value.shape, hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    return tuple(value) if isinstance(value, list) else value


def _moments(array: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of ``array[rows]`` per column, in one pass over small float32 blocks.

    Values are shifted by the first block's mean, so the variance from the sums of (shifted) values and
    squares does not cancel; the block sums (a few hundred terms each) are accumulated in float64.
    """
    blocks = rows.split(_STATS_BLOCK_ROWS)
    shift = array[blocks[0]].float().mean(0)
    total = torch.zeros(array.shape[1], dtype=torch.float64, device=array.device)
    squares = torch.zeros_like(total)
    for block in blocks:
        x = array[block].float().sub_(shift)
        total += x.sum(0).double()
        squares += x.square_().sum(0).double()
    mean = total / len(rows)
    return shift.double() + mean, (squares / len(rows) - mean**2).clamp_min(0).sqrt()


def _labels(csv: str, cfg: Config) -> pd.DataFrame:
    split_column = cfg.data.split_column if csv == cfg.data.train_csv else None
    return read_labels(csv, cfg.data.video_root, group_column=cfg.data.group_column, split_column=split_column,
                       missing="keep")


def _columns(csv: str) -> list[str]:
    return [c.strip() for c in pd.read_csv(csv, nrows=0).columns]


def _split(table: pd.DataFrame, name: str) -> Split:
    return Split(name, list(table["filename"]), table["mos"].to_numpy(np.float64), table["group"].to_numpy())


def _official_split(table: pd.DataFrame, val: Split | None, cfg: Config) -> tuple[pd.DataFrame, Split | None,
                                                                             dict[str, Split]]:
    """The training rows, validation and test splits that ``data.split_column`` names (rule: :func:`split_role`)."""
    roles = table["split"].map(split_role)
    if val is not None and (roles == "val").any():
        raise UsageError(f"{cfg.data.train_csv}: its {cfg.data.split_column!r} column has validation rows and "
                         f"data.val_csv={cfg.data.val_csv} is given too; keep one")
    if not (roles == "train").any():
        raise UsageError(f"{cfg.data.train_csv}: no row of its {cfg.data.split_column!r} column says 'train' "
                         f"(values found: {', '.join(sorted(set(table['split'])))})")
    if (roles == "val").any():
        val = _split(table[roles == "val"], "val")
    tests = {name: _split(table[roles == name], name) for name in dict.fromkeys(roles) if is_test(name)}
    return table[roles == "train"], val, tests


def _test_csvs(cfg: Config, taken: set[str]) -> dict[str, Split]:
    """The test splits of ``data.test_csv``: ``test`` for one CSV (unless a split is called so), else ``test:<name>``."""
    paths = cfg.data.test_csv
    if paths is None:
        return {}
    if isinstance(paths, str):
        names, paths = (["test"] if "test" not in taken else names_of_test_csvs([paths])), [paths]
    else:
        names = names_of_test_csvs(paths)
    clash = taken & set(names)
    if clash:
        raise UsageError(f"data.test_csv: test split {sorted(clash)[0]!r} is also a value of data.split_column; "
                         "rename the CSV or the split")
    return {name: _split(_labels(path, cfg), name) for name, path in zip(names, paths)}


def _group_split(table: pd.DataFrame, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    groups = table["group"].to_numpy()
    n_groups = len(set(groups))
    if n_groups < 2:
        raise UsageError(f"{cfg.data.train_csv}: a validation split needs at least 2 groups, found {n_groups}")
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be between 0 and 1, got {cfg.data.val_fraction}")
    splitter = GroupShuffleSplit(n_splits=1, test_size=cfg.data.val_fraction, random_state=cfg.seed)
    return next(splitter.split(table, groups=groups))
