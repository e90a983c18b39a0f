"""Several ``extract_features.py`` processes started together on one store: wall time against one process.

For each process count, a fresh store: the processes start at once on the same CSV and config; reported are
the wall time until the last ends, how many videos each extracted, how many the store holds and whether any
was extracted twice (the claims should make that never happen). Random backbone weights (speed does not
depend on them), the demo's sample sizes.

    .venv/bin/python -m bench.concurrent --csv ../shared/data/vqa-sample/labels.csv --counts 1 2 4
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.cputime import timed
from pipeline.demo import SAMPLE_LEVELS
from pipeline.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


def run(count: int, csv: Path, store: Path, overrides: list[str]) -> tuple[float, list[int]]:
    """Wall seconds of ``count`` processes extracting ``csv`` into ``store`` together, and each one's extracted count."""
    command = [sys.executable, str(REPO / "extract_features.py"), "-o", str(REPO / "config/kwai_simpleVQA.yml"),
               "--csv", str(csv), "--store", str(store), "--weights", "random", "--no-progress",
               *(arg for item in overrides for arg in ("--set", item))]
    procs = []

    def extract_together() -> list[str]:
        procs.extend(subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                     for _ in range(count))
        return [proc.communicate()[0] for proc in procs]

    outs, took = timed(extract_together)
    for proc, out in zip(procs, outs):
        if proc.returncode != 0:
            raise SystemExit(f"an extraction failed:\n{out}")
    return took.wall, [int(re.search(r"extracted (\d+)", out).group(1)) for out in outs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    overrides = [*SAMPLE_LEVELS, "extract.shard_videos=2", "extract.device=cpu", *args.overrides]
    for count in args.counts:
        with tempfile.TemporaryDirectory(prefix="vqa-concurrent-") as tmp:
            wall, extracted = run(count, args.csv, Path(tmp) / "store", overrides)
            store = FeatureStore.open(Path(tmp) / "store")
            keys = [entry.record.key for shard in store.shards() for entry in store.shard_index(shard).entries]
            print(f"{count} process(es): {wall:.1f} s wall; extracted {extracted} (sum {sum(extracted)}); store holds "
                  f"{len(set(keys))} videos, {len(keys) - len(set(keys))} extracted twice", flush=True)


if __name__ == "__main__":
    main()
