"""Every shipped config loads, with its fine phase, and every known data set has one."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataset_fixtures import ROOT
from pipeline.config import fine_config_path, load_config
from pipeline.configs import SHIPPED
from pipeline.datasets import DATASETS

CONFIGS = sorted((ROOT / "config").rglob("*.yml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads_with_its_fine_phase(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)  # configs name files relative to the project root
    cfg = load_config(path)
    fine = fine_config_path(path, cfg)
    if fine is not None:
        assert load_config(fine, base=cfg).features.level == "fine"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_data_set_has_a_config_with_its_scale_and_levels(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    path = ROOT / "config" / "datasets" / f"{name}.yml"
    cfg = load_config(path)
    assert cfg.name == name and cfg.data.train_csv == f"data/{name}/labels.csv" and cfg.data.group_column == "group"
    levels = cfg.extract.levels
    assert levels["coarse"].short_side < levels["fine"].short_side
    text = (SHIPPED / "datasets" / f"{name}.yml").read_text()  # the checkout's file names the shipped one
    assert "MOS scale:" in text and "Levels:" in text and f"vqa-data import {name}" in text
