"""Scoring throughput from cached features: videos per second of the prediction step, the store read timed apart.

Generates (once) a synthetic store shaped like a coarse-phase model's inputs (``bench.stores``:
spatial_coarse 7168 + temporal_slow 2048 + temporal_fast 256 = 9472 float16 values per chunk), builds a model
of the design's default shape (5 cross-fitted members of 9472 -> 128 -> 1, GELU) with its spec, and times
``Scorer.score_table`` on every video: float16 -> float32 conversion, the members on every chunk, the
per-video means, the calibration, the intervals and the domain check.

    .venv/bin/python -m bench.score --root /tmp/vqa-bench-score --videos 20000 --chunks 1
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from bench.cputime import best_times, timed
from bench.stores import COARSE_KINDS, synthetic_store
from pipeline.backbones import resolve_device
from pipeline.config import Config, ExtractConfig
from pipeline.feature_kinds import BY_NAME
from pipeline.fit.data import FeatureSpec
from pipeline.fit.calibration import fit_calibration
from pipeline.fit.intervals import Residuals
from pipeline.fit.model import ChunkRegressor, ModelSpec
from pipeline.fit.novelty import fit_domain
from pipeline.scoring import Scorer
from pipeline.store import FeatureStore


def bench_scorer(store: FeatureStore, device: torch.device, hidden: list[int]) -> Scorer:
    """A scorer whose model reads the bench store's kinds: seeded weights, and a calibration, residuals and domain
    fitted on synthetic out-of-fold predictions, as a fit of the default config would leave them."""
    widths = {kind: BY_NAME[kind].width for kind in COARSE_KINDS}
    cfg = Config()
    members = cfg.crossfit_folds
    torch.manual_seed(0)
    model = ChunkRegressor(sum(widths.values()), hidden, members=members).eval()
    rng = np.random.default_rng(0)
    raw, folds = rng.normal(3.0, 0.8, 500), np.arange(500) % members
    mos = raw + rng.normal(0, 0.3, 500)
    calibration = fit_calibration(raw, mos)
    spec = ModelSpec(features=FeatureSpec("coarse", ("slow", "fast"), False), widths=widths, store=store.settings,
                     mos_mean=3.0, mos_std=0.8, calibration=calibration, config=cfg,
                     residuals=Residuals.of(mos - calibration(raw), folds, members),
                     domain=fit_domain(rng.standard_normal((500, sum(widths.values()))), folds))
    return Scorer(model.to(device), spec, Path("bench-model"), ExtractConfig(device=str(device)), store=store.root)


@click.command()
@click.option("--root", type=click.Path(path_type=Path), default=Path("/tmp/vqa-bench-score"), show_default=True)
@click.option("--videos", default=20000, show_default=True)
@click.option("--chunks", default=1, show_default=True, help="Chunks (seconds) per video.")
@click.option("--hidden", default="128", show_default=True, help="Hidden sizes, comma-separated.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", default=0, show_default=True, help="torch intra-op threads (0: torch's default).")
@click.option("--repeats", default=3, show_default=True)
def main(root: Path, videos: int, chunks: int, hidden: str, device: str, threads: int, repeats: int) -> None:
    if threads:
        torch.set_num_threads(threads)
    store, made = timed(lambda: synthetic_store(root / f"{videos}x{chunks}", videos, chunks))
    print(f"store ready in {made.wall:.1f} s: {store.root}")
    scorer = bench_scorer(FeatureStore.open(store.root), resolve_device(device), [int(h) for h in hidden.split(",")])
    table, read = timed(lambda: FeatureStore.open(store.root).read(scorer.kinds))
    rows = int(table.offsets[-1])
    assert np.isfinite(scorer.score_table(table).score).all()  # also the warm-up: allocations, thread pool
    best = best_times(lambda: scorer.score_table(table), repeats)
    wall, cpu = best.wall, best.cpu
    gigabytes = sum(a.nbytes for a in table.features.values()) / 1e9
    print(f"read {len(table.keys)} videos ({rows} chunks, {gigabytes:.2f} GB) in {read.wall:.2f} s")
    print(f"predict, best of {repeats}, {torch.get_num_threads()} thread(s), {device}: {wall:.3f} s wall = "
          f"{len(table.keys) / wall:,.0f} videos/s, {rows / wall:,.0f} chunks/s; {cpu:.3f} CPU-s = "
          f"{rows / cpu:,.0f} chunks per CPU-second")
    print(f"for scale: the bare first-layer product alone (float32 inputs ready) runs at "
          f"{first_layer_rows_per_second(scorer, repeats):,.0f} rows/s")


def first_layer_rows_per_second(scorer: Scorer, repeats: int, rows: int = 20480) -> float:
    """Rows per second of ``addmm`` with the model's first layer (every member's, as one matrix) on converted
    inputs, in the scorer's blocks."""
    weight = scorer.model.body[0].weight.detach()  # (in, members, out)
    matrix, bias = weight.reshape(weight.shape[0], -1), scorer.model.body[0].bias.detach().reshape(-1)
    blocks = torch.randn(rows, weight.shape[0], device=weight.device).split(1024)

    def product() -> None:
        with torch.no_grad():
            for block in blocks:
                torch.addmm(bias, block, matrix)

    return rows / best_times(product, repeats).wall


if __name__ == "__main__":
    main()
