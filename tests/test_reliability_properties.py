"""Properties of the edges every run passes through: the label CSV reader, config overrides, metrics, rank loss.

Each holds for any input hypothesis finds, not only for the examples the unit tests pick: a valid table reads
back exactly, a broken one is refused naming its line, arbitrary bytes never raise anything but CSVError; an
override sets exactly its key, arbitrary text never raises anything but ConfigError; SROCC and KROCC depend on
the order of the predictions only; evaluate never crashes on finite input.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.config import Config, load_config, to_dict
from pipeline.errors import ConfigError, CSVError
from pipeline.fit.losses import rank_losses
from pipeline.labels import read_labels
from pipeline.metrics import evaluate

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- label CSVs -------------------------------------------------------------------------------------------

# File names: any printable text (quotes, commas, unicode included), as the reader strips it.
names = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12) \
    .map(str.strip).filter(bool)
finite = st.floats(allow_nan=False, allow_infinity=False)
tables = st.lists(st.tuples(names, finite, names), min_size=1, max_size=8, unique_by=lambda row: row[0])


def write_rows(path: Path, rows: list[tuple[str, object, object]], header=("filename", "mos", "group")) -> Path:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


@SETTINGS
@given(rows=tables)
def test_a_valid_table_reads_back_exactly(tmp_path: Path, rows: list) -> None:
    table = read_labels(write_rows(tmp_path / "labels.csv", [(n, repr(m), g) for n, m, g in rows]), tmp_path,
                        missing="keep")
    assert table["filename"].tolist() == [n for n, _, _ in rows]
    assert table["mos"].tolist() == [m for _, m, _ in rows]
    assert table["group"].tolist() == [g for _, _, g in rows]
    assert table["path"].tolist() == [str(tmp_path / os.path.expanduser(n)) for n, _, _ in rows]


BREAKAGES = {  # how a row is broken -> what the reader must say about its line
    "words": (lambda row, first: (row[0], "good", row[2]), "is not a number"),
    "nan": (lambda row, first: (row[0], "nan", row[2]), "is not a number"),
    "inf": (lambda row, first: (row[0], "-inf", row[2]), "is infinite"),
    "blank MOS": (lambda row, first: (row[0], "", row[2]), "missing MOS"),
    "blank name": (lambda row, first: ("  ", row[1], row[2]), "empty filename"),
    "duplicate": (lambda row, first: (first[0], row[1], row[2]), "duplicate filename"),
}


@SETTINGS
@given(rows=tables, data=st.data(), breakage=st.sampled_from(sorted(BREAKAGES)))
def test_a_broken_row_is_refused_naming_its_line(tmp_path: Path, rows: list, data: st.DataObject,
                                                 breakage: str) -> None:
    assume(len(rows) >= 2 or breakage != "duplicate")
    rows = [(n, repr(m), g) for n, m, g in rows]
    at = data.draw(st.integers(1 if breakage == "duplicate" else 0, len(rows) - 1))
    breaks, problem = BREAKAGES[breakage]
    rows[at] = breaks(rows[at], rows[0])
    path = write_rows(tmp_path / "labels.csv", rows)
    with pytest.raises(CSVError) as caught:
        read_labels(path, tmp_path, missing="keep")
    assert any(p.startswith(f"line {at + 2}: ") and problem in p for p in caught.value.problems), caught.value
    assert str(path) in str(caught.value)


@SETTINGS
@given(content=st.one_of(st.binary(max_size=300),
                         st.text(st.sampled_from('ab,;"\n\r \t.\\/0123456789-+eEnaifm\x00\ufeff'), max_size=80)
                         .map(lambda text: ("filename,mos\n" + text).encode("utf-8"))))
def test_any_bytes_give_a_table_or_a_csv_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(content)
    try:
        table = read_labels(path, tmp_path, require_mos=False, missing="keep")
    except CSVError as err:
        assert str(path) in str(err) and err.problems
        return
    assert list(table.columns) == ["filename", "path", "mos", "group", "exists"] and len(table) >= 1
    assert table["filename"].map(bool).all() and table["filename"].is_unique


# -- config overrides -------------------------------------------------------------------------------------

OVERRIDABLE = {  # key -> values of its type
    "seed": st.integers(-2**31, 2**31),
    "name": st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=10),
    "data.val_csv": st.none() | st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=10),
    "data.val_fraction": st.floats(0, 1),
    "extract.decoder": st.sampled_from(["decord", "pyav"]),
    "extract.batch_size": st.integers(1, 64),
    "extract.levels.fine.short_side": st.integers(1, 4096),
    "extract.nss": st.booleans(),
    "features.temporal": st.lists(st.sampled_from(["slow", "fast"]), max_size=2),
    "model.hidden": st.lists(st.integers(1, 512), max_size=3),
    "loss.rank_margin": finite,
    "optimizer.lr": st.floats(1e-9, 10),
}


def as_override(key: str, value: object) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return f"{key}={text.removesuffix(chr(10)).removesuffix(chr(10) + '...')}"  # scalars end with a document end


def lookup(cfg: Config, key: str) -> object:
    node = to_dict(cfg)
    for part in key.split("."):
        node = node[part]
    return node


@SETTINGS
@given(items=st.lists(st.sampled_from(sorted(OVERRIDABLE)).flatmap(
    lambda key: st.tuples(st.just(key), OVERRIDABLE[key])), min_size=1, max_size=4))
def test_an_override_sets_exactly_its_key_and_the_last_one_wins(items: list[tuple[str, object]]) -> None:
    cfg = load_config(None, [as_override(key, value) for key, value in items])
    final = dict(items)  # later items win
    for key, value in final.items():
        assert lookup(cfg, key) == value
    untouched = to_dict(Config())
    for key in {"seed", "num_epochs", "data.store", "extract.clip.size"} - set(final):
        assert lookup(cfg, key) == lookup(Config(), key)
    assert set(to_dict(cfg)) == set(untouched)


@SETTINGS
@given(value=st.floats(0, 1e6), style=st.sampled_from(["{!r}", "{:e}", "{:.0e}", "{:g}", "{:.3f}", "{:E}"]))
def test_a_float_key_takes_any_float_literal(value: float, style: str) -> None:
    text = style.format(value)
    assert load_config(None, [f"loss.rank_weight={text}"]).loss.rank_weight == float(text)


@SETTINGS
@given(text=st.text(max_size=40) | st.sampled_from(sorted(OVERRIDABLE)).map(lambda key: key + "=")
       .flatmap(lambda prefix: st.text(max_size=20).map(lambda value: prefix + value)))
@pytest.mark.slow
def test_any_override_text_gives_a_config_or_a_config_error(text: str) -> None:
    try:
        cfg = load_config(None, [text])
    except ConfigError as err:
        assert str(err)
        return
    assert isinstance(cfg, Config)


# -- metrics and the rank loss ----------------------------------------------------------------------------

moderate = st.floats(-1e6, 1e6, allow_nan=False)
paired = st.integers(2, 30).flatmap(lambda n: st.tuples(st.lists(moderate, min_size=n, max_size=n),
                                                        st.lists(moderate, min_size=n, max_size=n)))


def order_preserving(values: np.ndarray, kind: int) -> np.ndarray:
    """A strictly increasing function of ``values``: equal values stay equal, order stays exact."""
    ranks = np.searchsorted(np.unique(values), values).astype(np.float64)  # 0, 1, 2, ... by value
    return [ranks, ranks**3 - 50.0, np.exp(ranks / 4.0), 1e6 * ranks + 7.0][kind]


@SETTINGS
@given(data=paired, kind=st.integers(0, 3))
@pytest.mark.slow
def test_rank_metrics_depend_only_on_the_order_of_predictions(data: tuple, kind: int) -> None:
    mos, pred = (np.array(v) for v in data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        before, after = evaluate(mos, pred), evaluate(mos, order_preserving(pred, kind))
    for key in ("srocc", "krocc", "pair_accuracy"):
        assert before[key] == pytest.approx(after[key], abs=1e-12, nan_ok=True), key


@settings(SETTINGS, max_examples=15)  # each example fits a logistic: extreme magnitudes take a while
@given(data=st.integers(2, 30).flatmap(lambda n: st.tuples(st.lists(finite, min_size=n, max_size=n),
                                                           st.lists(finite, min_size=n, max_size=n))))
@pytest.mark.slow
def test_evaluate_never_crashes_on_finite_input(data: tuple) -> None:
    mos, pred = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = evaluate(mos, pred)
    assert result["n"] == len(mos)
    for key in ("srocc", "krocc", "plcc", "plcc_raw"):
        assert math.isnan(result[key]) or -1 - 1e-9 <= result[key] <= 1 + 1e-9, (key, result[key])
    assert math.isnan(result["pair_accuracy"]) or 0 <= result["pair_accuracy"] <= 1


@SETTINGS
@given(targets=st.lists(st.integers(-1000, 1000), min_size=2, max_size=16, unique=True),
       margin=st.floats(0, 2), stretch=st.floats(1, 100), shift=st.floats(-100, 100))
def test_rank_loss_is_zero_on_predictions_ordered_with_the_margin(targets: list, margin: float, stretch: float,
                                                                  shift: float) -> None:
    def rank_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:  # one member, all videos
        return rank_losses(pred[:, None], target, torch.ones(len(pred), 1, dtype=torch.bool), margin)[0]

    target = torch.tensor(targets, dtype=torch.float64)
    gap = float(torch.diff(target.sort().values).min())  # >= 1: integer targets
    pred = target / gap * (margin + 0.01) * stretch + shift  # every pair in its targets' order, > margin apart
    assert float(rank_loss(pred, target, margin)) == 0.0
    swapped = pred.clone()
    i, j = int(target.argmin()), int(target.argmax())
    swapped[[i, j]] = swapped[[j, i]]  # the most distant pair in the wrong order
    assert float(rank_loss(swapped, target, margin)) > 0.0
