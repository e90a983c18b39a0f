"""Shipped configs: named from any folder, resolved file first, laid over by the checkout's config/ files."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus import invoke
from pipeline.cli import extract, fit
from pipeline.config import fine_config_path, load_config
from pipeline.configs import SHIPPED, resolve, shipped_names
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder outside the checkout, as a user of the wheel has."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_checkout_config_names_a_shipped_one():
    checkout = sorted(p.relative_to(ROOT / "config").with_suffix("").as_posix() for p in (ROOT / "config").rglob("*.yml"))
    assert checkout == shipped_names()
    assert {"kwai_simpleVQA", "kwai_fine_simpleVQA", "nss_only", "vqa_dev", "datasets/konvid1k"} <= set(shipped_names())


@pytest.mark.parametrize("ref", ["kwai_simpleVQA", "kwai_simpleVQA.yml", "config/kwai_simpleVQA.yml"])
def test_names_and_checkout_paths_resolve_outside_the_checkout(elsewhere, ref):
    assert resolve(ref) == SHIPPED / "kwai_simpleVQA.yml"
    cfg = load_config(ref)
    assert cfg.name == "kwai_simpleVQA" and cfg.data.train_csv is None  # no default points into a repository
    fine = fine_config_path(ref, cfg)
    assert fine == SHIPPED / "kwai_fine_simpleVQA.yml"
    assert load_config(fine, base=cfg).features.level == "fine"


def test_a_file_comes_before_a_shipped_name(elsewhere):
    (elsewhere / "kwai_simpleVQA.yml").write_text("name: mine\n")
    assert resolve("kwai_simpleVQA.yml") == Path("kwai_simpleVQA.yml")
    assert load_config("kwai_simpleVQA.yml").name == "mine"
    assert load_config("kwai_simpleVQA").name == "kwai_simpleVQA"  # no such file: the shipped one


def test_checkout_configs_keep_their_values(monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config("config/kwai_simpleVQA.yml")
    assert (cfg.data.train_csv, cfg.data.video_root, cfg.data.store) == \
        ("data/sample/labels.csv", "data/sample", "features/sample")
    assert cfg.num_epochs == 30 and cfg.features.temporal == ["slow", "fast"]
    nss = load_config("config/nss_only.yml")
    assert nss.data.store == "features/sample-nss" and nss.extract.levels == {} and nss.fine_config is None


def test_base_lays_a_file_over_another(elsewhere):
    (elsewhere / "mine.yml").write_text("base: nss_only\nname: mine\nextract: {nss: true, max_chunks: 4}\n")
    cfg = load_config("mine.yml")
    assert (cfg.name, cfg.extract.max_chunks, cfg.extract.temporal, cfg.features.level) == ("mine", 4, False, None)
    (elsewhere / "a.yml").write_text("base: b.yml\n")
    (elsewhere / "b.yml").write_text("base: a.yml\n")
    with pytest.raises(ConfigError, match="leads back"):
        load_config("a.yml")
    (elsewhere / "bad.yml").write_text("base: [1]\n")
    with pytest.raises(ConfigError, match="base must name a config"):
        load_config("bad.yml")


def test_unknown_name_lists_the_shipped_ones(elsewhere):
    code, out = invoke(fit, "-o", "kwai_simpleVQ")
    assert code == 2
    assert "kwai_simpleVQ: config file not found" in out and "kwai_fine_simpleVQA, kwai_simpleVQA, nss_only" in out
    code, out = invoke(extract, "-o", "nope.yml", "--csv", "x.csv")
    assert code == 2 and "shipped: " in out


def test_fit_without_a_training_csv_says_so(elsewhere):
    code, out = invoke(fit, "-o", "nss_only")
    assert code == 2 and "data.train_csv must be set to the training CSV" in out


@pytest.mark.parametrize("command", [extract, fit])
def test_list_configs(command):
    code, out = invoke(command, "--list-configs")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert list(lines) == shipped_names()
    assert "NSS" in lines["nss_only"]
