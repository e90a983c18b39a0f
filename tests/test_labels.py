import math
from pathlib import Path

import pytest

from pipeline.errors import CSVError
from pipeline.labels import read_labels


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def write(root: Path, text: str) -> Path:
    path = root / "labels.csv"
    path.write_text(text)
    return path


def test_reads_filename_mos_group(root):
    table = read_labels(write(root, "filename,mos,group\na.mp4,3.5,s1\nb.mp4,4,s1\nc.mp4,1e1,s2\n"), root)
    assert table["filename"].tolist() == ["a.mp4", "b.mp4", "c.mp4"]
    assert table["mos"].tolist() == [3.5, 4.0, 10.0]
    assert table["group"].tolist() == ["s1", "s1", "s2"]
    assert table["path"].tolist() == [str(root / n) for n in ("a.mp4", "b.mp4", "c.mp4")]
    assert table["exists"].all()


def test_score_alias_and_default_group_and_root(root):
    table = read_labels(write(root, "filename,score\na.mp4,1\nb.mp4,2\n"))  # root defaults to the CSV's folder
    assert table["mos"].tolist() == [1.0, 2.0]
    assert table["group"].tolist() == ["a.mp4", "b.mp4"]


def test_custom_group_column(root):
    table = read_labels(write(root, "filename,mos,source\na.mp4,1,x\n"), root, group_column="source")
    assert table["group"].tolist() == ["x"]


def test_absolute_paths_ignore_the_root(root, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    table = read_labels(write(root, f"filename,mos\n{root / 'a.mp4'}\t,1\n".replace("\t", "")), other)
    assert table["path"].tolist() == [str(root / "a.mp4")]


def test_all_problems_reported_at_once_with_lines(root):
    text = "filename,mos\na.mp4,abc\nb.mp4,nan\nc.mp4,inf\na.mp4,2\nmissing.mp4,3\n,4\nb.mp4,\n"
    with pytest.raises(CSVError) as info:
        read_labels(write(root, text), root)
    message = str(info.value)
    assert str(root / "labels.csv") in message
    for expected in (
        "line 2: MOS 'abc' is not a number",
        "line 3: MOS 'nan' is not a number",
        "line 4: MOS 'inf' is infinite",
        "line 5: duplicate filename 'a.mp4' (first on line 2)",
        "line 6: video file not found",
        "line 7: empty filename",
        "line 8: duplicate filename 'b.mp4'",
        "line 8: missing MOS",
    ):
        assert expected in message
    assert len(info.value.problems) == 8


def test_many_duplicates_are_counted_and_the_first_ten_listed(root):
    text = "filename,mos\n" + "a.mp4,1\n" * 500
    with pytest.raises(CSVError) as info:
        read_labels(write(root, text), root, missing="keep")
    problems = info.value.problems
    assert problems[:10] == [f"line {line}: duplicate filename 'a.mp4' (first on line 2)" for line in range(3, 13)]
    assert problems[10:] == ["499 duplicate filenames in all, the first 10 listed above"]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "file is empty"),
        ("filename,mos\n", "no data rows"),
        ("name,mos\na.mp4,1\n", "missing column 'filename'"),
        ("filename,quality\na.mp4,1\n", "missing column 'mos' (or its alias 'score')"),
    ],
)
def test_malformed_tables(root, text, problem):
    with pytest.raises(CSVError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        read_labels(write(root, text), root)


def test_missing_csv(tmp_path):
    with pytest.raises(CSVError, match="file not found"):
        read_labels(tmp_path / "none.csv")


def test_scoring_tables_may_lack_mos_and_keep_missing_files(root):
    table = read_labels(write(root, "filename\na.mp4\ngone.mp4\n"), root, require_mos=False, missing="keep")
    assert table["exists"].tolist() == [True, False]
    assert all(math.isnan(v) for v in table["mos"])
