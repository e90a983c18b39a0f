"""Ridge probe of the NSS features: how much quality signal they carry on a labelled set, with no weights.

Decodes every video of a label CSV through the pipeline's own chunking (``open_chunks``: a key frame
and a 32-frame clip per second), computes ``nss_features`` per chunk, averages them per video, then
fits a ridge regression (standardised inputs, penalty chosen by RidgeCV inside each training split)
under grouped K-fold by source (the fixed GroupKFold split, and ``--repeats`` random assignments of
sources to folds, since with 13 sources one split moves SROCC by +-0.05) and under leave-one-source-out,
and reports SROCC against MOS for the
whole descriptor and for each block of it, for the pipeline's NSS (version 2) and for version 1
(``bench/nss_v1.py``, every pixel) computed from the same decoded chunks; ``--variants`` adds the
alternatives version 1 was chosen against (chroma, a third scale, variances without the log). A probe,
not the regressor ``fit.py`` trains.

    .venv/bin/python bench/nss_probe.py --csv /work/shared/data/vqa-dev/labels.csv --group-column source --variants
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import torch
from scipy import stats
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench import nss_v1
from pipeline.labels import read_labels
from pipeline.nss import NSS_NAMES, NSS_VERSION, nss_features
from pipeline.video import open_chunks

# Rows of the table: a name and the blocks it concatenates; (descriptor, NSS_NAMES prefixes) selects columns.
_ALL = ("spatial_", "temporal_", "motion_")
ROWS = {
    f"{label}: {name}": [(block, prefixes)]
    for block, label in (("nss", f"v{NSS_VERSION}"), ("nss_v1", "v1"))
    for name, prefixes in {
        "spatial (key frame, 2 scales)": ("spatial_",),
        "temporal (frame differences, 2 scales)": ("temporal_",),
        "motion (energy, repeats)": ("motion_",),
        "spatial + temporal": ("spatial_", "temporal_"),
        "all (NSS_DIM)": _ALL,
    }.items()
}
# With --variants: the alternatives version 1 was chosen against, each added to or replacing part of it.
VARIANT_ROWS = {
    "v1: all + chroma (Cb, Cr, 2 scales)": [("nss_v1", _ALL), "chroma"],
    "v1: all + third scale (spatial and temporal)": [("nss_v1", _ALL), "third_scale"],
    "v1: all, variances not logged": ["plain_variances", ("nss_v1", ("motion_",))],
}


def variant_blocks(key_frame: torch.Tensor, clip: torch.Tensor) -> dict[str, np.ndarray]:
    """Candidate blocks of one chunk (version 1): chroma statistics, a third dyadic scale, unlogged variances."""
    rgb = key_frame.cpu().numpy().astype(np.float32)
    luma = nss_v1.luma(key_frame)
    chroma = np.stack([0.564 * (rgb[2] - luma), 0.713 * (rgb[0] - luma)])  # Cb, Cr (BT.601 scale factors)
    clip_luma = nss_v1.luma(clip)
    nss_statistics, log_variances = nss_v1.nss_statistics, nss_v1.log_variances
    spatial = nss_statistics(luma[None], scales=3)[0]
    temporal = nss_statistics(clip_luma[1:] - clip_luma[:-1], scales=3).mean(axis=0)
    return {
        "chroma": log_variances(nss_statistics(chroma)),
        "third_scale": log_variances(np.stack([spatial[2], temporal[2]])),
        "plain_variances": np.concatenate([spatial[:2].ravel(), temporal[:2].ravel()]),
    }


def video_blocks(path: Path, decoder: str, variants: bool) -> dict[str, np.ndarray]:
    """Per-video means over its chunks of both NSS versions (``nss``, ``nss_v1``) and, with ``variants``, the candidates."""
    chunks = []
    with open_chunks(path, decoder=decoder) as stream:
        for chunk in stream:
            blocks = {"nss": nss_features(chunk.key_frame, chunk.clip),
                      "nss_v1": nss_v1.nss_features(chunk.key_frame, chunk.clip)}
            chunks.append(blocks | variant_blocks(chunk.key_frame, chunk.clip) if variants else blocks)
    return {name: np.mean([c[name] for c in chunks], axis=0) for name in chunks[0]}


def design_matrix(blocks: dict[str, np.ndarray], parts: list) -> np.ndarray:
    """Concatenate the named blocks; (descriptor, prefixes) selects those NSS_NAMES columns of a descriptor."""
    columns = []
    for part in parts:
        if isinstance(part, tuple):
            block, prefixes = part
            columns.append(blocks[block][:, [i for i, n in enumerate(NSS_NAMES) if n.startswith(prefixes)]])
        else:
            columns.append(blocks[part])
    return np.concatenate(columns, axis=1)


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


def repeated_srocc(x: np.ndarray, mos: np.ndarray, groups: np.ndarray, folds: int, repeats: int) -> np.ndarray:
    """Pooled out-of-fold SROCC of each of ``repeats`` random groupings of the sources into ``folds`` folds."""
    return np.array([srocc(mos, out_of_fold(x, mos, groups, GroupKFold(folds, shuffle=True, random_state=seed))[0])
                     for seed in range(repeats)])


@click.command()
@click.option("--csv", "csv_path", type=click.Path(exists=True, path_type=Path),
              default=Path("/work/shared/data/vqa-dev/labels.csv"), show_default=True)
@click.option("--video-root", type=click.Path(path_type=Path), default=None, help="default: the CSV's folder")
@click.option("--group-column", default="source", show_default=True)
@click.option("--folds", default=5, show_default=True)
@click.option("--decoder", type=click.Choice(["decord", "pyav"]), default="decord", show_default=True)
@click.option("--repeats", default=20, show_default=True, help="random source-to-fold assignments")
@click.option("--variants", is_flag=True, help="also probe chroma, a third scale and unlogged variances")
@click.option("--save", type=click.Path(path_type=Path), default=None, help="write the per-video features (.npz)")
def main(csv_path: Path, video_root: Path | None, group_column: str, folds: int, decoder: str, repeats: int,
         variants: bool, save: Path | None) -> None:
    labels = read_labels(csv_path, video_root, group_column=group_column)
    start = time.perf_counter()
    per_video = [video_blocks(Path(p), decoder, variants) for p in labels["path"]]
    blocks = {name: np.stack([v[name] for v in per_video]) for name in per_video[0]}
    print(f"{len(per_video)} videos, features in {time.perf_counter() - start:.0f} s")
    if save:
        np.savez(save, **blocks, names=np.array(NSS_NAMES), filename=labels["filename"].to_numpy())
    mos, groups = labels["mos"].to_numpy(float), labels["group"].to_numpy()
    print(f"| features | dim | grouped {folds}-fold SROCC (pooled) | mean per-fold SROCC | LOSO SROCC (pooled) "
          f"| {repeats} random groupings: mean +- std |")
    print("|---|---|---|---|---|---|")
    repeated = {}
    for name, parts in (ROWS | VARIANT_ROWS if variants else ROWS).items():
        x = design_matrix(blocks, parts)
        pred, splits = out_of_fold(x, mos, groups, GroupKFold(folds))
        per_fold = np.mean([srocc(mos[test], pred[test]) for _, test in splits])
        loso, _ = out_of_fold(x, mos, groups, LeaveOneGroupOut())
        repeated[name] = repeated_srocc(x, mos, groups, folds, repeats)
        print(f"| {name} | {x.shape[1]} | {srocc(mos, pred):.3f} | {per_fold:.3f} | {srocc(mos, loso):.3f} "
              f"| {repeated[name].mean():.3f} +- {repeated[name].std():.3f} |")
    gain = repeated[f"v{NSS_VERSION}: all (NSS_DIM)"] - repeated["v1: all (NSS_DIM)"]
    print(f"\nv{NSS_VERSION} - v1, all, same groupings: mean {gain.mean():+.3f}, "
          f"v{NSS_VERSION} ahead in {(gain > 0).sum()} of {repeats}")


if __name__ == "__main__":
    main()
