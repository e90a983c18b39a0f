"""Extraction throughput on a Dask LocalCluster of 1 and of 2 worker processes, on a subset of vqa-dev.

Both clusters are started side by side (``local:N`` gives each worker cores/N torch threads). Each extracts
the subset once cold (every worker builds its models on its first task); then the clusters take turns,
``--repeats`` warm runs each, so a machine shared with other work slows both alike. Every run writes a
fresh store. Reported per cluster: the cold run, the best warm run, its videos and chunks per second, and
the CPU seconds its worker processes spent per video (the steadier figure when other work shares the
cores); then the warm speed-up of the last cluster over the first. Project sizes (coarse 448, fine 720,
clips of 32 frames at 224), random weights (speed does not depend on them), decord, no NSS.

    .venv/bin/python -m bench.distributed --data /work/shared/data/vqa-dev --videos 8
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import ExtractConfig
from pipeline.distributed import Cluster, connect, extract_on_cluster
from pipeline.labels import read_labels
from pipeline.store import FeatureStore


@dataclass
class Runs:
    """The timings of one cluster: the cold run, then each warm run as (wall seconds, worker CPU seconds)."""

    workers: int
    cluster: Cluster
    cold: float = 0.0
    warm: list[tuple[float, float]] = field(default_factory=list)


def subset(data: Path, count: int) -> list[tuple[str, str]]:
    """``count`` videos spread evenly over the CSV (so every source and size is represented)."""
    table = read_labels(data / "labels.csv", data, require_mos=False)
    rows = table.iloc[::max(1, len(table) // count)].head(count)
    return list(zip(rows["filename"], rows["path"]))


def timed_run(videos: list[tuple[str, str]], store: Path, cfg: ExtractConfig, cluster: Cluster) -> tuple[float, float, int]:
    """Wall seconds and worker CPU seconds to extract ``videos`` into a fresh ``store``, and the chunks extracted."""
    shutil.rmtree(store, ignore_errors=True)
    cpu = sum(cluster.client.run(time.process_time).values())
    start = time.perf_counter()
    summary = extract_on_cluster(videos, store, cfg, cluster, progress=False)
    wall = time.perf_counter() - start
    cpu = sum(cluster.client.run(time.process_time).values()) - cpu
    if summary.failed or len(summary.done) != len(videos):
        raise SystemExit(f"benchmark run incomplete: {summary}")
    return wall, cpu, int(FeatureStore.open(store).read(["temporal_fast"]).offsets[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/vqa-dev"))
    parser.add_argument("--videos", type=int, default=8, help="videos in the subset")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated")
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per cluster (best one reported)")
    args = parser.parse_args()

    videos = subset(args.data, args.videos)
    cfg = ExtractConfig(device="cpu", weights="random", nss=False)  # the backbones' work, as BENCHMARKS.md records
    print(f"{platform.machine()}, {os.cpu_count()} cores; {len(videos)} videos of {args.data}; "
          f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="vqa-bench-dist-") as work:
        store = Path(work) / "store"
        runs = [Runs(n, stack.enter_context(connect(f"local:{n}"))) for n in map(int, args.workers.split(","))]
        for run in runs:
            run.cold, _, chunks = timed_run(videos, store, cfg, run.cluster)
            print(f"  local:{run.workers} cold: {run.cold:.1f} s", flush=True)
        for _ in range(args.repeats):
            for run in runs:
                wall, cpu, _ = timed_run(videos, store, cfg, run.cluster)
                run.warm.append((wall, cpu))
                print(f"  local:{run.workers} warm: {wall:.1f} s, worker CPU {cpu:.1f} s", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.1f}\n")
        print("| workers | torch threads each | cold run (s) | best warm run (s) | videos/s | chunks/s "
              "| worker CPU s/video |")
        print("|---|---|---|---|---|---|---|")
        for run in runs:
            wall = min(w for w, _ in run.warm)
            cpu = min(c for _, c in run.warm) / len(videos)
            print(f"| {run.workers} | {run.cluster.threads} | {run.cold:.1f} | {wall:.1f} | {len(videos) / wall:.3f} "
                  f"| {chunks / wall:.3f} | {cpu:.1f} |")
        best = [min(w for w, _ in run.warm) for run in runs]
        if len(runs) >= 2:
            print(f"\nwarm speed-up, {runs[-1].workers} workers over {runs[0].workers}: {best[0] / best[-1]:.2f}x "
                  f"({len(videos)} videos, {chunks} chunks)")


if __name__ == "__main__":
    main()
