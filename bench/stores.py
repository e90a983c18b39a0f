"""Synthetic feature stores for the benches: reproducible pseudo-features written with the real store writer.

Generating gigabytes of random numbers would take longer than what the benches measure, so the rows are drawn
from a pool of distinct pseudo-feature rows at shifting offsets. A store is written once and reused while it
holds every video asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.feature_kinds import BY_NAME
from pipeline.store import FeatureStore, VideoRecord

COARSE_KINDS = ("spatial_coarse", "temporal_slow", "temporal_fast")  # what a coarse-phase model reads
TWO_PHASE_KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast")  # what a two-phase fit reads
_POOL_ROWS = 4096


def video_key(index: int) -> str:
    return f"videos/v{index:06d}.mp4"


def video_record(key: str, chunks: int) -> VideoRecord:
    """A 1080p30 video of ``chunks`` seconds, as the store records it."""
    return VideoRecord(key=key, fps=30.0, frames=30 * chunks, width=1920, height=1080, duration=float(chunks),
                       decoder="pyav", size=0, mtime=0.0)


def synthetic_store(root: Path, videos: int, chunks: int, kinds: Sequence[str] = COARSE_KINDS,
                    flush_videos: int | None = None) -> FeatureStore:
    """A store at ``root`` of ``videos`` x ``chunks`` rows of each of ``kinds`` (written unless already complete).

    ``flush_videos``: videos per shard (the writer's default when None).
    """
    store = FeatureStore.open(root, {"bench": "synthetic", "videos": videos, "chunks": chunks, "kinds": list(kinds)})
    if len(store.cached()) == videos:
        return store
    rng = np.random.default_rng(0)
    pool = {k: rng.standard_normal((_POOL_ROWS + chunks, BY_NAME[k].width), dtype=np.float32).astype(np.float16)
            for k in kinds}
    flush = {} if flush_videos is None else {"flush_videos": flush_videos, "flush_rows": flush_videos * chunks}
    with store.writer(**flush) as writer:
        for i in range(videos):
            at = (i * 7) % _POOL_ROWS
            writer.add(video_record(video_key(i), chunks), {k: pool[k][at:at + chunks] for k in kinds}, range(chunks))
    return store


def labels_csv(path: Path, videos: int, videos_per_source: int = 4) -> Path:
    """A labels CSV for the first ``videos`` keys of a synthetic store: random MOS in 1-5 and a ``source`` column."""
    rng = np.random.default_rng(0)
    pd.DataFrame({"filename": [video_key(i) for i in range(videos)], "mos": np.round(rng.uniform(1, 5, videos), 3),
                  "source": [f"s{i // videos_per_source}" for i in range(videos)]}).to_csv(path, index=False)
    return path
