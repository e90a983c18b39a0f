"""``vqa-data import``: each data set's layout from small fixtures, the generic importer, finding videos, bad input."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.io
from click.testing import CliRunner, Result

from dataset_fixtures import FIXTURES, ROOT, live_vqc_mat, qualcomm_mat, youtube_ugc_xlsx
from pipeline.datasets.cli import main
from pipeline.labels import read_labels


def vqa_data(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def imported(tmp_path: Path, name: str, *metadata: Path, extra: tuple = ()) -> list[dict[str, str]]:
    """Import, check the command succeeded and that the project's label reader loads the CSV, return its rows."""
    out = tmp_path / f"{name}.csv"
    result = vqa_data("import", name, "--metadata", *metadata, "--out", out, *extra)
    assert result.exit_code == 0, result.output
    labels = read_labels(out, tmp_path, missing="keep")
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert labels["filename"].tolist() == [r["filename"] for r in rows]
    assert labels["group"].tolist() == [r["group"] for r in rows]
    return rows


def column(rows: list[dict[str, str]], name: str) -> list[str]:
    return [r[name] for r in rows]


def test_konvid1k_takes_precise_mos_and_flickr_names(tmp_path: Path):
    folder = FIXTURES / "konvid1k"
    rows = imported(tmp_path, "konvid1k", folder / "KoNViD_1k_attributes.csv", folder / "KoNViD_1k_mos.csv")
    assert list(rows[0]) == ["filename", "mos", "group"]
    assert column(rows, "filename") == ["3339962845.mp4", "8536919744.mp4", "6408325533.mp4"]
    assert column(rows, "mos") == ["4.64", "1.2212345678", "1.26"]  # the mos file's ten decimals win
    assert column(rows, "group") == column(rows, "filename")
    alone = imported(tmp_path, "konvid1k", folder / "KoNViD_1k_attributes.csv")
    assert column(alone, "mos")[1] == "1.22"


def test_lsvq_official_split_research_copies_and_header_less_lists(tmp_path: Path):
    folder = FIXTURES / "lsvq"
    rows = imported(tmp_path, "lsvq", *(folder / n for n in
                                        ("labels_train_test.csv", "labels_test_1080p.csv", "train_labels.txt")))
    assert list(rows[0]) == ["filename", "mos", "group", "split"]
    assert [(r["filename"], r["split"]) for r in rows] == [
        ("yfcc-batch1/1.mp4", "train"), ("yfcc-batch1/2.mp4", "test"), ("ia-batch3/Foo_bar.mp4", "train"),
        ("yfcc-batch2/9.mp4", "test-1080p"), ("ia-batch4/x.mp4", "train"), ("ia-batch4/y.mp4", "train"),
        ("ia-batch7/Foo_bar.mp4", "train")]
    assert column(rows, "mos")[:2] == ["55.5", "60.25"]
    assert column(rows, "group") == ["1", "2", "Foo_bar", "9", "x", "y", "Foo_bar"]  # one source, two batches


def test_lsvq_file_whose_split_cannot_be_told(tmp_path: Path):
    copy = tmp_path / "labels.csv"
    copy.write_bytes((FIXTURES / "lsvq" / "labels_test_1080p.csv").read_bytes())
    result = vqa_data("import", "lsvq", "--metadata", copy, "--out", tmp_path / "out.csv")
    assert result.exit_code == 2 and "labels.csv: cannot tell which split" in result.output


def test_youtube_ugc_reads_sheet_mos_with_std(tmp_path: Path):
    rows = imported(tmp_path, "youtube-ugc", youtube_ugc_xlsx(tmp_path / "ugc.xlsx"))
    assert list(rows[0]) == ["filename", "mos", "group", "mos_std"]
    assert [(r["filename"], r["mos"], r["mos_std"]) for r in rows] == [
        ("Animation_1080P-01b3.mkv", "3.649", "0.468"), ("Vlog_720P-6410.mkv", "3.18", "0.719")]


def test_live_vqc_from_mat(tmp_path: Path):
    rows = imported(tmp_path, "live-vqc", live_vqc_mat(tmp_path / "LiveVQC_data.mat"))
    assert column(rows, "filename") == ["A001.mp4", "A012.mp4", "B100.mp4"]
    assert column(rows, "mos") == ["80.232", "57.3005", "6.25"]


def test_kvq_split_from_folder_and_unscored_rows_left_out(tmp_path: Path):
    out = tmp_path / "kvq.csv"
    folder = FIXTURES / "kvq"
    result = vqa_data("import", "kvq", "--metadata", folder / "train_data.csv", folder / "test_data.csv", "--out", out)
    assert result.exit_code == 0, result.output
    assert "test_data.csv: left out 1 row(s) without a score" in result.output
    rows = list(csv.DictReader(open(out)))
    assert [(r["filename"], r["split"]) for r in rows] == [
        ("train/0001.mp4", "train"), ("train/0002.mp4", "train"), ("test/0002.mp4", "test")]


def test_live_qualcomm_folders_and_scene_groups(tmp_path: Path):
    rows = imported(tmp_path, "live-qualcomm", qualcomm_mat(tmp_path / "q.mat"))
    assert column(rows, "filename")[0] == "Artifacts/0723_ManUnderTree_GS5_03_20150723_130016.yuv"
    assert column(rows, "filename")[2] == "Color/0912_Cheerleader1_iphone_IMG_0184.yuv"
    assert column(rows, "group") == ["0723_manundertree"] * 2 + ["0912_cheerleader1"] * 2  # one scene, two spellings
    assert column(rows, "mos") == ["52.5", "57.25", "36.75", "40.0"]


def test_cvd2014_paths_groups_and_negative_mos(tmp_path: Path):
    rows = imported(tmp_path, "cvd2014", FIXTURES / "cvd2014" / "CVD2014_Realignment_MOS.csv")
    assert column(rows, "filename") == [
        "Test1/City/Test01_City_D01.avi", "Test1/Talking_head/Test01_Talking_Head_D01.avi",
        "Test4/City/Test04_City_D06.avi", "Test4/City/Test04_City_D07.avi"]
    assert column(rows, "group") == ["Test1/City", "Test1/Talking head", "Test4/City", "Test4/City"]
    assert column(rows, "mos") == ["67.29", "69.37", "-6.5", "38.1"]


def test_generic_template_group_and_decimal_comma(tmp_path: Path):
    rows = imported(tmp_path, "generic", FIXTURES / "generic" / "latin1.tsv", extra=(
        "--filename-column", "vid", "--mos-column", "note", "--template", "videos/{}.mp4", "--group-column", "source"))
    assert column(rows, "filename") == ["videos/clip_\u00e91.mp4", "videos/clip_\u00e92.mp4", "videos/clip_3.mp4"]
    assert column(rows, "mos") == ["3.5", "4.0", "1.25"] and column(rows, "group") == ["A", "A", "B"]


def test_generic_named_template_fields_split_and_std(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_text("id,ext,mos,std,part\n1,mkv,2.5,0.1,train\n2,mp4,3,0.2,test\n")
    rows = imported(tmp_path, "generic", path, extra=(
        "--filename-column", "id", "--mos-column", "mos", "--template", "{id}.{ext}",
        "--split-column", "part", "--mos-std-column", "std"))
    assert [(r["filename"], r["split"], r["mos_std"]) for r in rows] == [
        ("1.mkv", "train", "0.1"), ("2.mp4", "test", "0.2")]


def test_generic_xlsx_sheet_and_mat(tmp_path: Path):
    rows = imported(tmp_path, "generic", youtube_ugc_xlsx(tmp_path / "u.xlsx"), extra=(
        "--filename-column", "vid", "--mos-column", "MOS chunk00", "--template", "{}.mkv", "--sheet", "MOS"))
    assert column(rows, "mos") == ["3.604", "1.456"]
    rows = imported(tmp_path, "generic", qualcomm_mat(tmp_path / "q.mat"), extra=(
        "--filename-column", "qualcommVideoData.vidNames", "--mos-column", "qualcommSubjectiveData.biasedMOS"))
    assert column(rows, "mos") == ["59.0", "55.9", "38.1", "41.0"]


def make_videos(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return root


def test_videos_found_by_path_by_unique_name_and_by_known_renaming(tmp_path: Path):
    videos = make_videos(tmp_path / "v", "A001.mp4", "sub/deeper/A012NEW.mp4", "B100.mp4")
    rows = imported(tmp_path, "live-vqc", live_vqc_mat(tmp_path / "l.mat"), extra=("--videos", videos))
    assert column(rows, "filename") == ["A001.mp4", "sub/deeper/A012NEW.mp4", "B100.mp4"]
    assert read_labels(tmp_path / "live-vqc.csv", videos)["exists"].all()

    folder = FIXTURES / "konvid1k"
    videos = make_videos(tmp_path / "k", "3339962845.mp4", "all/8536919744_cut_centercrop_960x540_8s.mp4",
                         "6408325533_original_centercrop_960x540_8s.mp4")
    rows = imported(tmp_path, "konvid1k", folder / "KoNViD_1k_attributes.csv", extra=("--videos", videos))
    assert column(rows, "filename") == ["3339962845.mp4", "all/8536919744_cut_centercrop_960x540_8s.mp4",
                                        "6408325533_original_centercrop_960x540_8s.mp4"]
    assert column(rows, "group") == column(rows, "filename")


def test_cvd2014_found_in_differently_spelled_folders(tmp_path: Path):
    videos = make_videos(tmp_path / "cvd", "Test1/City/Test01_City_D01.avi",
                         "Test1/Talking Head/Test01_Talking_Head_D01.avi",  # the folder spelled yet another way
                         "Test4/City/Test04_City_D06.avi", "Test4/City/Test04_City_D07.avi")
    metadata = FIXTURES / "cvd2014" / "CVD2014_Realignment_MOS.csv"
    rows = imported(tmp_path, "cvd2014", metadata, extra=("--videos", videos))
    assert column(rows, "filename")[1] == "Test1/Talking Head/Test01_Talking_Head_D01.avi"
    assert column(rows, "group")[1] == "Test1/Talking head"


def test_relative_to_a_folder_above_the_videos(tmp_path: Path):
    make_videos(tmp_path / "data" / "live-vqc", "A001.mp4", "A012.mp4", "B100.mp4")
    rows = imported(tmp_path, "live-vqc", live_vqc_mat(tmp_path / "l.mat"), extra=(
        "--videos", tmp_path / "data" / "live-vqc", "--relative-to", tmp_path / "data"))
    assert column(rows, "filename") == ["live-vqc/A001.mp4", "live-vqc/A012.mp4", "live-vqc/B100.mp4"]
    result = vqa_data("import", "live-vqc", "--metadata", tmp_path / "l.mat", "--out", tmp_path / "x.csv",
                      "--videos", tmp_path / "data", "--relative-to", tmp_path / "data" / "live-vqc")
    assert result.exit_code == 2 and "is not a folder above --videos" in result.output


def test_missing_videos_are_listed_and_nothing_is_written(tmp_path: Path):
    videos = make_videos(tmp_path / "v", "A001.mp4", "x/B100.mp4", "y/B100.mp4")  # B100 twice: ambiguous
    out = tmp_path / "out.csv"
    result = vqa_data("import", "live-vqc", "--metadata", live_vqc_mat(tmp_path / "l.mat"), "--videos", videos,
                      "--out", out)
    assert result.exit_code == 2
    assert f"2 of 3 video(s) not found under {videos}" in result.output
    assert "  A012.mp4: no such file\n" in result.output and "--skip-missing" in result.output
    assert "  B100.mp4: 2 files are named B100.mp4: x/B100.mp4, y/B100.mp4\n" in result.output
    assert not out.exists()

    result = vqa_data("import", "live-vqc", "--metadata", tmp_path / "l.mat", "--videos", videos, "--out", out,
                      "--skip-missing")
    assert result.exit_code == 0, result.output
    assert f"left out 2 row(s) whose video is not under {videos}" in result.output
    assert [r["filename"] for r in csv.DictReader(open(out))] == ["A001.mp4"]


def test_a_file_name_shared_by_two_rows_resolves_neither(tmp_path: Path):
    videos = make_videos(tmp_path / "flat", "1.mp4", "2.mp4", "9.mp4", "x.mp4", "y.mp4", "Foo_bar.mp4")
    lists = [FIXTURES / "lsvq" / n for n in ("labels_train_test.csv", "labels_test_1080p.csv", "train_labels.txt")]
    result = vqa_data("import", "lsvq", "--metadata", *lists, "--videos", videos, "--out", tmp_path / "out.csv")
    assert result.exit_code == 2
    assert "2 of 7 video(s) not found" in result.output
    assert "  ia-batch3/Foo_bar.mp4: Foo_bar.mp4 is the only file of that name for 2 rows" in result.output
    assert not (tmp_path / "out.csv").exists()


def test_missing_list_is_cut_after_ten(tmp_path: Path):
    names = [f"V{i:03}.mp4" for i in range(15)]
    mat = live_vqc_mat(tmp_path / "l.mat", names, [1.0] * 15)
    result = vqa_data("import", "live-vqc", "--metadata", mat, "--videos", make_videos(tmp_path / "v", "V000.mp4"),
                      "--out", tmp_path / "o.csv")
    assert result.exit_code == 2 and "14 of 15" in result.output and "... and 4 more" in result.output


def assert_refused(tmp_path: Path, result: Result, *expected: str) -> None:
    """Exit 2, a message holding every ``expected`` part, and nothing written into ``tmp_path`` by the import."""
    assert result.exit_code == 2, result.output
    for part in expected:
        assert part in result.output, result.output
    assert not (tmp_path / "out.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


@pytest.mark.parametrize("name, text, options, problem", [
    ("kvq", "filename,score\ntrain/1.mp4,3.5\ntrain/2.mp4,good\n", (), "line 3: MOS 'good' is not a number"),
    ("kvq", "filename,score\ntrain/1.mp4,3.5\ntrain/2.mp4,3\ntrain/1.mp4,2\n", (),
     "line 4: duplicate filename 'train/1.mp4' (first at line 2)"),
    ("generic", "name,mos\na,\n", ("--filename-column", "name", "--mos-column", "mos"), "line 2: missing MOS"),
    ("generic", "id,mos\nabc,1\n", ("--filename-column", "id", "--mos-column", "mos", "--template", "{id:d}.mp4"),
     "line 2: --template '{id:d}.mp4' cannot be filled"),
    ("cvd2014", "Content;File_name;Original MOS;Realignment MOS\nCity;City_D01;1,5;2,5\n", (),
     "line 2: File_name 'City_D01' does not start with Test<N>_"),
])
def test_bad_rows_name_file_and_line(tmp_path: Path, name: str, text: str, options: tuple, problem: str):
    path = tmp_path / "train_metadata.csv"
    path.write_text(text)
    result = vqa_data("import", name, "--metadata", path, "--out", tmp_path / "out.csv", *options)
    assert_refused(tmp_path, result, f"{path}, {problem}")


def test_duplicates_across_files_name_both_files(tmp_path: Path):
    one, two = tmp_path / "train_a.csv", tmp_path / "train_b.csv"
    one.write_text("filename,score\ntrain/1.mp4,3.5\n")
    two.write_text("filename,score\ntrain/1.mp4,3.5\n")
    result = vqa_data("import", "kvq", "--metadata", one, two, "--out", tmp_path / "out.csv")
    assert_refused(tmp_path, result, f"{two}, line 2: duplicate video name 'train/1.mp4' (first at {one}, line 2)")


def test_wrong_columns_name_the_file_and_what_it_has(tmp_path: Path):
    kvq_csv = FIXTURES / "kvq" / "train_data.csv"
    result = vqa_data("import", "cvd2014", "--metadata", kvq_csv, "--out", tmp_path / "out.csv")
    assert_refused(tmp_path, result, "train_data.csv: no column 'Content' (columns found: filename, score)")
    result = vqa_data("import", "generic", "--metadata", FIXTURES / "generic" / "bom.csv", "--filename-column", "name",
                      "--mos-column", "MOS", "--template", "{nope}.mp4", "--out", tmp_path / "out.csv")
    assert_refused(tmp_path, result, "bom.csv: no column 'nope'")


@pytest.mark.parametrize("args, message", [
    (("import", "konvid2k"), "unknown data set 'konvid2k'; known: konvid1k, lsvq"),
    (("import", "generic"), "needs --filename-column and --mos-column"),
    (("import", "kvq", "--filename-column", "a", "--mos-column", "b"), "column options are for 'generic' only"),
    (("import", "kvq", "--filename-column", "a"), "--filename-column and --mos-column are both needed"),
    (("import", "kvq", "--skip-missing"), "--skip-missing and --relative-to need --videos"),
])
def test_bad_usage_exits_2(tmp_path: Path, args: tuple, message: str):
    result = vqa_data(*args, "--metadata", FIXTURES / "kvq" / "train_data.csv", "--out", tmp_path / "out.csv")
    assert_refused(tmp_path, result, message)


def test_list_and_module_entry_point():
    listed = subprocess.run([sys.executable, "-m", "pipeline.datasets", "list"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    for name in ("konvid1k", "lsvq", "youtube-ugc", "live-vqc", "kvq", "live-qualcomm", "cvd2014", "generic"):
        assert f"\n{name} " in f"\n{listed}"


def test_nothing_to_write_is_refused(tmp_path: Path):
    path = tmp_path / "test_only.csv"
    path.write_text("filename,score\ntest/0001.mp4,\n")
    result = vqa_data("import", "kvq", "--metadata", path, "--out", tmp_path / "out.csv")
    assert_refused(tmp_path, result, f"no rows to write from {path}; {path}: left out 1 row(s) without a score")


def test_distortion_type_without_a_name_names_the_entry(tmp_path: Path):
    mat = qualcomm_mat(tmp_path / "q.mat")
    content = scipy.io.loadmat(mat)
    content["qualcommVideoData"][0, 0]["distortionType"][3, 0] = 7
    scipy.io.savemat(mat, {k: v for k, v in content.items() if not k.startswith("__")})
    result = vqa_data("import", "live-qualcomm", "--metadata", mat, "--out", tmp_path / "out.csv")
    assert result.exit_code == 2 and f"{mat}, entry 4 of vidNames: distortionType '7' names none" in result.output
