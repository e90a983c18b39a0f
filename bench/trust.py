"""How far the scores can be trusted on sources a model never saw: held-out ranking against ridge, the spread
between seeds on the same splits, interval coverage, and how many held-out videos the domain check keeps.

    python -m bench.trust -o config/nss_only.yml --store STORE --set data.train_csv=../shared/data/vqa-dev/labels.csv \
        --set data.video_root=../shared/data/vqa-dev --repeats 10 --seeds 42,7,3 --out runs/trust

Every (seed, split) pair is one ``fit.py`` fit of the given config holding out the same grouped split
(``--repeats``' splits, drawn with ``--split-seed``), so the seeds differ only in the model's own randomness.
Prints, for the MLP and ridge: the median over splits of the seed-averaged test SROCC and PLCC, the mean over
splits of the standard deviation between seeds, and (for models with intervals) the median coverage of the
80 % intervals and the share of held-out videos in domain.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.fit.data import read_splits
from pipeline.fit.jobs import FitJob, run_job
from pipeline.fit.protocols import Repeat
from pipeline.fit.run import resolve_configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--config", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--seeds", default="42,7,3")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        overrides = [*args.overrides, f"data.store={args.store}", f"seed={seed}", "baselines=[ridge]"]
        coarse, fine = resolve_configs(args.config, overrides=overrides)
        for r in range(args.repeats):
            holdout = Repeat(r, args.repeats, args.test_fraction, args.split_seed)
            out = args.out / f"seed-{seed}" / holdout.name
            metrics = run_job(FitJob(coarse, fine, out, holdout=holdout, echo=False))
            baselines = json.loads((out / "baselines.json").read_text())
            mlp = metrics[list(metrics)[-1]]["test"]
            held = read_splits(coarse, holdout, log=lambda _: None)["test"].keys
            rows.append({"seed": seed, "split": r, "model": "mlp", **mlp, **_domain(out, args.store, held)})
            rows.append({"seed": seed, "split": r, "model": "ridge", **baselines["ridge"]["test"]})
            print(f"seed {seed} split {r + 1}: mlp {mlp['srocc']:.4f}, ridge {baselines['ridge']['test']['srocc']:.4f}",
                  flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "trust.csv", index=False)
    print(summary(table))


def _domain(run_dir: Path, store: str, held: list[str]) -> dict:
    """The share of the held-out videos that the domain check keeps (nothing for models without one)."""
    from pipeline.fit.model import load_model
    from pipeline.scoring import Scorer
    from pipeline.store import FeatureStore

    if getattr(load_model(run_dir / "best_model.pth")[1], "legacy", True):
        return {}
    scorer = Scorer.load(run_dir / "best_model.pth", device="cpu", store=store)
    predictions = scorer.score_table(FeatureStore.open(store).read(scorer.kinds, held))
    return {"in_domain": float(np.mean(predictions.novelty <= 1))}


def summary(table: pd.DataFrame) -> str:
    lines = []
    for model, rows in table.groupby("model", sort=False):
        per_split = rows.groupby("split")
        srocc, plcc = per_split["srocc"].mean(), per_split["plcc"].mean()
        spread = per_split["srocc"].std(ddof=1).mean()
        line = (f"{model:6s} test SROCC median {srocc.median():.4f} (splits' range {srocc.min():.3f}-{srocc.max():.3f}), "
                f"PLCC median {plcc.median():.4f}; seed-to-seed std of SROCC, mean over splits {spread:.4f}")
        for extra in ("coverage", "in_domain"):
            if extra in rows and rows[extra].notna().any():
                line += f"; {extra} median {rows[extra].median():.3f} (range {rows[extra].min():.3f}-{rows[extra].max():.3f})"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
