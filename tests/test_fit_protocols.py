import json

import numpy as np
import pandas as pd
import pytest
import torch
from fit_fixtures import make_store, write_configs, write_csv
from sklearn.model_selection import GridSearchCV

from pipeline.config import load_config
from pipeline.errors import ConfigError, CSVError, UsageError
from pipeline.fit.baseline import run_baselines
from pipeline.fit.data import read_splits, shared_features
from pipeline.fit.protocols import Repeat, holdouts, split_role, names_of_test_csvs
from pipeline.fit.run import fit
from pipeline.store import FeatureStore
from pipeline.metric_tables import METRIC_COLUMNS

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocols")
    labels = make_store(tmp / "store", videos=24, max_chunks=2, nss_dim=8)  # 12 sources of 2 videos
    return tmp, labels, write_csv(tmp / "labels.csv", labels)


NSS_ONLY = {"num_epochs": 1, "fine_config": None, "features": {"level": None, "temporal": [], "nss": True}}


def config(tiny, *overrides: str):
    tmp, _, csv = tiny
    return load_config(write_configs(tmp, tmp / "store", csv, coarse=NSS_ONLY), overrides)


def test_repeats_are_seeded_and_content_disjoint(tiny):
    cfg = config(tiny)
    repeats = [read_splits(cfg, Repeat(r, 4, 0.25, seed=1), **QUIET) for r in range(4)]
    for splits in repeats:
        groups = {name: set(split.groups) for name, split in splits.items()}
        assert len(groups["test"]) == 3  # a quarter of the 12 sources
        assert not groups["test"] & (groups["train"] | groups["val"]) and not groups["train"] & groups["val"]
        assert sum(len(split) for split in splits.values()) == 24
    tests = [tuple(splits["test"].keys) for splits in repeats]
    assert len(set(tests)) == 4  # every repeat holds out other sources
    assert tests == [tuple(read_splits(cfg, Repeat(r, 4, 0.25, seed=1), **QUIET)["test"].keys) for r in range(4)]
    assert tests != [tuple(read_splits(cfg, Repeat(r, 4, 0.25, seed=2), **QUIET)["test"].keys) for r in range(4)]


@pytest.mark.parametrize("args, message", [
    ((2, 3, 0.2), "--folds and --repeats are two protocols"),
    ((0, -1, 0.2), "--repeats must be >= 0"),
    ((0, 3, 1.0), "--test-fraction must be between 0 and 1"),
])
def test_protocol_options_are_checked(args, message):
    with pytest.raises(UsageError, match=message):
        holdouts(*args, seed=0)


def test_a_test_fraction_that_leaves_too_few_groups_is_refused(tiny):
    with pytest.raises(UsageError, match="holds out 11; at least 1 must be tested and 2 kept"):
        read_splits(config(tiny), Repeat(0, 2, 0.9, seed=0), **QUIET)


def test_split_column_names_the_official_train_val_and_test_sets(tiny, tmp_path):
    _, labels, _ = tiny
    split = ["train"] * 12 + ["Validation"] * 4 + ["test"] * 4 + ["test-1080p"] * 2 + ["holdout"] * 2
    csv = write_csv(tmp_path / "official.csv", labels.assign(split=split))
    splits = read_splits(config(tiny, f"data.train_csv={csv}", "data.split_column=split"), **QUIET)
    assert list(splits) == ["train", "val", "test", "test-1080p", "test:holdout"]
    assert [len(s) for s in splits.values()] == [12, 4, 4, 2, 2]
    assert splits["test-1080p"].keys == list(labels.filename[20:22])
    assert [split_role(v) for v in ("TRAIN", "training", "valid", "Test_2")] == ["train", "train", "val", "Test_2"]


def test_split_column_without_validation_rows_splits_the_training_rows(tiny, tmp_path):
    _, labels, _ = tiny
    csv = write_csv(tmp_path / "official.csv", labels.assign(split=["train"] * 18 + ["test"] * 6))
    splits = read_splits(config(tiny, f"data.train_csv={csv}", "data.split_column=split"), **QUIET)
    assert len(splits["train"]) + len(splits["val"]) == 18 and len(splits["test"]) == 6
    assert not set(splits["train"].groups) & set(splits["val"].groups)


@pytest.mark.parametrize("split, message", [
    (None, "missing split column 'split'"),
    (["train"] * 23 + [""], "line 25: empty 'split'"),
    (["test"] * 24, "no row of its 'split' column says 'train'"),
])
def test_bad_split_columns_are_named(tiny, tmp_path, split, message):
    _, labels, _ = tiny
    csv = write_csv(tmp_path / "bad.csv", labels if split is None else labels.assign(split=split))
    with pytest.raises((CSVError, UsageError), match=message):
        read_splits(config(tiny, f"data.train_csv={csv}", "data.split_column=split"), **QUIET)


def test_a_list_of_test_csvs_gives_one_test_split_each(tiny, tmp_path):
    _, labels, _ = tiny
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    paths = [str(write_csv(tmp_path / d / "labels.csv", labels.iloc[i:i + 4])) for i, d in ((0, "a"), (4, "b"))]
    splits = read_splits(config(tiny, f"data.test_csv={json.dumps(paths)}"), **QUIET)
    assert list(splits) == ["train", "val", "test:a/labels", "test:b/labels"]
    assert splits["test:b/labels"].keys == list(labels.filename[4:8])
    assert list(read_splits(config(tiny, f"data.test_csv={paths[0]}"), **QUIET)) == ["train", "val", "test"]
    assert names_of_test_csvs(["x/konvid.csv", "y/live-vqc.csv"]) == ["test:konvid", "test:live-vqc"]


def test_test_csv_is_one_path_or_a_list_of_paths(tiny):
    assert config(tiny, "data.test_csv=a.csv").data.test_csv == "a.csv"
    assert config(tiny, "data.test_csv=[a.csv, b.csv]").data.test_csv == ["a.csv", "b.csv"]
    with pytest.raises(ConfigError, match=r"data.test_csv\[1\] must be str, got 3"):
        config(tiny, "data.test_csv=[a.csv, 3]")


@pytest.mark.slow
def test_baselines_search_and_fit_on_the_training_part_only(tiny, monkeypatch):
    tmp, _, _ = tiny
    cfg = config(tiny)
    splits = read_splits(cfg, Repeat(0, 2, 0.25, seed=0), **QUIET)
    store = FeatureStore.open(tmp / "store")
    features = shared_features(store, sorted(k for s in splits.values() for k in s.keys), torch.device("cpu"))
    features.load(["nss"])
    seen = []
    original = GridSearchCV.fit
    monkeypatch.setattr(GridSearchCV, "fit", lambda self, x, y, groups: seen.append((y, groups)) or original(self, x, y, groups=groups))
    results = run_baselines(["ridge", "svr"], features, splits, ("nss",), **QUIET)
    assert set(results) == {"ridge", "svr"} and all(set(r) == {"test"} for r in results.values())
    assert results["ridge"]["test"]["n"] == len(splits["test"])
    for y, groups in seen:  # every search saw exactly the train and val videos, never a test one
        np.testing.assert_array_equal(y, np.concatenate([splits["train"].mos, splits["val"].mos]))
        assert not set(groups) & set(splits["test"].groups)


@pytest.mark.slow
def test_repeats_write_one_row_per_repeat_and_the_median(tiny, tmp_path):
    tmp, _, csv = tiny
    path = write_configs(tmp_path, tmp / "store", csv, coarse=NSS_ONLY)
    medians = fit(path, out=tmp_path / "rep", repeats=3, test_fraction=0.25)
    table = pd.read_csv(tmp_path / "rep" / "repeats.csv")
    summary = json.loads((tmp_path / "rep" / "repeats.json").read_text())
    assert list(table.repeat) == [1, 2, 3]
    assert {"coarse_val_srocc", "coarse_test_srocc", "ridge_test_srocc", "svr_test_plcc"} <= set(table)
    assert set(summary["test"]["srocc"]) == {"median", "mean", "std"} and set(summary["test"]) >= {"srocc", "plcc", "n"}
    assert summary["test"]["srocc"]["median"] == pytest.approx(np.median(table.coarse_test_srocc))
    assert summary["test"]["srocc"]["std"] == pytest.approx(np.std(table.coarse_test_srocc, ddof=1))
    assert summary["models"]["ridge"]["test"]["plcc"]["mean"] == pytest.approx(table.ridge_test_plcc.mean())
    assert summary["repeats"] == 3 and summary["test_fraction"] == 0.25
    assert medians["coarse"]["test"]["srocc"] == pytest.approx(summary["test"]["srocc"]["median"])
    report = (tmp_path / "rep" / "report.html").read_text()  # the repeats' table, a row per repeat, model and split
    assert "<h2>Repeats</h2>" in report and 'href="repeat-3/report.html"' in report
    assert report.count("<td>ridge</td><td>test</td>") == 1 + 3 and "repeats 3, test_fraction 0.25" in report
    assert "<td>svr</td><td>test</td>" in (tmp_path / "rep" / "repeat-1" / "report.html").read_text()
    baselines = json.loads((tmp_path / "rep" / "repeat-1" / "baselines.json").read_text())
    assert set(baselines["ridge"]["test"]) == set(METRIC_COLUMNS)  # the schema of metrics.json
