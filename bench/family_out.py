"""One distortion family out, through ``fit.py``: how the default regressor ranks a distortion it never saw.

``bench/nss_probe.py`` asks this of a ridge regression on per-video mean features; this asks it of the model
users get. For each distortion family of the label CSV (its condition names without the strength, as the
probe reads them) and each seed, ``fit.py``'s fit of the given config is trained on every other family and the
pristine clips, then scores the left-out family and the pristine clips from the store: the pristine clips by
the cross-fitted member that left each one out (``Predictions.trained_on``), the family by the whole model.
Prints SROCC against MOS per family (mean over seeds) and the mean over families.

    python -m bench.family_out -o config/nss_only.yml --store STORE --csv ../shared/data/vqa-dev/labels.csv \
        --set data.video_root=../shared/data/vqa-dev --seeds 42,7,3 --out runs/family-out
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.nss_probe import PRISTINE, read_families
from pipeline.fit.jobs import FitJob, run_job
from pipeline.fit.run import resolve_configs
from pipeline.scoring import Scorer
from pipeline.store import FeatureStore


def family_srocc(config: str, store: str, overrides: list[str], labels: pd.DataFrame, held: str, seed: int,
                 out: Path) -> float:
    """SROCC on ``held`` and the pristine clips of the fit trained without ``held``."""
    out.mkdir(parents=True, exist_ok=True)
    train_csv = out / "train.csv"
    labels[labels["family"] != held].drop(columns="family").to_csv(train_csv, index=False)
    coarse, fine = resolve_configs(config, overrides=[*overrides, f"data.train_csv={train_csv}",
                                                      f"data.store={store}", f"seed={seed}"])
    run_job(FitJob(coarse, fine, out, echo=False))
    test = labels[labels["family"].isin([held, PRISTINE])]
    scorer = Scorer.load(out / "best_model.pth", device="cpu", store=store)
    predictions = scorer.score_table(FeatureStore.open(store).read(scorer.kinds, list(test["filename"])))
    score = pd.Series(predictions.score, index=predictions.keys)[test["filename"]]
    return float(stats.spearmanr(test["mos"], score)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--config", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--csv", type=Path, required=True, help="labels with a condition column")
    parser.add_argument("--condition-column", default="condition")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--seeds", default="42,7,3")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    labels = pd.read_csv(args.csv)
    labels["family"] = read_families(args.csv, args.condition_column)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for held in sorted(set(labels["family"]) - {PRISTINE}):
        for seed in seeds:
            value = family_srocc(args.config, args.store, args.overrides, labels, held, seed,
                                 args.out / held / f"seed-{seed}")
            rows.append({"family": held, "seed": seed, "srocc": value})
            print(f"{held} seed {seed}: SROCC {value:+.3f}", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "family_out.csv", index=False)
    per_family = table.groupby("family")["srocc"].agg(["mean", "std"])
    print("\n| family | SROCC, mean over seeds (std) |\n|---|---|")
    for family, row in per_family.iterrows():
        print(f"| {family} | {row['mean']:+.3f} ({row['std']:.3f}) |")
    by_seed = table.groupby("seed")["srocc"].mean()
    print(f"| **mean over families** | **{per_family['mean'].mean():.3f}** (seeds {np.ptp(by_seed):.3f} apart) |")


if __name__ == "__main__":
    main()
