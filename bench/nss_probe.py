"""Ridge probe of the NSS features: how much quality signal they carry on a labelled set, with no weights.

Decodes every video of a label CSV through the pipeline's own chunking (``open_chunks``: a key frame
and a 32-frame clip per second), computes ``nss_features`` per chunk, averages them per video, then
fits a ridge regression (standardised inputs, penalty chosen by RidgeCV inside each training split)
under grouped K-fold by source and under leave-one-source-out, and reports SROCC against MOS for the
whole descriptor and for each block of it. A probe, not the regressor ``fit.py`` trains.

    .venv/bin/python bench/nss_probe.py --csv /work/shared/data/vqa-dev/labels.csv --group-column source
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
from scipy import stats
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.labels import read_labels
from pipeline.nss import NSS_NAMES, nss_features
from pipeline.video import open_chunks

BLOCKS = {
    "spatial (key frame, 2 scales)": ("spatial_",),
    "temporal (frame differences, 2 scales)": ("temporal_",),
    "motion (energy, repeats)": ("motion_",),
    "spatial + temporal": ("spatial_", "temporal_"),
    "all (NSS_DIM)": ("spatial_", "temporal_", "motion_"),
}


def video_features(path: Path, decoder: str) -> np.ndarray:
    """Mean NSS descriptor over the video's chunks."""
    with open_chunks(path, decoder=decoder) as stream:
        return np.mean([nss_features(chunk.key_frame, chunk.clip) for chunk in stream], axis=0)


def out_of_fold(x: np.ndarray, mos: np.ndarray, groups: np.ndarray, splitter) -> tuple[np.ndarray, list]:
    """Ridge predictions for every video from the model that did not see its group, and the test splits."""
    pred = np.empty_like(mos)
    splits = list(splitter.split(x, mos, groups))
    for train, test in splits:
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 29)))
        pred[test] = model.fit(x[train], mos[train]).predict(x[test])
    return pred, splits


def srocc(mos: np.ndarray, pred: np.ndarray) -> float:
    return float(stats.spearmanr(mos, pred)[0])


@click.command()
@click.option("--csv", "csv_path", type=click.Path(exists=True, path_type=Path),
              default=Path("/work/shared/data/vqa-dev/labels.csv"), show_default=True)
@click.option("--video-root", type=click.Path(path_type=Path), default=None, help="default: the CSV's folder")
@click.option("--group-column", default="source", show_default=True)
@click.option("--folds", default=5, show_default=True)
@click.option("--decoder", type=click.Choice(["decord", "pyav"]), default="decord", show_default=True)
@click.option("--save", type=click.Path(path_type=Path), default=None, help="write the per-video features (.npz)")
def main(csv_path: Path, video_root: Path | None, group_column: str, folds: int, decoder: str, save: Path | None) -> None:
    labels = read_labels(csv_path, video_root, group_column=group_column)
    start = time.perf_counter()
    x = np.stack([video_features(Path(p), decoder) for p in labels["path"]])
    print(f"{len(x)} videos, NSS features in {time.perf_counter() - start:.0f} s")
    if save:
        np.savez(save, features=x, names=np.array(NSS_NAMES), filename=labels["filename"].to_numpy())
    mos, groups = labels["mos"].to_numpy(float), labels["group"].to_numpy()
    print(f"| features | dim | grouped {folds}-fold SROCC (pooled) | mean per-fold SROCC | LOSO SROCC (pooled) |")
    print("|---|---|---|---|---|")
    for name, prefixes in BLOCKS.items():
        columns = [i for i, n in enumerate(NSS_NAMES) if n.startswith(prefixes)]
        pred, splits = out_of_fold(x[:, columns], mos, groups, GroupKFold(folds))
        per_fold = np.mean([srocc(mos[test], pred[test]) for _, test in splits])
        loso, _ = out_of_fold(x[:, columns], mos, groups, LeaveOneGroupOut())
        print(f"| {name} | {len(columns)} | {srocc(mos, pred):.3f} | {per_fold:.3f} | {srocc(mos, loso):.3f} |")


if __name__ == "__main__":
    main()
