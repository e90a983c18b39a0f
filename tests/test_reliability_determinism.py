"""Determinism: the same inputs give the same bytes, whatever run, process layout or worker count made them.

Features of two extraction runs (one decoding in this process, one in a decoder process) are bit-identical;
two fits with one seed give identical metrics and weights; a scored CSV is identical across runs and across
``--workers`` 0 and 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corpus import FEW, invoke
from pipeline.cli import fit, score
from pipeline.fit.model import load_model
from pipeline.store import FeatureStore


# Slow: every test extracts, fits or scores afresh to compare with the tiny run.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]



@pytest.fixture(scope="module")
def scored(run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny run's videos scored three times: from its store, and extracting afresh with 0 and with 1 worker."""
    out = tmp_path_factory.mktemp("scored")
    folders = {}
    for name, store, workers in (("cached", run / "store", 0), ("workers0", out / "store0", 0),
                                 ("workers1", out / "store1", 1)):
        folders[name] = out / name
        folders[name].mkdir()
        code, output = invoke(score, "--model", run / "run" / "best_model.pth", "--csv", run / "few.csv",
                              "--store", store, "--workers", workers, "--out", folders[name] / "scores.csv",
                              "--per-second", folders[name] / "seconds.jsonl", "--no-progress")
        assert code == 0, output
    return {**folders, "store0": out / "store0", "store1": out / "store1"}


KINDS = ("spatial_coarse", "temporal_slow", "temporal_fast")  # what scoring extracts for the tiny model


def contents(store: Path) -> dict:
    """The feature rows and index record of every video of a store."""
    opened = FeatureStore.open(store)
    cached = opened.cached()
    table = opened.read(KINDS)
    return {key: (cached[key].fps, cached[key].frames, cached[key].width, cached[key].height, cached[key].duration,
                  {kind: table.features[kind][table.rows(key)] for kind in KINDS}) for key in table.keys}


def test_extraction_runs_give_bit_identical_features(run: Path, scored: dict[str, Path]) -> None:
    reference = contents(run / "store")  # made by extract_features.py, decoding inline
    for store in (scored["store0"], scored["store1"]):  # made by score.py, inline and in a decoder process
        assert FeatureStore.open(store).settings == FeatureStore.open(run / "store").settings
        other = contents(store)
        assert len(other) == FEW
        for key, (*record, rows) in other.items():
            assert tuple(record) == tuple(reference[key][:-1]), key
            for kind, values in rows.items():
                np.testing.assert_array_equal(values, reference[key][-1][kind], err_msg=f"{store} {key} {kind}")


def test_a_scored_csv_is_the_same_across_runs_and_worker_counts(scored: dict[str, Path]) -> None:
    for name in ("workers0", "workers1"):
        for output in ("scores.csv", "seconds.jsonl"):
            assert (scored[name] / output).read_bytes() == (scored["cached"] / output).read_bytes(), (name, output)


def test_two_fits_with_one_seed_are_identical(run: Path, tmp_path: Path) -> None:
    code, out = invoke(fit, "-o", run / "config.yml", "--out", tmp_path / "again")
    assert code == 0, out
    for output in ("metrics.json", "best_model.pth"):
        assert (tmp_path / "again" / output).read_bytes() == (run / "run" / output).read_bytes(), output
    first, _ = load_model(run / "run" / "best_model.pth")

    code, out = invoke(fit, "-o", run / "config.yml", "--out", tmp_path / "other", "--seed", "8")
    assert code == 0, out
    other, _ = load_model(tmp_path / "other" / "best_model.pth")
    assert not torch.equal(other.head.weight, first.head.weight), "the seed should matter"
