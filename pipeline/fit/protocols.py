"""Evaluation protocols: which labelled videos are held out for testing, and what each test set is called.

Published VQA results come from a few protocols, each one a way to choose the test videos:
- grouped K-fold of one data set (:class:`Fold`, ``--folds``);
- the median over N random content-disjoint train/test splits, usually 80/20 (:class:`Repeat`, ``--repeats``);
- an official split named in the label CSV (``data.split_column``, e.g. LSVQ's train / test / test-1080p);
- cross-dataset: train on one CSV, test on others (``data.test_csv`` as a list).

Every test split's name starts with ``test``, so any tool tells test splits from ``train`` and ``val`` alike:
``test`` for the held-out part of ``--folds``/``--repeats`` and for a single ``test_csv``; a split-column value
as it is when it starts with ``test`` (``test``, ``test-1080p``), else ``test:<value>``; each CSV of a
``test_csv`` list ``test:<name>``, its file name without ``.csv`` (with parent folders where names repeat).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit

from pipeline.config import DataConfig
from pipeline.errors import UsageError

TRAIN_VALUES = ("train", "training")  # split-column values that train (case-insensitive)
VAL_VALUES = ("val", "valid", "validation")  # values that validate (pick the epoch); every other value tests


@dataclass(frozen=True)
class Fold:
    """Fold ``k`` (0-based) of a grouped ``GroupKFold(folds)`` of the train CSV is the test set."""

    k: int
    folds: int

    option = "--folds"

    @property
    def name(self) -> str:
        """The run directory of this fit inside the run."""
        return f"fold-{self.k + 1}"

    def describe(self) -> str:
        return f"fold {self.k + 1} of {self.folds}"

    def held_out(self, groups: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the other folds and rows of this fold; K groups are needed, plus 2 for validation."""
        n_groups = len(set(groups))
        if not 2 <= self.folds <= n_groups - 2:
            raise UsageError(f"{where}: --folds {self.folds} needs 2 <= K <= {n_groups - 2} (the {n_groups} "
                             "groups there, less 2 for a validation split of the other folds)")
        return list(GroupKFold(n_splits=self.folds).split(groups, groups=groups))[self.k]


@dataclass(frozen=True)
class Repeat:
    """Repeat ``r`` (0-based) of ``repeats`` random grouped splits holding out ``test_fraction`` of the groups.

    The N splits are those of one ``GroupShuffleSplit(N, test_fraction, seed)``: the same seed gives the same
    splits, and no group is on both sides of any of them.
    """

    r: int
    repeats: int
    test_fraction: float
    seed: int

    option = "--repeats"

    @property
    def name(self) -> str:
        return f"repeat-{self.r + 1}"

    def describe(self) -> str:
        return f"repeat {self.r + 1} of {self.repeats}, {self.test_fraction:g} of the groups held out"

    def held_out(self, groups: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows that train (and validate) and rows held out for testing in this repeat."""
        n_groups = len(set(groups))
        held = round(self.test_fraction * n_groups)
        if not 1 <= held <= n_groups - 2:
            raise UsageError(f"{where}: --test-fraction {self.test_fraction:g} of its {n_groups} groups holds out "
                             f"{held}; at least 1 must be tested and 2 kept for training and validation")
        splitter = GroupShuffleSplit(n_splits=self.repeats, test_size=held, random_state=self.seed)
        return list(splitter.split(groups, groups=groups))[self.r]


Holdout = Fold | Repeat


def holdouts(folds: int, repeats: int, test_fraction: float, seed: int) -> list[Holdout]:
    """The held-out test sets a run evaluates on: K folds, N repeats, or none (one fit)."""
    if folds and repeats:
        raise UsageError("--folds and --repeats are two protocols; choose one")
    if folds == 1 or folds < 0:
        raise UsageError(f"--folds must be 0 (no folds) or >= 2, got {folds}")
    if repeats < 0:
        raise UsageError(f"--repeats must be >= 0, got {repeats}")
    if not 0 < test_fraction < 1:
        raise UsageError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if folds:
        return [Fold(k, folds) for k in range(folds)]
    return [Repeat(r, repeats, test_fraction, seed) for r in range(repeats)]


def check_holdout(data: DataConfig, holdout: Holdout | None) -> None:
    """A fold or repeat splits the train CSV into train, val and test itself: refuse splits the config gives too."""
    given = [f"data.{key}={value}" for key, value in (("val_csv", data.val_csv), ("test_csv", data.test_csv),
                                                      ("split_column", data.split_column)) if value is not None]
    if holdout is not None and given:
        raise UsageError(f"{holdout.option} splits {data.train_csv} into train, val and test; it cannot be combined "
                         f"with {given[0]}")


def split_role(value: str) -> str:
    """``train``, ``val``, or the name of the test split a split-column ``value`` puts a row in."""
    lowered = value.lower()
    if lowered in TRAIN_VALUES:
        return "train"
    if lowered in VAL_VALUES:
        return "val"
    return value if lowered.startswith("test") else f"test:{value}"


def names_of_test_csvs(paths: list[str]) -> list[str]:
    """``test:<name>`` for each CSV of a ``data.test_csv`` list: the shortest path tail that tells them apart."""
    stems = [PurePath(path).with_suffix("").parts for path in paths]
    for depth in range(1, max(len(parts) for parts in stems) + 1):
        names = ["/".join(parts[-depth:]) for parts in stems]
        if len(set(names)) == len(names):
            return [f"test:{name}" for name in names]
    raise UsageError(f"data.test_csv lists the same file twice: {paths}")


def is_test(split: str) -> bool:
    return split.startswith("test")
