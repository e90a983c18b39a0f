from pathlib import Path

import pytest
import yaml

from pipeline.config import (
    Config,
    dump_config,
    fine_config_path,
    from_dict,
    load_config,
    to_dict,
    valid_keys,
)
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
COARSE = ROOT / "config" / "kwai_simpleVQA.yml"


def write(tmp_path: Path, text: str, name: str = "c.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_match_design():
    cfg = load_config(None)
    assert cfg.extract.levels["coarse"].short_side == 448
    assert cfg.extract.levels["fine"].short_side == 720
    assert cfg.extract.clip.frames == 32 and cfg.extract.clip.size == 224
    assert cfg.features.temporal == ["slow", "fast"]
    assert cfg.loss.rank_margin == 0.1 and cfg.optimizer.name == "adamw"
    assert cfg.extract.decoder == "pyav" and cfg.extract.workers == "auto"


def test_workers_is_a_count_or_auto():
    assert load_config(None, ["extract.workers=3"]).extract.workers == 3
    assert load_config(None, ["extract.workers=auto"]).extract.workers == "auto"
    for bad in ("many", "1.5", "true"):
        with pytest.raises(ConfigError, match="extract.workers must be int or 'auto'; got"):
            load_config(None, [f"extract.workers={bad}"])


def test_shipped_configs_chain_coarse_then_fine():
    coarse = load_config(COARSE)
    assert coarse.features.level == "coarse"
    fine_path = fine_config_path(COARSE, coarse)
    fine = load_config(fine_path, base=coarse)
    assert fine.features.level == "fine"
    assert fine.fine_config is None
    assert fine.data.group_column == coarse.data.group_column == "source"  # inherited, not repeated


def test_set_overrides_are_typed():
    cfg = load_config(COARSE, ["optimizer.lr=3e-4", "model.hidden=[64, 32]", "data.val_csv=v.csv", "num_epochs=2"])
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert cfg.model.hidden == [64, 32]
    assert cfg.data.val_csv == "v.csv"
    assert cfg.num_epochs == 2


def test_integer_is_accepted_for_float_but_not_bool():
    assert load_config(None, ["optimizer.lr=1"]).optimizer.lr == 1.0
    with pytest.raises(ConfigError, match="num_epochs must be int"):
        load_config(None, ["num_epochs=true"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lrr=1", r"unknown config key 'optimizer.lrr'; valid keys under optimizer: name, lr, weight_decay"),
        ("nonsense=1", r"unknown config key 'nonsense'"),
        ("num_epochs=ten", r"--set num_epochs=ten: num_epochs must be int, got 'ten'"),
        ("features.level=medium", r"features.level must be one of coarse, fine"),
        ("features.temporal=[slow, middle]", r"features.temporal\[1\] must be one of slow, fast"),
        ("model.hidden=12", r"model.hidden must be a list"),
        ("data=3", r"data must be a mapping"),
        ("noequals", r"expected KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(COARSE, [override])


def test_bad_file_keys_name_the_file(tmp_path):
    path = write(tmp_path, "optimizer:\n  momentum: 0.9\n")
    with pytest.raises(ConfigError, match=f"{path}: unknown config key 'optimizer.momentum'"):
        load_config(path)


@pytest.mark.parametrize("text, message", [("[1, 2]", "expected a mapping"), ("a: [", "not valid YAML")])
def test_malformed_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yml: config file not found"):
        load_config(tmp_path / "nope.yml")


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


def test_null_level_is_not_extracted():
    assert list(load_config(None, ["extract.levels.fine=null"]).extract.levels) == ["coarse"]
    assert load_config(None, ["extract.levels=null"]).extract.levels == {}  # no ResNet at all


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(COARSE, ["optimizer.lr=5e-4"])
    out = tmp_path / "resolved.yml"
    dump_config(cfg, out)
    assert load_config(out) == cfg
    assert from_dict(yaml.safe_load(out.read_text())) == cfg
    assert to_dict(cfg)["optimizer"]["lr"] == 5e-4


def test_fine_config_found_beside_the_coarse_file(tmp_path, monkeypatch):
    write(tmp_path, "features: {level: fine}\n", "f.yml")
    coarse = write(tmp_path, "fine_config: f.yml\n")
    monkeypatch.chdir(ROOT)
    assert fine_config_path(coarse, load_config(coarse)) == tmp_path / "f.yml"
    with pytest.raises(ConfigError, match="does not exist"):
        fine_config_path(coarse, load_config(coarse, ["fine_config=missing.yml"]))


def test_valid_keys_are_dotted_paths():
    keys = valid_keys()
    assert "optimizer.lr" in keys and "data.train_csv" in keys and "extract.clip.size" in keys
