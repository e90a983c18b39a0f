"""Hostile inputs through the real commands: every bad row fails alone, good rows are done, nothing cached is lost.

The whole video corpus (tests/corpus.py) goes through ONE extraction and ONE scoring run, with good videos
among the bad ones; the assertions are then made per row. Bad CSVs and configs each go through the command
that reads them and must end with exit code 2 and a message naming the file and the problem, before any
work is done and without touching the store.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from corpus import (CONFIG_CASES, TABLE_CASES, TINY, TINY_FIT, VIDEO_CASES, ConfigCase, TableCase, VideoCase,
                    invoke, sets, write_config, write_table, write_videos)
from pipeline.cli import extract, fit, score
from pipeline.store import FeatureStore

PRECACHED = ("plain.mp4", "short.mp4")  # extracted before the batch run, which must not lose them
KINDS = ("spatial_coarse", "spatial_fine", "temporal_slow", "temporal_fast")


# Slow: every test reads the corpus the module extracts and scores once.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The corpus, extracted in one run over a store that already held two videos, a model fitted on what was
    extracted, and one scoring run of the whole corpus; every step's exit code and output."""
    root = write_videos(tmp_path_factory.mktemp("corpus"))
    rows = [(case.name, 1.0 + i % 5, f"src{i}") for i, case in enumerate(VIDEO_CASES)]
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("filename", "mos", "group"), *rows])
    (root / "precached.csv").write_text("filename\n" + "".join(f"{name}\n" for name in PRECACHED))
    store = root / "store"
    (root / "config.yml").write_text(
        TINY_FIT + f"data: {{train_csv: {root / 'labels.csv'}, video_root: {root}, store: {store}, "
                   "val_fraction: 0.3}\n")
    common = ["-o", root / "config.yml", "--no-progress", *sets(TINY)]
    out = {"root": root, "store": store}
    out["precached"] = invoke(extract, *common, "--csv", root / "precached.csv")
    out["before"] = features(store, PRECACHED)
    out["extract"] = invoke(extract, *common)
    out["fit"] = invoke(fit, "-o", root / "config.yml", "--out", root / "run")
    out["score"] = invoke(score, "--model", root / "run" / "best_model.pth", "--csv", root / "labels.csv",
                          "--store", store, "--out", root / "scores.csv", "--no-progress")
    with open(root / "scores.csv", newline="", encoding="utf-8") as f:
        out["scores"] = list(csv.DictReader(f))
    return out


def features(store: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    table = FeatureStore.open(store).read(KINDS, list(keys))
    return {f"{key} {kind}": table.features[kind][table.rows(key)] for key in keys for kind in KINDS}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def expect_failure(case: VideoCase, root: Path, error: str | None) -> None:
    """``error`` (None: the row succeeded) is what ``case`` calls for."""
    if case.ok or (case.either and error is None):
        assert error is None, f"{case.kind}: should have been done, failed with: {error}"
        return
    assert error, f"{case.kind}: should have failed"
    assert str(root / case.name) in error, f"{case.kind}: the message does not name the file: {error}"
    assert case.problem in error, f"{case.kind}: the message does not say {case.problem!r}: {error}"


def test_the_runs_end_as_designed(batch: dict) -> None:
    assert batch["precached"][0] == 0, batch["precached"][1]
    code, out = batch["extract"]
    assert code == 3, out  # finished, some videos failed
    failed = sum(not case.ok for case in VIDEO_CASES if not case.either)
    assert f"skipped {len(PRECACHED)} (cached)" in out and "video(s) failed" in out
    assert batch["fit"][0] == 0, batch["fit"][1]
    assert "left out" in batch["fit"][1]  # the videos that failed extraction, named in the fit's log
    code, out = batch["score"]
    assert code == 3 and "video(s) failed" in out, out
    assert [row["filename"] for row in batch["scores"]] == [case.name for case in VIDEO_CASES]  # every row, in order
    assert failed <= sum(row["status"] == "error" for row in batch["scores"])


@pytest.mark.parametrize("case", VIDEO_CASES, ids=[case.kind for case in VIDEO_CASES])
def test_extraction_row(batch: dict, case: VideoCase) -> None:
    store = FeatureStore.open(batch["store"])
    failures, cached = store.failures(), store.cached()
    expect_failure(case, batch["root"], failures.get(case.name))
    assert (case.name in cached) != (case.name in failures), "a video is either cached or failed"
    if case.name in cached:
        assert len(features(batch["store"], (case.name,))) == len(KINDS)


@pytest.mark.parametrize("case", VIDEO_CASES, ids=[case.kind for case in VIDEO_CASES])
def test_score_row(batch: dict, case: VideoCase) -> None:
    row = next(row for row in batch["scores"] if row["filename"] == case.name)
    expect_failure(case, batch["root"], row["error"] if row["status"] == "error" else None)
    if row["status"] == "ok":
        assert np.isfinite(float(row["score"])) and row["error"] == ""
    else:
        assert row["score"] == "" and row["status"] == "error"


def test_cached_videos_are_not_lost(batch: dict) -> None:
    after = features(batch["store"], PRECACHED)
    assert after.keys() == batch["before"].keys()
    for name, rows in batch["before"].items():
        np.testing.assert_array_equal(after[name], rows, err_msg=name)
    assert not list(batch["store"].glob("*.tmp")), "no shard in progress is left behind"


@pytest.mark.parametrize("case", [c for c in TABLE_CASES if c.problem], ids=lambda c: c.name)
def test_label_csv_through_extract(batch: dict, case: TableCase, tmp_path: Path) -> None:
    """A bad CSV stops the run before any work: exit 2, the file and its problems named, the store untouched."""
    root, store = batch["root"], batch["store"]
    csv_path = write_table(tmp_path, case)
    before = snapshot(store)
    code, out = invoke(extract, "-o", root / "config.yml", "--csv", csv_path, "--video-root", root, "--store", store,
                       "--no-progress", *sets(TINY))
    assert code == 2 and str(csv_path) in out and case.problem in out, out
    assert snapshot(store) == before


@pytest.mark.parametrize("case", TABLE_CASES, ids=[case.name for case in TABLE_CASES])
def test_label_csv_through_score(batch: dict, case: TableCase, tmp_path: Path) -> None:
    """The same through score.py; the odd but valid tables are scored (from the store: no extraction)."""
    root, store = batch["root"], batch["store"]
    csv_path = write_table(tmp_path, case)
    before = snapshot(store)
    code, out = invoke(score, "--model", root / "run" / "best_model.pth", "--csv", csv_path, "--video-root", root,
                       "--store", store, "--out", tmp_path / "scores.csv", "--no-progress")
    if case.problem:
        assert code == 2 and str(csv_path) in out and case.problem in out, out
        assert not (tmp_path / "scores.csv").exists()
    else:
        assert code == 0 and "scored 1 of 1" in out, out
    assert snapshot(store) == before


@pytest.mark.parametrize("name, content, problem", [
    ("no_mos.csv", b"filename\nplain.mp4\nshort.mp4\n", "missing column 'mos'"),
    ("blank_mos.csv", b"filename,mos\nplain.mp4,1\nshort.mp4,\n", "line 3: missing MOS"),
    ("words_as_mos.csv", b"filename,mos\nplain.mp4,good\nshort.mp4,2\n", "line 2: MOS 'good' is not a number"),
])
def test_training_csv_through_fit(batch: dict, tmp_path: Path, name: str, content: bytes, problem: str) -> None:
    """Training needs a MOS on every row: a CSV without is refused, naming the lines, before training starts."""
    (tmp_path / name).write_bytes(content)
    code, out = invoke(fit, "-o", batch["root"] / "config.yml", "--set", f"data.train_csv={tmp_path / name}",
                       "--out", tmp_path / "run")
    assert code == 2 and str(tmp_path / name) in out and problem in out, out
    assert not (tmp_path / "run" / "best_model.pth").exists()


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[case.name for case in CONFIG_CASES])
def test_config_through_extract(batch: dict, case: ConfigCase, tmp_path: Path) -> None:
    root, store = batch["root"], batch["store"]
    config = write_config(tmp_path, case)
    before = snapshot(store)
    code, out = invoke(extract, "-o", config, "--csv", root / "precached.csv", "--store", store, "--no-progress",
                       *sets(TINY), *sets(case.overrides))
    assert code == 2 and case.problem in out, out
    if not case.overrides:
        assert str(config) in out, out  # the file at fault is named (an override's key is in its problem)
    assert snapshot(store) == before


@pytest.mark.parametrize("args, problem", [
    (["--set", "extract.decoder=ffmpeg"], "extract.decoder must be one of decord, pyav"),
    (["--set", "extract.batch_size=0"], "extract.batch_size must be >= 1"),
    (["--set", "model.hidden=[4]"], "scoring may change only extract.decoder"),
    (["--set", "extract.levels.fine.short_side=128"], "the model fixes what its features are"),  # not ignored
    (["--set", "extract.max_chunks=2"], "extract.shard_videos"),  # the message lists the keys it may change
    (["--workers", "-1"], "expected a number >= 0 or auto, got '-1'"),
])
def test_score_options(batch: dict, tmp_path: Path, args: list[str], problem: str) -> None:
    root = batch["root"]
    code, out = invoke(score, "--model", root / "run" / "best_model.pth", "--csv", root / "precached.csv",
                       "--video-root", root, "--store", batch["store"], "--out", tmp_path / "s.csv", *args)
    assert code == 2 and problem in out, out
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("args, problem", [
    (["--levels", ","], "--levels ',': name at least one level"),
    (["--levels", "coarse,medium"], "unknown level(s) ['medium']"),
    (["--workers", "many"], "expected a number >= 0 or auto, got 'many'"),
    (["--csv"], "requires an argument"),
    (["--colour", "red"], "No such option"),
])
def test_extract_options(batch: dict, args: list[str], problem: str) -> None:
    root = batch["root"]
    before = snapshot(batch["store"])
    code, out = invoke(extract, "-o", root / "config.yml", "--no-progress", *sets(TINY), *args)
    assert code == 2 and problem in out, out
    assert snapshot(batch["store"]) == before
