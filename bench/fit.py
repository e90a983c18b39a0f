"""Fit speed: training throughput as a fraction of this machine's fp32 matmul rate, and a two-phase fit's wall time.

Builds (once) a synthetic store with the real store writer: ``--videos`` x ``--chunks`` rows of every kind a
two-phase fit reads (spatial_coarse, spatial_fine, temporal_slow, temporal_fast: 16,640 float16 values per
row), and a labels CSV with a ``source`` column. Then, with the project's config
(``config/kwai_simpleVQA.yml`` and its fine phase):

1. a two-phase ``fit`` on the whole store: wall time of the call (store read, both phases with validation
   every epoch, run-directory outputs; interpreter start-up and imports excluded). ``--epochs N`` shortens
   both phases to N epochs; the full schedule's time is then estimated from the measured per-epoch times.
2. steady-state training steps (``ChunkFeatures.batch`` + ``train_step``, the loop's body) on the features
   the fit loaded, interleaved with a 4096^3 ``torch.mm``; the MLP's matmul FLOPs per step (forward, weight
   gradients, input gradients of all but the first layer) over the step time, as a fraction of the best
   ``torch.mm`` rate. Best and median over ``--steps`` steps (the median is what an epoch sees).

    .venv/bin/python bench/fit.py --root /tmp/vqa-fit-bench --videos 28000 --chunks 8 --epochs 2
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd
import torch

from pipeline.fit.data import FeatureSpec, read_splits, shared_features
from pipeline.fit.model import ChunkRegressor
from pipeline.fit.run import fit, resolve_configs
from pipeline.fit.train import make_optimizer, train_step
from pipeline.feature_kinds import BY_NAME
from pipeline.store import FeatureStore, VideoRecord

KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast")
_POOL_ROWS = 4096  # distinct pseudo-feature rows, reused at shifting offsets (generating GBs would dominate)


def generate(root: Path, videos: int, chunks: int) -> Path:
    """Fill a store with ``videos`` x ``chunks`` rows of every kind and write its labels CSV; skip a complete store."""
    store = FeatureStore.open(root / "store", {"bench": "fit", "videos": videos, "chunks": chunks})
    rng = np.random.default_rng(0)
    keys = [f"videos/v{i:06d}.mp4" for i in range(videos)]
    csv = root / "labels.csv"
    pd.DataFrame({"filename": keys, "mos": np.round(rng.uniform(1, 5, videos), 3),
                  "source": [f"s{i // 4}" for i in range(videos)]}).to_csv(csv, index=False)
    if len(store.cached()) == videos:
        return csv
    pool = {k: rng.standard_normal((_POOL_ROWS + chunks, BY_NAME[k].width), dtype=np.float32).astype(np.float16)
            for k in KINDS}
    with store.writer(flush_videos=512, flush_rows=512 * chunks) as writer:
        for i, key in enumerate(keys):
            at = (i * 7) % _POOL_ROWS
            record = VideoRecord(key=key, fps=30.0, frames=30 * chunks, width=1920, height=1080,
                                 duration=float(chunks), decoder="decord", size=0, mtime=0.0)
            writer.add(record, {k: pool[k][at:at + chunks] for k in KINDS}, range(chunks))
    return csv


def mlp_flops_per_row(widths: list[int], members: int) -> int:
    """Training matmul FLOPs per chunk row of ``members`` stacked MLPs: forward, weight gradients, input
    gradients of all layers but the first."""
    macs = [a * b * members for a, b in zip(widths[:-1], widths[1:])]
    return 2 * (2 * sum(macs) + sum(macs[1:]))


def matmul_seconds(a: torch.Tensor, b: torch.Tensor) -> float:
    start = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - start


def step_throughput(cfg, features, train_keys: list[str], steps: int) -> dict:
    """Time ``steps`` training steps on random batches, a torch.mm every 10 steps; FLOP rates and their ratio."""
    kinds = FeatureSpec.from_config(cfg).kinds
    features.load(kinds)
    model = ChunkRegressor.from_config(features.width(kinds), cfg, cfg.crossfit_folds)
    optimizer = make_optimizer(cfg, model)
    videos = features.videos(train_keys)
    target = torch.randn(len(videos))
    trains = torch.arange(len(videos))[:, None] % cfg.crossfit_folds != torch.arange(cfg.crossfit_folds)[None, :]
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    generator = torch.Generator().manual_seed(0)
    step_times, mm_times, rows = [], [], 0
    for step in range(steps + 3):
        if step % 10 == 0:
            mm_times.append(matmul_seconds(a, b))
        batch = torch.randint(len(videos), (cfg.batch_size,), generator=generator)
        start = time.perf_counter()
        x, mask = features.batch(videos[batch], kinds)
        train_step(model, optimizer, x, mask, target[batch], trains[batch], cfg.loss)
        if step >= 3:  # warm-up steps excluded
            step_times.append(time.perf_counter() - start)
            rows = x.shape[0] * x.shape[1]
    flops = mlp_flops_per_row([features.width(kinds), *cfg.model.hidden, 1], cfg.crossfit_folds) * rows
    mm_rate = 2 * 4096**3 / min(mm_times)
    best, median = min(step_times), statistics.median(step_times)
    return {"mm_rate": mm_rate, "flops": flops, "best": best, "median": median,
            "best_fraction": flops / best / mm_rate, "median_fraction": flops / median / mm_rate}


def time_fit(config: str, overrides: tuple[str, ...], epochs: int | None, out: Path) -> None:
    """Run the two-phase fit; print its wall time, per-epoch times and (when shortened) the full schedule's estimate."""
    coarse, fine = resolve_configs(config, None, overrides)
    start = time.perf_counter()
    fit(config, overrides=(*overrides, f"num_epochs={epochs}") if epochs else overrides, out=out)
    wall = time.perf_counter() - start
    history = pd.read_csv(out / "history.csv")
    history = history[history.epoch > 0]
    per_epoch = history.groupby("phase", sort=False)[["train_seconds", "val_seconds"]].median()
    overhead = wall - float(history.train_seconds.sum() + history.val_seconds.sum())
    print(f"\n{_machine()}")
    for phase, row in per_epoch.iterrows():
        print(f"{phase}: {row.train_seconds:.1f} s training + {row.val_seconds:.1f} s validation per epoch (median)")
    print(f"two-phase fit: {wall:.1f} s wall ({len(history)} epochs; {overhead:.1f} s outside them: store read, "
          "standardisation, epoch-0 validation, final predictions, outputs)")
    if epochs:
        full = overhead + sum(cfg.num_epochs * float(per_epoch.loc[phase].sum())
                              for phase, cfg in (("coarse", coarse), ("fine", fine)) if cfg is not None)
        print(f"estimated full schedule ({coarse.num_epochs} + {fine.num_epochs if fine else 0} epochs): "
              f"{full:.0f} s = {full / 60:.1f} min")


def time_steps(config: str, overrides: tuple[str, ...], steps: int) -> None:
    """Print the steady-state training step rate of the coarse phase against the machine's matmul rate."""
    coarse, _ = resolve_configs(config, None, overrides)
    splits = read_splits(coarse, log=lambda _: None)
    every = sorted({key for split in splits.values() for key in split.keys})
    features = shared_features(FeatureStore.open(coarse.data.store), every, torch.device("cpu"))  # the fit's
    rate = step_throughput(coarse, features, splits["train"].keys, steps)
    rows = rate["flops"] / mlp_flops_per_row([features.width(FeatureSpec.from_config(coarse).kinds),
                                              *coarse.model.hidden, 1], coarse.crossfit_folds)
    print(f"\n{_machine()}; fp32 torch.mm (4096^3) best: {rate['mm_rate'] / 1e9:.1f} GFLOP/s")
    print(f"training step ({coarse.batch_size} videos, {rows:.0f} chunk rows, {coarse.crossfit_folds} members, "
          f"{rate['flops'] / 1e9:.2f} GFLOP): "
          f"best {rate['best'] * 1e3:.1f} ms = {rate['best_fraction']:.0%} of the matmul rate; median "
          f"{rate['median'] * 1e3:.1f} ms = {rate['median_fraction']:.0%} ({coarse.batch_size / rate['median']:.0f} "
          "videos/s)")


def _machine() -> str:
    return f"{torch.get_num_threads()} torch threads, load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}"


@click.command()
@click.option("--root", type=click.Path(path_type=Path), default=Path("/tmp/vqa-fit-bench"), show_default=True)
@click.option("--videos", default=28000, show_default=True)
@click.option("--chunks", default=8, show_default=True)
@click.option("--config", default="config/kwai_simpleVQA.yml", show_default=True)
@click.option("--epochs", type=int, help="Shorten both phases to this many epochs (the full time is estimated).")
@click.option("--steps", default=200, show_default=True, help="Steady-state training steps timed.")
@click.option("--threads", type=int, help="torch threads (default: torch's choice).")
@click.option("--skip-fit", is_flag=True, help="Only the steady-state step measurement.")
@click.option("--set", "overrides", multiple=True, help="Extra config overrides, e.g. batch_size=64.")
def main(root: Path, videos: int, chunks: int, config: str, epochs: int | None, steps: int, threads: int | None,
         skip_fit: bool, overrides: tuple[str, ...]) -> None:
    if threads:
        torch.set_num_threads(threads)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    csv = generate(root, videos, chunks)
    print(f"store ready in {time.perf_counter() - start:.1f} s: {root / 'store'} ({videos} videos x {chunks} chunks)")
    overrides = (f"data.train_csv={csv}", f"data.video_root={root}", f"data.store={root / 'store'}",
                 "data.group_column=source", "features.nss=false", *overrides)  # the store holds the 4 deep kinds
    if not skip_fit:
        time_fit(config, overrides, epochs, root / "run")
    time_steps(config, overrides, steps)


if __name__ == "__main__":
    main()
