"""bf16 features (the CUDA recipe) against float32 ones (the CPU recipe) on vqa-dev: feature cosine and scores.

A GPU extracts in bf16, a CPU in float32 (``pipeline.backbones.device.feature_precision``). Without a GPU
this runs the accelerator recipe (whole batches, channels-last, bf16 autocast) on the CPU, which rounds as
CUDA's bf16 does up to kernel choice. Clips drawn at random per source of vqa-dev (any condition), extracted both ways with random
weights into two stores; then a two-phase fit on the float32 store, and that model scores both stores.

    python -m bench.precision --clips-per-source 1 --out /tmp/vqa-precision
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from pipeline.backbones.device import ACCELERATOR_RECIPE, CPU_RECIPE
from pipeline.config import load_config
from pipeline.backbones import Backbones
from pipeline.extract.run import extract_videos
from pipeline.fit.run import fit
from pipeline.scoring import Scorer
from pipeline.store import FeatureStore

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast")


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=ROOT.parent / "shared" / "data" / "vqa-dev",
              show_default=True)
@click.option("--clips-per-source", default=1, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("/tmp/vqa-precision"), show_default=True)
@click.option("--epochs", default=10, show_default=True, help="Epochs of each fit phase.")
def main(data: Path, clips_per_source: int, out: Path, epochs: int) -> None:
    labels = pd.read_csv(data / "labels.csv")
    picked = labels.groupby("source", sort=True).sample(n=clips_per_source, random_state=0).reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "labels.csv"
    picked[["filename", "mos", "source"]].to_csv(csv, index=False)
    overrides = [f"data.train_csv={csv}", f"data.video_root={data}", "extract.weights=random",
                 "extract.levels.coarse.short_side=224", "extract.levels.fine.short_side=384"]  # the accuracy study's
    cfg = load_config(ROOT / "config" / "vqa_dev.yml", overrides).extract
    pairs = [(name, data / name) for name in picked.filename]
    stores = {}
    for name, recipe in (("float32", CPU_RECIPE), ("bf16", ACCELERATOR_RECIPE)):
        began = time.perf_counter()
        stores[name] = out / f"store_{name}"
        summary = extract_videos(pairs, stores[name], cfg, backbones=Backbones(cfg, recipe=recipe), progress=False)
        print(f"{name}: {summary} ({time.perf_counter() - began:.0f} s)")
    reads = {name: FeatureStore.open(path).read((*KINDS, "nss")) for name, path in stores.items()}
    precise, rounded = reads["float32"], reads["bf16"]
    for kind in KINDS:
        cos = np.concatenate([row_cosines(precise.features[kind][precise.rows(key)],
                                          rounded.features[kind][rounded.rows(key)]) for key in precise.keys])
        print(f"{kind}: cosine per row min {cos.min():.5f}, median {np.median(cos):.5f} ({len(cos)} rows)")

    run = out / "run"
    fit(ROOT / "config" / "vqa_dev.yml", overrides=[*overrides, f"data.store={stores['float32']}",
                                                     f"num_epochs={epochs}"], out=run)
    scores = {}
    for name, path in stores.items():
        scorer = Scorer.load(run / "best_model.pth", device="cpu", store=path)
        table = FeatureStore.open(path).read(scorer.kinds, list(picked.filename))
        scores[name] = pd.Series(scorer.score_table(table).score, index=table.keys)
    gap = (scores["bf16"] - scores["float32"]).abs()
    rho = spearmanr(scores["float32"], scores["bf16"]).statistic
    print(f"scores of a model fitted on the float32 features ({len(gap)} clips, MOS std {picked.mos.std():.1f}, score "
          f"std {scores['float32'].std():.2f}): bf16 vs float32 |difference| max {gap.max():.4f}, mean "
          f"{gap.mean():.4f}; SROCC between them {rho:.4f}")


if __name__ == "__main__":
    main()
