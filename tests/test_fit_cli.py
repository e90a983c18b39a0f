import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from fit_fixtures import make_store, write_configs, write_csv

from pipeline import __version__
from pipeline.cli import fit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fitcli")
    csv = write_csv(tmp / "labels.csv", make_store(tmp / "store", videos=30, max_chunks=2))
    config = write_configs(tmp, tmp / "elsewhere", csv, coarse={"num_epochs": 2}, fine={"num_epochs": 1})
    return tmp, config


def invoke(*args: str):
    return CliRunner().invoke(fit, [str(a) for a in args])


@pytest.mark.slow
def test_fit_with_store_seed_and_folds(tiny, tmp_path):
    tmp, config = tiny
    result = invoke("-o", config, "--store", tmp / "store", "--out", tmp_path / "cv", "--seed", 5, "--folds", 2,
                    "--set", "data.group_column=source")
    assert result.exit_code == 0, result.output
    assert "2-fold grouped cross-validation" in result.output and "±" in result.output
    assert "\nridge   test" in result.output and "\nsvr     test" in result.output  # the baselines beside the MLP
    resolved = yaml.safe_load((tmp_path / "cv" / "fold-1" / "config_coarse.yml").read_text())
    assert resolved["seed"] == 5 and resolved["data"]["store"] == str(tmp / "store")
    assert set(json.loads((tmp_path / "cv" / "folds.json").read_text())) == {"coarse", "fine", "ridge", "svr"}
    for run_dir in (tmp_path / "cv", tmp_path / "cv" / "fold-1"):  # every run directory records the version
        assert json.loads((run_dir / "run.json").read_text())["pipeline_version"] == __version__
    report = (tmp_path / "cv" / "report.html").read_text()
    assert "<h2>Folds</h2>" in report and 'href="fold-2/report.html"' in report
    assert (tmp_path / "cv" / "fold-2" / "report.html").read_text().count('src="data:image/png') == 4  # 2 phases, scatter, calibration


@pytest.mark.parametrize("args, code, message", [
    (["--set", "optimizer.lrate=1"], 2, "unknown config key 'optimizer.lrate'"),
    (["--folds", "1"], 2, "--folds must be 0 (no folds) or >= 2"),
    (["--folds", "2", "--repeats", "2"], 2, "--folds and --repeats are two protocols"),
    (["--repeats", "2", "--test-fraction", "1"], 2, "'--test-fraction': 1.0 is not in the range 0<x<1"),
    (["--fine", "missing.yml"], 2, "missing.yml: config file not found"),
    (["--set", "num_epochs=0"], 2, "num_epochs must be >= 1"),
    (["--set", "features.nss=true"], 2, "has no 'nss' features; fit without them (--set features.nss=false)"),
    ([], 1, "no feature store here"),  # the config's data.store does not exist
])
def test_errors_map_to_exit_codes(tiny, tmp_path, args, code, message):
    tmp, config = tiny
    store = [] if code == 1 else ["--store", tmp / "store"]
    result = invoke("-o", config, "--out", tmp_path / "run", *store, *args)
    assert result.exit_code == code, result.output
    assert message in result.output


@pytest.mark.parametrize("fine, args, message", [
    ({"model": {"hidden": [32]}}, [], "must keep its shape and inputs (all but the spatial level); differs (coarse "
                                      "vs. fine): model.hidden [16] vs. [32]"),
    ({"features": {"level": "fine", "nss": True}}, [], "features.nss False vs. True"),
    ({}, ["--set", "data.val_fraction=0"], "data.val_fraction must be between 0 and 1"),
    ({}, ["--sweep", "SWEEP"], "tiny: model.dropout must be in [0, 1), got 1.0"),
    ({}, ["--repeats", "2", "--set", "data.test_csv=[a.csv]"], "--repeats splits"),  # folds/repeats split train_csv
    ({}, ["--set", "data.test_csv=[a.csv, a.csv]"], "data.test_csv must be one path or a non-empty list"),
    ({}, ["--set", "baselines=[ridge, svr, ridge]"], "baselines must be a list without repeats"),
    ({}, ["--set", "select_epoch=first"], "select_epoch must be one of last, best_val"),
])
def test_both_phases_and_every_sweep_entry_are_checked_before_any_store_is_read(tiny, tmp_path, fine, args, message):
    tmp, config = tiny
    fine_path = tmp_path / "fine.yml"
    fine_path.write_text(yaml.safe_dump({"name": "tiny_fine", "fine_config": None, "features": {"level": "fine"},
                                         **fine}))
    (tmp_path / "sweep.yml").write_text("runs:\n  - {optimizer.lr: 1.0e-3}\n  - {model.dropout: 1.0}\n")
    args = [str(tmp_path / "sweep.yml") if a == "SWEEP" else a for a in args]
    result = invoke("-o", config, "--fine", fine_path, "--store", tmp_path / "no-store", "--out", tmp_path / "run",
                    *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_repeats_report_the_median_over_random_grouped_splits(tiny, tmp_path):
    tmp, config = tiny
    result = invoke("-o", config, "--store", tmp / "store", "--out", tmp_path / "rep", "--repeats", 2,
                    "--test-fraction", 0.3, "--set", "fine_config=null", "--set", "data.group_column=source")
    assert result.exit_code == 0, result.output
    assert "2 random grouped splits holding out 0.3 of the groups (median ± std over repeats)" in result.output
    assert len(pd.read_csv(tmp_path / "rep" / "repeats.csv")) == 2
    assert set(json.loads((tmp_path / "rep" / "repeats.json").read_text())["models"]) == {"coarse", "ridge", "svr"}


@pytest.mark.slow
def test_sweep_runs_in_parallel_and_ranks_by_validation_srocc(tiny, tmp_path):
    tmp, config = tiny
    sweep = tmp_path / "sweep.yml"
    sweep.write_text(yaml.safe_dump({"grid": {"model": [{"hidden": [8], "dropout": 0}, {"hidden": [16]}]},  # mappings
                                     "runs": [{"loss": {"rank_weight": 0}}, {"optimizer.lr": 1e-4}]}))
    args = ["-o", config, "--store", tmp / "store", "--sweep", sweep]
    result = invoke(*args, "--out", tmp_path / "parallel", "--jobs", 2)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "parallel" / "sweep.csv")
    assert len(table) == 4 and list(table.val_srocc) == sorted(table.val_srocc, reverse=True)
    assert {"run", "optimizer.lr", "loss.rank_weight", "model", "coarse_val_srocc", "val_plcc"} <= set(table)
    assert sorted("'hidden': [8]" in model for model in table.model) == [False, False, True, True]  # resolved
    assert json.loads((tmp_path / "parallel" / "run.json").read_text())["pipeline_version"] == __version__
    best = table.run[0]
    best_config = yaml.safe_load((tmp_path / "parallel" / "best_config.yml").read_text())
    run_config = yaml.safe_load((tmp_path / "parallel" / best / "config_coarse.yml").read_text())
    assert best_config == {**run_config, "fine_config": "best_config_fine.yml"}
    serial = invoke(*args, "--out", tmp_path / "serial", "--jobs", 1)
    assert serial.exit_code == 0, serial.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "serial" / "sweep.csv"), table, rtol=1e-6)


def test_a_bad_sweep_entry_stops_before_any_fit(tiny, tmp_path):
    tmp, config = tiny
    sweep = tmp_path / "sweep.yml"
    sweep.write_text("runs:\n  - {optimizer.lr: 1.0e-3}\n  - {model.width: 3}\n")
    result = invoke("-o", config, "--store", tmp / "store", "--sweep", sweep, "--out", tmp_path / "s")
    assert result.exit_code == 2 and "unknown config key 'model.width'" in result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_fit_script_runs_the_command(tiny, tmp_path):
    tmp, config = tiny
    done = subprocess.run([sys.executable, str(ROOT / "fit.py"), "-o", str(config), "--store", str(tmp / "store"),
                           "--out", str(tmp_path / "run"), "--set", "fine_config=null"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "coarse epoch   2/2" in done.stdout and (tmp_path / "run" / "best_model.pth").exists()
