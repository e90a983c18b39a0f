"""score.py on what it is pointed at (--videos) and writing the format --out names; bad usage exits 2 first."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from corpus import invoke
from pipeline.cli import score
from pipeline.scoring import SCORE_COLUMNS

pytestmark = pytest.mark.usefixtures("one_thread")


def score_cli(run: Path, *args: object) -> tuple[int, str]:
    """score.py with the shared tiny run's model and store (which holds its clip*.mp4 already)."""
    return invoke(score, "--model", run / "run" / "best_model.pth", "--store", run / "store", "--device", "cpu",
                  "--no-progress", *args)


@pytest.mark.slow
def test_a_folder_is_searched_and_keyed_by_relative_paths(run, tmp_path):
    videos = tmp_path / "videos"
    (videos / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(run / "clip0.mp4", videos / "clip0.mp4")
    shutil.copy(run / "clip1.mp4", videos / "nested" / "deeper" / "clip1.mp4")
    shutil.copy(run / "clip2.mp4", videos / "nested" / "clip2_without_extension")
    (videos / "nested" / "broken.mp4").write_text("not a video")
    (videos / "notes.txt").write_text("not scored")
    code, out = invoke(score, "--model", run / "run" / "best_model.pth", "--store", tmp_path / "store",
                       "--device", "cpu", "--no-progress", "--videos", videos, "--out", tmp_path / "scores.jsonl")
    assert code == 3, out  # broken.mp4 failed its own row
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [row["filename"] for row in rows] == ["clip0.mp4", "nested/broken.mp4", "nested/clip2_without_extension",
                                                 "nested/deeper/clip1.mp4"]
    assert [row["status"] for row in rows] == ["ok", "error", "ok", "ok"]
    assert rows[1]["score"] is None and "broken.mp4" in rows[1]["error"]
    reference = pd.read_csv(_scored(run, tmp_path, "reference.csv", "--videos", run / "clip[0-2].mp4"))
    assert reference["filename"].tolist() == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]  # relative to the glob's folder
    # the same key scores the same; clip0.mp4 is a training key (scored out of fold), the nested keys are not
    assert rows[0]["score"] == pytest.approx(reference["score"][0], rel=1e-6)
    assert [rows[i]["trained_on"] for i in (0, 2, 3)] == [True, False, False]


@pytest.mark.slow
def test_paths_from_standard_input(run, tmp_path):
    result = CliRunner().invoke(score, [
        "--model", str(run / "run" / "best_model.pth"), "--store", str(run / "store"), "--device", "cpu",
        "--no-progress", "--videos", "-", "--out", str(tmp_path / "scores.csv")],
        input=f"{run / 'clip3.mp4'}\n{run / 'missing.mp4'}\n")
    assert result.exit_code == 3, result.output
    table = pd.read_csv(tmp_path / "scores.csv")
    assert table["filename"].tolist() == [str(run / "clip3.mp4"), str(run / "missing.mp4")]
    assert table["status"].tolist() == ["ok", "error"]


def test_every_format_holds_the_same_columns_and_values(run, tmp_path):
    tables = {suffix: _read(_scored(run, tmp_path, f"scores{suffix}", "--csv", run / "labels.csv"))
              for suffix in (".csv", ".jsonl", ".parquet")}
    for table in tables.values():
        assert list(table.columns) == list(SCORE_COLUMNS)
        pd.testing.assert_frame_equal(table, tables[".csv"], check_dtype=False)


def _scored(run: Path, folder: Path, name: str, *args: object) -> Path:
    code, out = score_cli(run, *args, "--out", folder / name)
    assert code == 0, out
    return folder / name


def _read(path: Path) -> pd.DataFrame:
    readers = {".csv": lambda p: pd.read_csv(p, keep_default_na=False), ".parquet": pd.read_parquet,
               ".jsonl": lambda p: pd.read_json(p, lines=True)}
    return readers[path.suffix](path).fillna("")


@pytest.mark.parametrize("args, message", [
    (["--csv", "labels.csv", "--videos", "."], "one of the two, not both"),
    ([], "name the videos to score with --csv CSV or with --videos"),
    (["--videos", ".", "--video-root", "."], "--video-root goes with --csv"),
    (["--videos", "empty"], "empty: no video file in this folder"),
    (["--videos", "nowhere/*.mp4"], "no video file matches this pattern"),
])
def test_bad_usage_exits_2_before_any_work(run, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(run)
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / a) if a == "empty" else a for a in args]
    code, out = score_cli(run, *args, "--out", tmp_path / "scores.csv")
    assert code == 2 and message in out, out
    assert not (tmp_path / "scores.csv").exists()


@pytest.mark.parametrize("name, message", [
    ("scores.xlsx", "cannot write a .xlsx; name it *.csv, *.jsonl, *.parquet"),
    ("scores", "cannot write a file without an extension"),
])
def test_an_output_it_cannot_write_exits_2(run, tmp_path, name, message):
    code, out = score_cli(run, "--csv", run / "labels.csv", "--out", tmp_path / name)
    assert code == 2 and message in out


def test_parquet_without_pyarrow_says_what_to_install(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    code, out = score_cli(run, "--csv", run / "labels.csv", "--out", tmp_path / "scores.parquet")
    assert code == 2 and "pip install 'vqa-pipeline[parquet]'" in out
