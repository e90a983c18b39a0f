"""Feature store read throughput: what one fit pays to load its training set from the page cache.

Generates (once) a synthetic store shaped like a large data set's coarse phase, then times
``FeatureStore.read`` of every video in store order and of a shuffled 80 % subset (a training split).

    .venv/bin/python bench/store.py --root /tmp/vqa-bench-store --videos 30000 --chunks 8
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from pipeline.feature_kinds import BY_NAME
from pipeline.store import FeatureStore, VideoRecord

KINDS = ("spatial_coarse", "temporal_slow", "temporal_fast")  # what a coarse-phase fit reads


def generate(root: Path, videos: int, chunks: int) -> FeatureStore:
    """Fill a store with ``videos`` x ``chunks`` rows of reproducible pseudo-features (skipped when present)."""
    store = FeatureStore.open(root, {"bench": "store", "videos": videos, "chunks": chunks})
    if len(store.cached()) == videos:
        return store
    rng = np.random.default_rng(0)
    pool = {k: rng.standard_normal((4096 + chunks, BY_NAME[k].width), dtype=np.float32).astype(np.float16)
            for k in KINDS}
    with store.writer() as writer:
        for i in range(videos):
            at = (i * 7) % 4096
            record = VideoRecord(key=f"videos/v{i:06d}.mp4", fps=30.0, frames=chunks * 30, width=1920,
                                 height=1080, duration=float(chunks), decoder="decord", size=0, mtime=0.0)
            writer.add(record, {k: pool[k][at:at + chunks] for k in KINDS}, range(chunks))
    return store


def timed_read(store: FeatureStore, keys: list[str] | None) -> tuple[float, int]:
    """Seconds and bytes of one read of ``KINDS`` for ``keys``."""
    start = time.perf_counter()
    table = store.read(KINDS, keys)
    seconds = time.perf_counter() - start
    return seconds, sum(a.nbytes for a in table.features.values())


@click.command()
@click.option("--root", type=click.Path(path_type=Path), default=Path("/tmp/vqa-bench-store"), show_default=True)
@click.option("--videos", default=30000, show_default=True)
@click.option("--chunks", default=8, show_default=True)
@click.option("--repeats", default=3, show_default=True)
def main(root: Path, videos: int, chunks: int, repeats: int) -> None:
    start = time.perf_counter()
    generate(root, videos, chunks)
    print(f"store ready in {time.perf_counter() - start:.1f} s: {root}")
    store = FeatureStore.open(root)  # a fresh reader, as a fit would open it
    shards = len(store.shards())
    keys = sorted(store.cached())
    subset = list(np.random.default_rng(1).permutation(keys)[: int(0.8 * len(keys))])
    timed_read(store, keys)  # warm the page cache
    for label, chosen in (("all videos, store order", None), ("shuffled 80% subset", subset)):
        best = None
        for _ in range(repeats):
            seconds, nbytes = timed_read(store, chosen)
            best = seconds if best is None else min(best, seconds)
        print(f"{label}: {nbytes / 1e9:.2f} GB in {best:.2f} s = {nbytes / 1e6 / best:.0f} MB/s "
              f"({shards} shards, best of {repeats})")


if __name__ == "__main__":
    main()
