"""Why the MLP loses to ridge on small data: the same held-out folds, trained several ways, and the baselines.

For each fold of a grouped K-fold of the train CSV (``read_splits`` with ``Fold``, as ``fit.py --folds``) and
each seed, one phase of the config is trained
- ``best val epoch``: on ``train``, keeping the epoch with the best SROCC on the 2-3 validation sources
  (``select_epoch: best_val``, fit.py's default before);
- ``last epoch``: on ``train``, keeping the last epoch (``select_epoch: last``), isolating what the noisy
  validation choice costs;
- ``train+val, last epoch``: on all of the training part (a refit on train + val), isolating what the
  held-back validation videos cost;
and the ridge / SVR baselines (``pipeline.fit.baseline``, trained on train + val) on the same folds.
Prints mean ± std over folds of the test SROCC (seeds averaged per fold) and of the chosen epoch.

    python bench/mlp_small_data.py -o config/nss_only.yml --store /tmp/vqa_dev_nss \
        --set data.train_csv=../shared/data/vqa-dev/labels.csv --set data.video_root=../shared/data/vqa-dev
"""

from __future__ import annotations

import dataclasses

import click
import numpy as np
import torch

from pipeline.config import load_config
from pipeline.fit.baseline import run_baselines
from pipeline.fit.data import FeatureSpec, Split, drop_uncached, read_splits, shared_features
from pipeline.fit.protocols import Fold, Repeat
from pipeline.fit.train import deterministic, train_phase
from pipeline.store import FeatureStore
from pipeline.tables import format_table


def _joined(name: str, *splits: Split) -> Split:
    return Split(name, [k for s in splits for k in s.keys], np.concatenate([s.mos for s in splits]),
                 np.concatenate([s.groups for s in splits]))


@click.command()
@click.option("-o", "--config", "config_path", required=True)
@click.option("--store", required=True)
@click.option("--set", "overrides", multiple=True)
@click.option("--folds", default=5, show_default=True, help="Grouped K-fold (ignored with --repeats).")
@click.option("--repeats", default=0, help="N random grouped splits holding out 0.2 of the groups instead.")
@click.option("--seeds", default=3, show_default=True)
def main(config_path: str, store: str, overrides: tuple[str, ...], folds: int, repeats: int, seeds: int) -> None:
    torch.set_num_threads(1)
    base = load_config(config_path, [*overrides, f"data.store={store}"])
    held = [Repeat(r, repeats, 0.2, base.seed) for r in range(repeats)] if repeats else [Fold(k, folds) for k in range(folds)]
    folds = len(held)
    feature_store = FeatureStore.open(store)
    scores: dict[str, list[list[float]]] = {}
    epochs: dict[str, list[int]] = {}
    for k in range(folds):
        for seed in range(seeds):
            cfg = load_config(config_path, [*overrides, f"data.store={store}", f"seed={base.seed + seed}"])
            splits = drop_uncached(read_splits(cfg, held[k], log=lambda _: None), feature_store, lambda _: None)
            keys = sorted({key for split in splits.values() for key in split.keys})
            features = shared_features(feature_store, keys, torch.device("cpu"))
            kinds = FeatureSpec.from_config(cfg).kinds
            features.load(kinds)
            train, val, test = splits["train"], splits["val"], splits["test"]
            best_val = dataclasses.replace(cfg, select_epoch="best_val")
            last = dataclasses.replace(cfg, select_epoch="last")
            variants = {
                "MLP, best val epoch (best_val)": (best_val, {"train": train, "val": val, "test": test}),
                "MLP, last epoch (last, the default)": (last, {"train": train, "val": val, "test": test}),
                "MLP on train+val, last epoch": (last, {"train": _joined("train", train, val), "val": val, "test": test}),
            }
            for name, (variant_cfg, variant) in variants.items():
                with deterministic():
                    result = train_phase("coarse", variant_cfg, features, variant, log=lambda _: None)
                scores.setdefault(name, [[] for _ in range(folds)])[k].append(result.metrics["test"]["srocc"])
                epochs.setdefault(name, []).append(result.best_epoch)
            if seed == 0:  # the baselines do not depend on the seed
                for name, by_split in run_baselines(["ridge", "svr"], features, splits, kinds, lambda _: None).items():
                    scores.setdefault(name, [[] for _ in range(folds)])[k].append(by_split["test"]["srocc"])
    rows = []
    for name, per_fold in scores.items():
        means = [float(np.mean(s)) for s in per_fold]
        chosen = f"{np.mean(epochs[name]):.1f}" if name in epochs else "-"
        rows.append([name, f"{np.mean(means):.3f} ± {np.std(means, ddof=1):.3f}", chosen])
    protocol = f"{repeats} random grouped 80/20 splits" if repeats else f"{folds}-fold grouped"
    print(f"{protocol}, {seeds} seed(s) each; test SROCC mean ± std over the held-out splits")
    print(format_table(["model", "test SROCC", "mean chosen epoch"], rows))


if __name__ == "__main__":
    main()
