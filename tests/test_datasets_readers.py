"""The metadata readers: separators, decimal commas, encodings, blank rows and columns, XLSX sheets, .mat files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from dataset_fixtures import FIXTURES, cells, live_vqc_mat, qualcomm_mat, write_xlsx, youtube_ugc_xlsx
from pipeline.datasets import matfiles
from pipeline.datasets.problems import MetadataError
from pipeline.datasets.metadata_files import read_table
from pipeline.datasets.metadata_table import number


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_separator_is_detected(tmp_path: Path, sep: str):
    path = tmp_path / "t.txt"
    path.write_text(sep.join(["name", "mos"]) + "\n" + sep.join(["a b.mp4", "3.5"]) + "\n")
    table = read_table(path)
    assert table.columns == ["name", "mos"] and table.rows == [["a b.mp4", "3.5"]]


def test_quoted_separators_do_not_count(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text('"a;b;c",mos\n"x;y;z",1\n')
    assert read_table(path).columns == ["a;b;c", "mos"]


def test_decimal_comma_crlf_and_trailing_empties_of_cvd2014_layout():
    table = read_table(FIXTURES / "cvd2014" / "CVD2014_Realignment_MOS.csv")
    assert table.columns == ["Content", "File_name", "Original MOS", "Realignment MOS"]  # 4 empty columns dropped
    assert len(table.rows) == 4  # the blank ';;;;;;;' rows at the end are gone
    assert table.column("Realignment MOS") == ["67.29", "69.37", "-6.50", "38.10"]
    assert table.places[-1] == "line 5"


def test_decimal_comma_left_alone_when_points_are_used(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text("id;mos\n1,5;2.5\n")  # "1,5" is no number here: the file writes decimals with a point
    assert read_table(path).rows == [["1,5", "2.5"]]


def test_latin1_tab_separated_with_decimal_commas():
    table = read_table(FIXTURES / "generic" / "latin1.tsv")
    assert table.column("vid") == ["clip_\u00e91", "clip_\u00e92", "clip_3"]
    assert table.column("note") == ["3.5", "4", "1.25"]


def test_utf8_byte_order_mark_is_not_part_of_the_first_column():
    table = read_table(FIXTURES / "generic" / "bom.csv")
    assert table.columns == ["name", "MOS", "std"] and len(table.rows) == 2


def test_header_less_file_takes_the_given_names():
    table = read_table(FIXTURES / "lsvq" / "train_labels.txt", names=["name", "x", "y", "mos"])
    assert table.column("mos") == ["41.5", "42", "50"] and table.places == ["line 1", "line 2", "line 3"]


def test_extra_field_names_file_and_line(tmp_path: Path):
    path = tmp_path / "t.csv"
    path.write_text("name,mos\na,1\nb,2,oops\n")
    with pytest.raises(MetadataError, match=r"t\.csv, line 3: 3 fields but the header has 2 columns"):
        read_table(path)


@pytest.mark.parametrize("text, problem", [("", "file is empty"), ("name,mos\n\n", "no data rows")])
def test_empty_files_are_named(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(MetadataError, match=rf"t\.csv: {problem}"):
        read_table(path)


def test_missing_file_and_missing_column_are_named(tmp_path: Path):
    with pytest.raises(MetadataError, match=r"nope\.csv: file not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(MetadataError, match=r"bom\.csv: no column 'mos' \(columns found: name, MOS, std\)"):
        read_table(FIXTURES / "generic" / "bom.csv").column("mos")


def test_xlsx_reads_the_named_sheet_and_skips_blank_rows(tmp_path: Path):
    table = read_table(youtube_ugc_xlsx(tmp_path / "u.xlsx"), sheet="MOS")
    assert table.column("vid") == ["Animation_1080P-01b3", "Vlog_720P-6410"]
    assert table.column("resolution") == ["1080", "720"]  # whole numbers stay whole, not "1080.0"
    assert table.places == ["row 2 of sheet 'MOS'", "row 3 of sheet 'MOS'"]
    assert read_table(tmp_path / "u.xlsx").columns == ["Vlog_720P-0001"]  # default: the first sheet
    with pytest.raises(MetadataError, match=r"u\.xlsx: no sheet 'nope' \(sheets: diff, MOS, readme\)"):
        read_table(tmp_path / "u.xlsx", sheet="nope")


def test_xlsx_blank_leading_rows_and_trailing_columns(tmp_path: Path):
    path = write_xlsx(tmp_path / "t.xlsx", {"s": [(None, None, None), ("name", "mos", None), ("a", 2.5, None)]})
    table = read_table(path)
    assert table.columns == ["name", "mos"] and table.rows == [["a", "2.5"]] and table.places == ["row 3 of sheet 's'"]


def test_broken_xlsx_and_mat_are_named(tmp_path: Path):
    for name in ("bad.xlsx", "bad.mat"):
        (tmp_path / name).write_bytes(b"not a real file")
        with pytest.raises(MetadataError, match=rf"{name}: not a readable"):
            read_table(tmp_path / name)


def test_mat_table_holds_the_per_video_variables(tmp_path: Path):
    table = read_table(live_vqc_mat(tmp_path / "v.mat"))
    assert table.columns == ["video_list", "mos"]
    assert table.column("video_list") == ["A001.mp4", "A012.mp4", "B100.mp4"]
    assert float(table.column("mos")[1]) == 57.3005
    assert table.places[0] == "entry 1 of video_list"


def test_mat_structs_are_flattened_and_short_lookups_kept_aside(tmp_path: Path):
    path = qualcomm_mat(tmp_path / "q.mat")
    found = matfiles.variables(path)
    assert found["qualcommVideoData.distortionNames"] == ["Artifacts", "Color"]
    table = read_table(path)
    assert "qualcommVideoData.distortionNames" not in table.columns  # 2 entries, not one per video
    assert table.column("qualcommSubjectiveData.unBiasedMOS") == ["52.5", "57.25", "36.75", "40.0"]


def test_mat_row_vectors_and_empty_cells(tmp_path: Path):
    names = cells(["a.mp4", "b.mp4"]).T  # a row cell array, as some files store lists
    names[0, 1] = np.empty((0, 0))
    scipy.io.savemat(tmp_path / "r.mat", {"names": names, "mos": np.array([[1.0, 2.0]])})
    assert read_table(tmp_path / "r.mat").rows == [["a.mp4", "1.0"], ["", "2.0"]]


def test_number():
    assert number("3.5") == 3.5 and number(" -6.50 ") == -6.5 and math.isnan(number(""))
    for bad in ("abc", "inf", "nan", "3,5"):
        with pytest.raises(ValueError):
            number(bad)
