"""The docs say what the code does: the README's config table is config.py's keys and defaults, every exit-code
table is errors.EXIT_CODES, and every config file sets only what it changes."""

from __future__ import annotations

import builtins
import re
from pathlib import Path

import pytest
import yaml

import pipeline.errors as errors
from pipeline.config import Config, load_config, to_dict, valid_keys
from pipeline.configs import SHIPPED

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_WITH_EXIT_CODES = [README, ROOT / "docs" / "design.md"]
CONFIG_FILES = sorted(SHIPPED.rglob("*.yml")) + sorted((ROOT / "config").rglob("*.yml"))


def _table_rows(path: Path, header: str) -> list[list[str]]:
    """The rows (cells stripped) of every markdown table whose header line starts with ``header``."""
    rows, inside = [], False
    for line in path.read_text().splitlines():
        if line.startswith(header):
            inside = True
        elif inside and line.startswith("|"):
            if not line.startswith("|---"):
                rows.append([cell.strip() for cell in line.strip("|").split("|")])
        else:
            inside = False
    return rows


def test_readme_config_table_is_config_py():
    documented = {key.strip("`"): default.strip("`") for key, default, *_ in _table_rows(README, "| key | default |")}
    assert sorted(documented) == sorted(valid_keys()), f"{README}: the config table's keys differ from config.py's"
    stated = load_config(None, [f"{key}={default}" for key, default in documented.items()])
    wrong = [key for key in documented if _leaf(to_dict(stated), key) != _leaf(to_dict(Config()), key)]
    assert not wrong, f"{README}: these defaults differ from config.py's: {wrong}"


def _leaf(tree: dict, dotted: str) -> object:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def _code_of(cls: type[BaseException]) -> int:
    return next((code for cause, code in errors.EXIT_CODES if issubclass(cls, cause)), errors.EXIT_ERROR)


@pytest.mark.parametrize("doc", DOCS_WITH_EXIT_CODES, ids=lambda p: p.name)
def test_exit_code_tables_are_exit_codes(doc):
    rows = _table_rows(doc, "| code |")
    codes = {int(code) for row in rows for code in row[0].split(",")}
    assert codes == {errors.EXIT_OK, errors.EXIT_SOME_FAILED} | {code for _, code in errors.EXIT_CODES}, \
        f"{doc}: the exit-code table lists other codes than errors.EXIT_CODES"
    for row in rows:
        for name in re.findall(r"`(?:errors\.)?(\w+)`", row[1]):
            cls = getattr(errors, name, None) or getattr(builtins, name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                assert str(_code_of(cls)) in row[0].split(", "), f"{doc}: {name} is listed under exit code {row[0]}"


def _own_keys(tree: dict, prefix: str = "") -> list[str]:
    """The dotted config keys a file's own YAML sets (a mapping-valued key such as extract.levels counts once)."""
    keys = []
    for key, value in tree.items():
        path = prefix + key
        if isinstance(value, dict) and path not in valid_keys():
            keys.extend(_own_keys(value, path + "."))
        else:
            keys.append(path)
    return keys


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_files_set_only_what_they_change(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    own = yaml.safe_load(path.read_text()) or {}
    base = own.pop("base", None)
    under = to_dict(load_config(base) if base else Config())
    if path.stem == "kwai_fine_simpleVQA":  # the fine phase is laid over the coarse phase's resolved config
        under = to_dict(load_config(SHIPPED / "kwai_simpleVQA.yml"))
    resolved = to_dict(load_config(path))
    restated = [key for key in _own_keys(own) if _leaf(resolved, key) == _leaf(under, key)]
    assert not restated, f"{path}: restates what it starts from: {restated}"
