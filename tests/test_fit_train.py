import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fit_fixtures import make_store, write_configs, write_csv

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.fit.data import ChunkFeatures, read_splits, training_part
from pipeline.fit.model import ChunkRegressor, load_model
from pipeline.fit.run import fit, resolve_configs
from pipeline.fit.train import _epoch_videos, _monitored, deterministic, train_phase
from pipeline.metrics import evaluate
from pipeline.store import FeatureStore

METRICS = {"srocc", "krocc", "plcc", "rmse", "plcc_raw", "rmse_raw", "coverage", "n"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("fittrain")
    labels = make_store(tmp / "store", videos=40, max_chunks=3)
    csv = write_csv(tmp / "labels.csv", labels)
    return tmp, labels, csv


@pytest.fixture(scope="module")
def run(tiny):
    tmp, _, csv = tiny
    out = tmp / "run"
    metrics = fit(write_configs(tmp, tmp / "store", csv), out=out)
    return out, metrics


@pytest.mark.slow
def test_run_directory_holds_the_contract_outputs(run):
    out, metrics = run
    assert {p.name for p in out.iterdir()} >= {"best_model.pth", "coarse_model.pth", "metrics.json", "history.csv",
                                               "config_coarse.yml", "config_fine.yml", "scatter.png", "log.txt"}
    written = json.loads((out / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert list(written) == ["coarse", "fine"]
    assert all(list(by_split) == ["val"] and set(by_split["val"]) == METRICS for by_split in written.values())
    history = pd.read_csv(out / "history.csv")
    assert history[["phase", "epoch"]].values.tolist() == [["coarse", e] for e in range(4)] + [["fine", e] for e in range(3)]
    assert {"lr", "train_loss", "train_mse", "train_rank", "val_srocc", "val_plcc", "train_seconds"} <= set(history)
    assert (out / "scatter.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_each_phase_keeps_its_last_epoch_or_its_best_validation_one(run, tiny, tmp_path):
    out, metrics = run
    history = pd.read_csv(out / "history.csv")
    for phase in ("coarse", "fine"):
        rows = history[history.phase == phase]
        assert metrics[phase]["val"]["srocc"] == pytest.approx(rows.val_srocc.iloc[-1])
    tmp, _, csv = tiny
    best = fit(write_configs(tmp_path, tmp / "store", csv, coarse={"select_epoch": "best_val"}), out=tmp_path / "best")
    history = pd.read_csv(tmp_path / "best" / "history.csv")
    for phase in ("coarse", "fine"):
        assert best[phase]["val"]["srocc"] == pytest.approx(history[history.phase == phase].val_srocc.max())


@pytest.mark.slow
def test_best_model_loads_weights_only_and_reproduces_the_out_of_fold_scores(run, tiny):
    out, metrics = run
    tmp, labels, _ = tiny
    payload = torch.load(out / "best_model.pth", weights_only=True)
    assert payload["features"]["level"] == "fine" and payload["config"]["name"] == "tiny_fine"
    assert payload["store"]["settings_hash"] == FeatureStore.open(tmp / "store").settings.hash
    model, spec = load_model(out / "best_model.pth")
    cfg = load_config(out / "config_coarse.yml")
    part = training_part(read_splits(cfg, log=lambda _: None))
    features = ChunkFeatures(FeatureStore.open(tmp / "store"), part.keys, torch.device("cpu"))
    features.load(spec.features.kinds)
    with torch.no_grad():
        raw = model(*features.batch(torch.arange(len(part)), spec.features.kinds)).numpy()  # (videos, members)
    held_out = np.array([spec.held_out_by[key] for key in part.keys])
    pred = raw[np.arange(len(part)), held_out] * spec.mos_std + spec.mos_mean
    assert evaluate(part.mos, pred)["srocc"] == pytest.approx(metrics["fine"]["val"]["srocc"])
    assert sorted(set(held_out)) == list(range(model.members)) and model.members == 5
    assert spec.mos_mean == pytest.approx(part.mos.mean())


@pytest.mark.slow
def test_resolved_configs_rerun_the_same_fit(run, tmp_path):
    out, metrics = run
    coarse, fine = resolve_configs(out / "config_coarse.yml")
    assert fine is not None and fine.features.level == "fine" and fine.optimizer.lr == 3e-4
    assert yaml.safe_load((out / "config_coarse.yml").read_text())["fine_config"] == "config_fine.yml"
    again = fit(out / "config_coarse.yml", out=tmp_path / "again")
    assert again == metrics
    history = [pd.read_csv(d / "history.csv").drop(columns=["train_seconds", "val_seconds"]) for d in (out, tmp_path / "again")]
    pd.testing.assert_frame_equal(*history)
    first, second = (torch.load(d / "best_model.pth", weights_only=True)["state_dict"] for d in (out, tmp_path / "again"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_overrides_apply_to_both_phases_and_fine_can_be_replaced(tiny, tmp_path):
    tmp, _, csv = tiny
    path = write_configs(tmp_path, tmp / "store", csv)
    coarse, fine = resolve_configs(path, overrides=["optimizer.weight_decay=0.5", "model.hidden=[4]"])
    assert coarse.optimizer.weight_decay == fine.optimizer.weight_decay == 0.5 and fine.model.hidden == [4]
    other = tmp_path / "other.yml"
    other.write_text("name: other\nnum_epochs: 1\n")
    assert resolve_configs(path, fine=other)[1].name == "other"
    assert resolve_configs(path, overrides=["fine_config=null"])[1] is None


def phase_inputs(tiny, *overrides):
    tmp, labels, csv = tiny
    coarse, fine = resolve_configs(write_configs(tmp, tmp / "store", csv), overrides=overrides)
    splits = read_splits(coarse, log=lambda _: None)
    features = ChunkFeatures(FeatureStore.open(tmp / "store"), list(labels.filename), torch.device("cpu"))
    return coarse, fine, splits, features


@pytest.mark.slow
def test_fine_phase_starts_from_the_coarse_model_with_its_own_standardisation(tiny):
    coarse_cfg, fine_cfg, splits, features = phase_inputs(tiny, "model.dropout=0.0")
    fine_cfg.optimizer.lr, fine_cfg.optimizer.weight_decay = 1e-12, 0.0  # training barely moves the weights
    with deterministic():
        coarse = train_phase("coarse", coarse_cfg, features, splits, log=lambda _: None)
        fine = train_phase("fine", fine_cfg, features, splits, init=coarse.model, log=lambda _: None)
    for name, value in coarse.model.named_parameters():
        torch.testing.assert_close(dict(fine.model.named_parameters())[name], value, rtol=0, atol=1e-6)
    mean, _ = features.moments(features.videos(training_part(splits).keys), fine.spec.features.kinds)
    torch.testing.assert_close(fine.model.input_mean, mean)
    assert not torch.equal(fine.model.input_mean, coarse.model.input_mean)


@pytest.mark.slow
def test_fine_phase_with_another_architecture_is_refused(tiny):
    coarse_cfg, fine_cfg, splits, features = phase_inputs(tiny)
    fine_cfg.model.hidden = [7]
    coarse = train_phase("coarse", coarse_cfg, features, splits, log=lambda _: None)
    with pytest.raises(ConfigError, match="cannot start from the previous phase's model"):
        train_phase("fine", fine_cfg, features, splits, init=coarse.model, log=lambda _: None)


@pytest.mark.slow
def test_the_test_split_is_reported_but_never_selects(tiny, tmp_path):
    tmp, labels, csv = tiny
    test = labels.iloc[:10]
    shuffled = test.assign(mos=test.mos.to_numpy()[::-1])
    results = []
    for name, table in (("a", test), ("b", shuffled)):
        path = write_configs(tmp_path, tmp / "store", csv, coarse={"data": {"test_csv": str(write_csv(tmp_path / f"{name}.csv", table))}})
        results.append(fit(path, out=tmp_path / name))
    assert all(set(by_split) == {"val", "test"} for by_split in results[0].values())
    assert all(results[0][p]["val"] == results[1][p]["val"] for p in ("coarse", "fine"))
    assert results[0]["fine"]["test"]["srocc"] != results[1]["fine"]["test"]["srocc"]


@pytest.mark.slow
def test_training_learns_the_synthetic_quality(tmp_path):
    csv = write_csv(tmp_path / "labels.csv", make_store(tmp_path / "store", videos=120, max_chunks=2))
    path = write_configs(tmp_path, tmp_path / "store", csv,
                         coarse={"num_epochs": 8, "fine_config": None, "optimizer": {"lr": 1e-4}})
    metrics = fit(path, out=tmp_path / "learn")
    start = pd.read_csv(tmp_path / "learn" / "history.csv").val_srocc[0]  # the random initial model
    assert metrics["coarse"]["val"]["srocc"] > max(0.6, start + 0.3)


@pytest.mark.slow
def test_grouped_folds_report_mean_and_std(tiny, tmp_path):
    tmp, _, csv = tiny
    path = write_configs(tmp_path, tmp / "store", csv, coarse={"num_epochs": 1}, fine={"num_epochs": 1})
    means = fit(path, out=tmp_path / "cv", folds=3)
    per_fold = [json.loads((tmp_path / "cv" / f"fold-{k}" / "metrics.json").read_text()) for k in (1, 2, 3)]
    summary = json.loads((tmp_path / "cv" / "folds.json").read_text())
    srocc = [m["fine"]["test"]["srocc"] for m in per_fold]
    assert summary["fine"]["test"]["srocc"]["mean"] == pytest.approx(np.mean(srocc))
    assert summary["fine"]["test"]["srocc"]["std"] == pytest.approx(np.std(srocc, ddof=1))
    assert means["fine"]["test"]["srocc"] == pytest.approx(np.mean(srocc))
    assert sum(m["fine"]["test"]["n"] for m in per_fold) == 40  # each video is held out exactly once
    table = pd.read_csv(tmp_path / "cv" / "folds.csv")
    assert len(table) == 18  # 3 folds x (2 phases x (val, test) + 2 baselines x test)
    assert set(table[table.split == "test"].phase) == {"coarse", "fine", "ridge", "svr"}
    assert set(summary["ridge"]) == {"test"} and set(summary["svr"]["test"]["srocc"]) == {"mean", "std"}


def test_a_member_alone_predicts_what_it_predicts_among_all():
    torch.manual_seed(0)
    model = ChunkRegressor(12, [8, 4], members=3).eval()
    x, mask = torch.randn(5, 2, 12), torch.tensor([[True, True]] * 4 + [[True, False]])
    together = model(x, mask)
    for member in range(3):
        torch.testing.assert_close(model(x, mask, member=member), together[:, member:member + 1])


def test_an_epoch_is_a_slice_of_a_reshuffled_stream_of_every_video():
    epochs = _epoch_videos(10, 4, torch.Generator().manual_seed(0))
    seen = torch.cat([next(epochs) for _ in range(5)])  # 20 visits: every video twice
    assert torch.bincount(seen, minlength=10).tolist() == [2] * 10
    whole = _epoch_videos(10, 10, torch.Generator().manual_seed(0))
    assert sorted(next(whole).tolist()) == list(range(10))


def test_curves_follow_a_fixed_sample_on_large_sets_unless_they_pick_the_epoch(monkeypatch):
    monkeypatch.setattr("pipeline.fit.train._MONITORED_VIDEOS", 50)
    last, best = load_config(None, []), load_config(None, ["select_epoch=best_val"])
    assert np.array_equal(_monitored(40, last), np.arange(40))
    sample = _monitored(200, last)
    assert len(sample) == 50 == len(set(sample.tolist())) and np.array_equal(sample, _monitored(200, last))
    assert np.array_equal(_monitored(200, best), np.arange(200))


def test_a_capped_epoch_trains_on_its_share_and_logs_how(tiny, tmp_path):
    lines = []
    cfg, _, splits, features = phase_inputs(tiny, "epoch_videos=8", "batch_size=4", "train_chunks=2")
    result = train_phase("coarse", cfg, features, splits, log=lines.append)
    assert f"8 videos an epoch (of {len(training_part(splits))}: epoch_videos), 2 chunk(s) of each per step" in lines[0]
    assert result.best_epoch == cfg.num_epochs and not any(line.rstrip().endswith("*") for line in lines)
