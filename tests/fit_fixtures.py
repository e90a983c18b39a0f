"""Tiny synthetic feature stores, label CSVs and configs for the fit tests, written with the real store writer.

Each video has a latent quality ``q``; every chunk's features are ``q`` times a fixed direction per kind plus
noise, and MOS is a monotone function of ``q``. A regressor can therefore learn it from a few epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.features import FeatureSettings
from pipeline.feature_kinds import BY_NAME
from pipeline.store import FeatureStore, VideoRecord

KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast")


def make_store(root: Path, videos: int = 40, max_chunks: int = 3, seed: int = 0, nss_dim: int = 0) -> pd.DataFrame:
    """Write a store of ``videos`` videos with 1..max_chunks chunks each; return their labels (filename, mos, source)."""
    rng = np.random.default_rng(seed)
    dims = {**{k: BY_NAME[k].width for k in KINDS}, **({"nss": nss_dim} if nss_dim else {})}
    directions = {k: _sparse_direction(rng, d) for k, d in dims.items()}
    settings = FeatureSettings(levels={"coarse": 448, "fine": 720}, clip_frames=32, clip_size=224, max_chunks=0,
                               spatial_weights="synthetic", temporal_weights="synthetic", nss_dim=nss_dim or None,
                               nss_version=1 if nss_dim else None, precision="float32")
    store = FeatureStore.open(root, settings.to_dict())
    quality = rng.standard_normal(videos)
    with store.writer(flush_videos=16) as writer:
        for i, q in enumerate(quality):
            chunks = 1 + i % max_chunks
            record = VideoRecord(key=f"v{i:03d}.mp4", fps=30.0, frames=30 * chunks, width=64, height=48,
                                 duration=float(chunks), decoder="pyav", size=1, mtime=0.0)
            writer.add(record, {k: q * d + 1.0 * rng.standard_normal((chunks, len(d)), dtype=np.float32)
                                for k, d in directions.items()}, range(chunks))
    return pd.DataFrame({
        "filename": [f"v{i:03d}.mp4" for i in range(videos)],
        "mos": np.round(1 + 4 / (1 + np.exp(-quality)), 4),
        "source": [f"src{i // 2}" for i in range(videos)],
    })


def write_csv(path: Path, table: pd.DataFrame) -> Path:
    table.to_csv(path, index=False)
    return path


def write_configs(tmp: Path, store: Path, csv: Path, coarse: dict | None = None, fine: dict | None = None) -> Path:
    """Write a small coarse config (and its fine config) for ``store``/``csv``; return the coarse path."""
    fine_path = tmp / "fine.yml"
    fine_path.write_text(yaml.safe_dump({"name": "tiny_fine", "fine_config": None, "features": {"level": "fine"},
                                         "optimizer": {"lr": 3e-4}, "num_epochs": 2, **(fine or {})}))
    tree = {
        "name": "tiny", "seed": 3, "fine_config": str(fine_path),
        "data": {"train_csv": str(csv), "video_root": str(tmp), "store": str(store), "group_column": "source"},
        "features": {"nss": False},  # the synthetic stores hold NSS only when make_store is asked for it
        "model": {"hidden": [16], "dropout": 0.1},
        "num_epochs": 3, "batch_size": 8,
    }
    for key, value in (coarse or {}).items():
        tree[key] = {**tree[key], **value} if isinstance(value, dict) and key in tree else value
    path = tmp / "coarse.yml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _sparse_direction(rng: np.random.Generator, dim: int, active: int = 64) -> np.ndarray:
    """A direction with ``active`` non-zero entries: a learnable signal that does not swamp the inputs."""
    direction = np.zeros(dim, dtype=np.float32)
    direction[rng.choice(dim, size=min(active, dim), replace=False)] = rng.standard_normal(min(active, dim))
    return direction
