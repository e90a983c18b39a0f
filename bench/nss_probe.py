"""Ridge probe of the NSS features: how well they rank distortions and sources the regressor has not seen.

Decodes every video of a label CSV through the pipeline's own chunking (``open_chunks``: a key frame and a
32-frame clip per second), computes the pipeline's NSS (``nss_features``) and version 1's
(``bench/nss_v1.py``, every pixel) per chunk, averages them per video, and fits a ridge regression
(standardised inputs, penalty chosen by RidgeCV inside each training split) out of fold under three
protocols, reporting SROCC against MOS:

* **by source**: ``--repeats`` random assignments of the sources to ``--folds`` folds (one split moves SROCC
  by +-0.05 with 13 sources), pooled SROCC of each; and leave-one-source-out.
* **one family out**: train on every other distortion family and the pristine clips, test on the left-out
  family with the pristine clips (which are on both sides: they anchor the ranking).
* **one family and its sources out**: the same, but a test clip's source is also held out, under the same
  random groupings of the sources: neither the distortion nor the content is seen, and the spread over
  groupings says how much one split decides.

A clip's family is its condition's name without the strength: ``x264_crf23`` -> ``x264``, ``down4`` ->
``down``, ``noise_lo`` -> ``noise``, ``down2_x264crf37`` -> ``down2_x264`` (vqa-dev's ``conditions.csv``
calls the last two ``scale`` and ``combo``). A probe, not the regressor ``fit.py`` trains.

    .venv/bin/python -m bench.nss_probe --csv ../shared/data/vqa-dev/labels.csv --save /tmp/nss.npz
    .venv/bin/python -m bench.nss_probe --csv ../shared/data/vqa-dev/labels.csv --load /tmp/nss.npz --blocks
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench import nss_v1
from pipeline.labels import read_labels
from pipeline.nss import NSS_NAMES, NSS_VERSION, nss_features
from pipeline.video import open_chunks

PRISTINE = "pristine"
# The strength suffix of a condition name: a CRF, a level, or a trailing factor.
_STRENGTH = re.compile(r"_?crf\d+$|_(lo|mid|hi)$|\d+$")
V1_NAMES = nss_v1.NSS_V1_NAMES


def family(condition: str) -> str:
    """The distortion family of a condition name: the name without its strength."""
    return _STRENGTH.sub("", condition)


def video_features(path: Path, decoder: str) -> dict[str, np.ndarray]:
    """Per-video means over its chunks of the pipeline's NSS (``nss``) and version 1's (``nss_v1``)."""
    chunks = []
    with open_chunks(path, decoder=decoder) as stream:
        for chunk in stream:
            chunks.append({"nss": nss_features(chunk.key_frame, chunk.clip),
                           "nss_v1": nss_v1.nss_features(chunk.key_frame, chunk.clip)})
    return {name: np.mean([c[name] for c in chunks], axis=0) for name in chunks[0]}


def ridge() -> object:
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 29)))


def srocc(mos: np.ndarray, pred: np.ndarray) -> float:
    return float(stats.spearmanr(mos, pred)[0])


def predict(x: np.ndarray, mos: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each test clip's prediction by the ridge trained on its split's training clips (NaN: in no test split)."""
    pred = np.full_like(mos, np.nan)
    for train, test in splits:
        pred[test] = ridge().fit(x[train], mos[train]).predict(x[test])
    return pred


def source_groupings(groups: np.ndarray, folds: int, repeats: int) -> list[np.ndarray]:
    """``repeats`` random assignments of the sources to ``folds`` folds: each clip's fold, per grouping."""
    fold_of = []
    for seed in range(repeats):
        fold = np.empty(len(groups), dtype=int)
        for k, (_, test) in enumerate(GroupKFold(folds, shuffle=True, random_state=seed).split(groups, groups=groups)):
            fold[test] = k
        fold_of.append(fold)
    return fold_of


def by_source(x: np.ndarray, mos: np.ndarray, fold_of: list[np.ndarray]) -> np.ndarray:
    """Pooled out-of-fold SROCC under each grouping of the sources."""
    return np.array([srocc(mos, predict(x, mos, [(np.flatnonzero(f != k), np.flatnonzero(f == k))
                                                 for k in np.unique(f)])) for f in fold_of])


def family_out(x: np.ndarray, mos: np.ndarray, families: np.ndarray, held: str,
               fold_of: list[np.ndarray] | None = None) -> np.ndarray:
    """SROCC on the family ``held`` and the pristine clips, trained without ``held``.

    Without ``fold_of``: one value, the pristine clips also trained on. With it: one value per grouping, each
    test clip predicted by a ridge that saw neither its family nor its source.
    """
    test = (families == held) | (families == PRISTINE)
    if fold_of is None:
        pred = predict(x, mos, [(np.flatnonzero(families != held), np.flatnonzero(test))])
        return np.array([srocc(mos[test], pred[test])])
    values = []
    for fold in fold_of:
        splits = [(np.flatnonzero((families != held) & (fold != k)), np.flatnonzero(test & (fold == k)))
                  for k in np.unique(fold)]
        pred = predict(x, mos, splits)
        values.append(srocc(mos[test], pred[test]))
    return np.array(values)


def columns(names: tuple[str, ...], prefixes: tuple[str, ...]) -> list[int]:
    return [i for i, n in enumerate(names) if n.startswith(prefixes)]


def read_families(csv_path: Path, column: str) -> np.ndarray:
    table = pd.read_csv(csv_path)
    if column not in table.columns:
        raise click.UsageError(f"{csv_path}: no column {column!r} to read the distortion families from "
                               f"(columns: {', '.join(table.columns)})")
    return table[column].astype(str).map(family).to_numpy()


def descriptors(features: dict[str, np.ndarray], blocks: bool) -> dict[str, np.ndarray]:
    """The design matrices probed: each version's whole descriptor and, with ``blocks``, each of its blocks."""
    rows = {}
    for key, label, names in (("nss_v1", "v1", V1_NAMES), ("nss", f"v{NSS_VERSION}", NSS_NAMES)):
        rows[f"{label}: all"] = features[key]
        if blocks:
            for block in dict.fromkeys(n.split("_")[0] for n in names):
                rows[f"{label}: {block}"] = features[key][:, columns(names, (f"{block}_",))]
    return rows


@click.command()
@click.option("--csv", "csv_path", type=click.Path(exists=True, path_type=Path),
              default=Path("/work/shared/data/vqa-dev/labels.csv"), show_default=True)
@click.option("--video-root", type=click.Path(path_type=Path), default=None, help="default: the CSV's folder")
@click.option("--group-column", default="source", show_default=True)
@click.option("--condition-column", default="condition", show_default=True, help="its names give the families")
@click.option("--folds", default=5, show_default=True)
@click.option("--decoder", type=click.Choice(["decord", "pyav"]), default="decord", show_default=True)
@click.option("--repeats", default=20, show_default=True, help="random source-to-fold assignments")
@click.option("--blocks", is_flag=True, help="also probe each block of each descriptor on its own")
@click.option("--save", type=click.Path(path_type=Path), default=None, help="write the per-video features (.npz)")
@click.option("--load", type=click.Path(exists=True, path_type=Path), default=None,
              help="read the per-video features --save wrote instead of decoding")
def main(csv_path: Path, video_root: Path | None, group_column: str, condition_column: str, folds: int,
         decoder: str, repeats: int, blocks: bool, save: Path | None, load: Path | None) -> None:
    labels = read_labels(csv_path, video_root, group_column=group_column)
    families = read_families(csv_path, condition_column)
    if load:
        saved = np.load(load)
        if list(saved["filename"]) != list(labels["filename"]) or list(saved["names"]) != list(NSS_NAMES):
            raise click.UsageError(f"{load}: saved for other videos or another NSS version than {csv_path} and "
                                   f"version {NSS_VERSION}; run without --load")
        features = {"nss": saved["nss"], "nss_v1": saved["nss_v1"]}
    else:
        start = time.perf_counter()
        per_video = [video_features(Path(p), decoder) for p in labels["path"]]
        features = {name: np.stack([v[name] for v in per_video]) for name in per_video[0]}
        print(f"{len(per_video)} videos, features in {time.perf_counter() - start:.0f} s")
    if save:
        np.savez(save, **features, names=np.array(NSS_NAMES), filename=labels["filename"].to_numpy())
    mos, groups = labels["mos"].to_numpy(float), labels["group"].to_numpy()
    fold_of = source_groupings(groups, folds, repeats)
    held_out = sorted(set(families) - {PRISTINE})
    print(f"{len(mos)} videos, {len(set(groups))} sources, families {', '.join(held_out)} (+ {PRISTINE}); "
          f"{repeats} random groupings of the sources into {folds} folds\n")
    print("| features | dim | by source: mean +- std | LOSO | one family out: mean (min family) "
          "| one family and its sources out: mean +- std over groupings |")
    print("|---|---|---|---|---|---|")
    per_family = {}
    for name, x in descriptors(features, blocks).items():
        source = by_source(x, mos, fold_of)
        loso = srocc(mos, predict(x, mos, list(LeaveOneGroupOut().split(x, mos, groups))))
        lofo = {f: family_out(x, mos, families, f)[0] for f in held_out}
        both = np.array([family_out(x, mos, families, f, fold_of) for f in held_out])  # (families, groupings)
        per_family[name] = (lofo, both)
        lofo_mean = np.mean(list(lofo.values()))
        print(f"| {name} | {x.shape[1]} | {source.mean():.3f} +- {source.std():.3f} | {loso:.3f} "
              f"| {lofo_mean:.3f} ({min(lofo.values()):.2f}) | {both.mean(0).mean():.3f} +- {both.mean(0).std():.3f} |")
    shown = [n for n in per_family if n.endswith(": all")]
    print("\nPer family, whole descriptors: one family out | one family and its sources out (mean +- std)\n")
    print("| family | " + " | ".join(shown) + " |")
    print("|---|" + "---|" * len(shown))
    for i, f in enumerate(held_out):
        cells = [f"{per_family[n][0][f]:.2f} \\| {per_family[n][1][i].mean():.2f} +- {per_family[n][1][i].std():.2f}"
                 for n in shown]
        print(f"| {f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
