"""Feature store read throughput: what one fit pays to load its training set from the page cache.

Generates (once) a synthetic store shaped like a large data set's coarse phase (``bench.stores``), then times
``FeatureStore.read`` of every video in store order and of a shuffled 80 % subset (a training split). Every
row read is checked against its checksum, as a fit reads it.

    .venv/bin/python -m bench.store --root /tmp/vqa-bench-store --videos 5000 --chunks 8 --repeats 5
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from bench.cputime import best_times, timed
from bench.stores import COARSE_KINDS, synthetic_store
from pipeline.store import FeatureStore


@click.command()
@click.option("--root", type=click.Path(path_type=Path), default=Path("/tmp/vqa-bench-store"), show_default=True)
@click.option("--videos", default=30000, show_default=True)
@click.option("--chunks", default=8, show_default=True)
@click.option("--repeats", default=3, show_default=True)
def main(root: Path, videos: int, chunks: int, repeats: int) -> None:
    _, made = timed(lambda: synthetic_store(root, videos, chunks))
    print(f"store ready in {made.wall:.1f} s: {root}")
    store = FeatureStore.open(root)  # a fresh reader, as a fit would open it
    keys = sorted(store.cached())
    subset = list(np.random.default_rng(1).permutation(keys)[: int(0.8 * len(keys))])
    for label, chosen in (("all videos, store order", None), ("shuffled 80% subset", subset)):
        nbytes = sum(a.nbytes for a in store.read(COARSE_KINDS, chosen).features.values())  # also warms the cache
        seconds = best_times(lambda: store.read(COARSE_KINDS, chosen), repeats).wall
        print(f"{label}: {nbytes / 1e9:.2f} GB in {seconds:.2f} s = {nbytes / 1e6 / seconds:.0f} MB/s "
              f"({len(store.shards())} shards, best of {repeats})")


if __name__ == "__main__":
    main()
